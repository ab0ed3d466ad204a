//! Config reload on SIGHUP, end to end: `boardroom serve` as its own process (as an admin
//! runs it, `systemctl reload` sends the signal) and a real Synapse. A new client token
//! works at once and the old one is refused; the client's open live stream ends (to resume
//! under the new config); a renamed webhook source answers under its new name only; the
//! log level follows the file; keys that need a restart are named and keep their values;
//! a broken file is refused with its line and changes nothing.

use std::time::{Duration, Instant};

use crate::{
    harness::{Board, Prepared, Process},
    sse::{Read, open_url},
};

const KEY: &str = "psyHm9YaYkK9HSj1+eVJvMABSPyog2xuaRLZoAqklWs=";

fn extra() -> String {
    format!(
        r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "tracker"
token = "first-token"
boards = ["launch"]
[[webhooks.sources]]
name = "ci"
public_key = "{KEY}"
boards = ["launch"]
"#
    )
}

/// The status of `GET /boards/launch` with `token`, as the client's virtual user `watcher`.
async fn board_status(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/boards/launch"))
        .bearer_auth(token)
        .header("X-Boardroom-User", "watcher")
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The status of an unsigned delivery to the webhook source `name`: 404 when there is no
/// such source, 401 when there is and the signature is missing.
async fn hook_status(listen: std::net::SocketAddr, name: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{listen}/_boardroom/webhooks/v1/{name}"))
        .body("{}")
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Waits until the log has had `times` lines containing `needle`.
async fn log_says(p: &Process, needle: &str, times: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        if log.lines().filter(|l| l.contains(needle)).count() >= times {
            return log;
        }
        assert!(Instant::now() < deadline, "the log never said {needle:?}:\n{}", p.log_tail(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_clients_sources_and_level_and_refuses_a_broken_file() {
    let Prepared { synapse, mut config, config_path, dir, reserved } =
        Prepared::start(&extra(), &[], None).await;
    config.logging.level = "warn".to_owned();
    let text = toml::to_string(&config).expect("toml");
    std::fs::write(&config_path, &text).expect("config");
    let p = Process::start(&config, &config_path, dir.path().join("boardroom.log"), reserved).await;
    let listen = p.settings.listen;
    let base = format!("http://{listen}/_boardroom/api/v1");
    Board::create(&synapse, p.bot(), "launch", "Launch").await;

    assert_eq!(board_status(&base, "first-token").await, 200);
    assert_eq!(board_status(&base, "second-token").await, 401);
    assert_eq!((hook_status(listen, "ci").await, hook_status(listen, "deploy").await), (401, 404));
    let url = format!("{base}/boards/launch/events?access_token=first-token&user_id=watcher");
    let mut stream = open_url(url, None).await.expect("the client's stream opens");
    loop {
        match stream.read(Duration::from_secs(10)).await {
            Read::Event(ev) if ev.event == "ready" => break,
            Read::Event(_) => {}
            other => panic!("no ready event: ended {}", matches!(other, Read::Ended)),
        }
    }
    // At `warn`, the stream's opening (an info line) is not logged.
    let before = std::fs::read_to_string(&p.log).expect("log");
    assert!(!before.contains("live stream opened"), "{before}");

    // The admin swaps the token, renames the source, lowers the level, and changes a key
    // that needs a restart.
    let keepalive = format!("keepalive_secs = {}", config.live.keepalive_secs);
    assert!(text.contains(&keepalive) && text.contains("name = \"ci\""), "{text}");
    let edited = text
        .replace("first-token", "second-token")
        .replace("name = \"ci\"", "name = \"deploy\"")
        .replace("level = \"warn\"", "level = \"info\"")
        .replace(&keepalive, "keepalive_secs = 3");
    std::fs::write(&config_path, &edited).expect("config");
    p.signal("HUP");
    let log = log_says(&p, "config reloaded", 1).await;
    assert!(
        log.lines()
            .any(|l| l.contains("apply only after a restart") && l.contains("live.keepalive_secs")),
        "{log}"
    );

    assert_eq!(board_status(&base, "second-token").await, 200, "the new token works at once");
    assert_eq!(board_status(&base, "first-token").await, 401, "the old one is refused");
    assert_eq!((hook_status(listen, "ci").await, hook_status(listen, "deploy").await), (404, 401));
    // The open stream of the client ended; resumed with the old token it is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match stream.read(Duration::from_secs(5)).await {
            Read::Ended => break,
            Read::Event(_) | Read::Quiet => {
                assert!(Instant::now() < deadline, "the stream goes on")
            }
        }
    }
    let old = format!("{base}/boards/launch/events?access_token=first-token&user_id=watcher");
    assert_eq!(open_url(old, stream.last_id).await.err().map(|e| e.0), Some(401));
    // At `info` now: a stream's opening is logged.
    let new = format!("{base}/boards/launch/events?access_token=second-token&user_id=watcher");
    let resumed = open_url(new, stream.last_id).await.expect("the new token's stream opens");
    log_says(&p, "live stream opened", 1).await;
    drop(resumed);

    // A broken file is refused with its line, and nothing changes.
    std::fs::write(&config_path, edited.replace("second-token", "third-token") + "\n[broken\n")
        .expect("config");
    p.signal("HUP");
    let log = log_says(&p, "config reload refused", 1).await;
    assert!(
        log.lines().any(|l| l.contains("config reload refused") && l.contains("line")),
        "{log}"
    );
    assert_eq!(board_status(&base, "second-token").await, 200);
    assert_eq!(board_status(&base, "third-token").await, 401);
    // So is a file that parses but does not validate (a client token equal to hs_token).
    let hs = config.appservice.hs_token.as_ref().expect("inline hs_token").expose().to_owned();
    std::fs::write(&config_path, edited.replace("second-token", &hs)).expect("config");
    p.signal("HUP");
    let log = log_says(&p, "config reload refused", 2).await;
    assert!(log.contains("api.clients[0].token"), "{log}");
    assert_eq!(board_status(&base, "second-token").await, 200);
    drop(synapse);
}
