//! The real binary: `check-config`, `registration` (and `--generate`), `dead-letters`,
//! `reindex`, `status` and `--version`.

use std::process::Command;

fn boardroom(args: &[&str], config: &std::path::Path) -> std::process::Output {
    Command::new(crate::harness::boardroom_exe())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("BOARDROOM__HOMESERVER__URL")
        .output()
        .expect("run boardroom")
}

use crate::harness::MINIMAL_CONFIG as GOOD;

#[test]
fn check_config_names_a_missing_homeserver_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    std::fs::write(&path, GOOD.replace("url = \"http://127.0.0.1:8008\"\n", "")).expect("write");
    let out = boardroom(&["check-config"], &path);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("homeserver.url"), "{stderr}");

    std::fs::write(&path, GOOD).expect("write");
    let out = boardroom(&["check-config"], &path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_names_bad_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    for (from, to, key) in [
        ("url = \"http://127.0.0.1:8008\"", "url = \"ftp://x\"", "homeserver.url"),
        ("hs_token = \"hs-secret-token\"", "hs_token = \"as-secret-token\"", "appservice.hs_token"),
        ("[database]", "[logging]\nformat = \"xml\"\n[database]", "logging.format"),
    ] {
        std::fs::write(&path, GOOD.replace(from, to)).expect("write");
        let out = boardroom(&["check-config"], &path);
        assert!(!out.status.success(), "{to} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
        assert!(!stderr.contains("as-secret-token"), "a token was printed: {stderr}");
    }
}

#[test]
fn registration_prints_what_synapse_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    std::fs::write(&path, GOOD).expect("write");
    let out = boardroom(&["registration"], &path);
    assert!(out.status.success());
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    for needle in [
        "as_token: \"as-secret-token\"",
        "hs_token: \"hs-secret-token\"",
        "sender_localpart: \"boardroom\"",
        "rate_limited: false",
        "receive_ephemeral: true",
    ] {
        assert!(yaml.contains(needle), "{needle} missing from\n{yaml}");
    }
}

#[test]
fn dead_letters_are_listed_and_requeued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, path) = crate::harness::minimal_config_in(dir.path());
    {
        let store = boardroom::store::Store::open(&db).expect("store");
        store.enqueue_outbound(&[b"{\"join_room\":{}}".to_vec()]).expect("enqueue");
        store.outbox_dead(1, b"{\"join_room\":{}}", "M_FORBIDDEN: not invited").expect("dead");
    }
    let out = boardroom(&["dead-letters"], &path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("#1 ") && listed.contains("M_FORBIDDEN: not invited"), "{listed}");
    assert!(listed.contains("1 requests set aside"), "{listed}");

    let out = boardroom(&["dead-letters", "--requeue"], &path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued 1 requests"));
    let store = boardroom::store::Store::open(&db).expect("store");
    assert!(store.outbox_dead_entries(10).expect("dead").is_empty());
    assert_eq!(
        store.outbox_from(0, 10).expect("outbox"),
        vec![(2, b"{\"join_room\":{}}".to_vec())],
        "back in the outbox under a new number"
    );
    drop(store);

    // While another process holds the database (as `serve` does), the list is read beside
    // it; a requeue, which writes, says what to do.
    let held = boardroom::store::Store::open(&db).expect("store");
    held.outbox_dead(2, b"{\"join_room\":{}}", "M_FORBIDDEN: still not invited").expect("dead");
    let out = boardroom(&["dead-letters"], &path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("#2 ") && listed.contains("still not invited"), "{listed}");
    let out = boardroom(&["dead-letters", "--requeue"], &path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
}

/// `reindex` (and `dead-letters --requeue`) while another process holds the database: a sentence
/// that names it and says what to do, not RocksDB's lock error; `-c` names the config.
#[test]
fn a_database_in_use_is_named_and_the_config_takes_dash_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, path) = crate::harness::minimal_config_in(dir.path());
    let held = boardroom::store::Store::open(&db).expect("store");
    for args in [["reindex"].as_slice(), ["dead-letters", "--requeue"].as_slice()] {
        let out = Command::new(crate::harness::boardroom_exe())
            .args(args)
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run boardroom");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("is in use by another process") && err.contains("stop it first"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("Resource temporarily unavailable"), "{args:?}: {err}");
    }
    drop(held);
}

/// `status`, `export` and the dead-letter list on a path with no database: they say so,
/// and leave nothing behind (RocksDB would create the directory before failing).
#[test]
fn readers_on_a_missing_database_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, path) = crate::harness::minimal_config_in(dir.path());
    for args in
        [["status"].as_slice(), ["dead-letters"].as_slice(), ["export", "-o", "-"].as_slice()]
    {
        let out = boardroom(args, &path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("there is no database at"), "{args:?}: {err}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

/// `boardroom status` reads a database another process holds open (as `serve` does), and
/// shows what is in it, including writes made since that process opened it.
#[test]
fn status_reads_a_database_in_use() {
    use boardroom::{
        domain::inbox::{Kind, Notification},
        store::inbound::{EntryKind, NewEntry},
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, path) = crate::harness::minimal_config_in(dir.path());
    let held = boardroom::store::Store::open(&db).expect("store");
    let event = |id: &'static str| NewEntry {
        kind: EntryKind::Timeline,
        room_id: "!waiting:example.org",
        event_id: Some(id),
        json: br#"{"origin_server_ts": 1000}"#,
        may_change_rooms: false,
        plain: false,
    };
    held.ingest("1", [1; 32], &[event("$a"), event("$b")]).expect("ingest");
    held.enqueue_outbound(&[b"{}".to_vec()]).expect("outbox");
    held.add_notifications(vec![Notification {
        id: 0,
        user_id: "@reader:example.org".try_into().expect("user"),
        kind: Kind::Mention,
        board: "launch".into(),
        room_id: "!waiting:example.org".try_into().expect("room"),
        thread_root: None,
        event_id: "$a".try_into().expect("event"),
        sender: "@alice:example.org".try_into().expect("user"),
        excerpt: "hi".into(),
        ts: 1,
        read: false,
        seq: 1,
    }])
    .expect("notification");
    let status = || {
        let out = Command::new(crate::harness::boardroom_exe())
            .args(["status", "-c"])
            .arg(&path)
            .output()
            .expect("run boardroom");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let line = |text: &str, name: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` in:\n{text}"))
            .trim_start_matches(name)
            .trim()
            .to_owned()
    };
    let text = status();
    assert_eq!(line(&text, "inbound waiting"), "2", "{text}");
    assert!(
        line(&text, "oldest waiting").starts_with("#1 in !waiting:example.org, sent "),
        "{text}"
    );
    assert_eq!(line(&text, "outbox waiting"), "1", "{text}");
    assert_eq!(line(&text, "dead letters"), "0", "{text}");
    assert_eq!(line(&text, "boards"), "0", "{text}");
    assert_eq!(line(&text, "inbox entries"), "1", "{text}");
    assert!(
        line(&text, "database")
            .ends_with(&format!("schema version {})", boardroom::store::SCHEMA_VERSION)),
        "{text}"
    );
    // What the holder writes next shows at the next look; the holder is undisturbed.
    held.ingest("2", [2; 32], &[event("$c")]).expect("ingest");
    assert_eq!(line(&status(), "inbound waiting"), "3");
    held.complete_pending_group(&[1, 2, 3], &[]).expect("the holder still writes");
    let text = status();
    assert_eq!(line(&text, "inbound waiting"), "0", "{text}");
    assert!(!text.contains("oldest waiting"), "{text}");
    drop(held);
}

/// `--version` names the commit the binary was built from.
#[test]
fn version_names_the_commit() {
    let out = Command::new(crate::harness::boardroom_exe())
        .arg("--version")
        .output()
        .expect("run boardroom");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "{text}");
    let commit = text
        .strip_prefix(&format!("boardroom {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `boardroom <version> (commit <id>)`: {text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

/// `registration --generate` gives the example's placeholder tokens new random ones in the
/// config file, prints the registration with them, and leaves a filled config as it is.
#[test]
fn registration_generate_writes_new_tokens_into_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    let example =
        std::fs::read_to_string(crate::harness::project_root().join("config.example.toml"))
            .expect("the example");
    std::fs::write(&path, &example).expect("write");
    // The example is refused as it is: its tokens are placeholders.
    let out = boardroom(&["check-config"], &path);
    assert!(!out.status.success());

    let out = boardroom(&["registration", "--generate"], &path);
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{yaml}{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(!written.contains("\"change-me"), "{written}");
    let token = |key: &str| -> String {
        written
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no {key}"))
            .to_owned()
    };
    let (as_token, hs_token) = (token("as_token"), token("hs_token"));
    assert_eq!(as_token.len(), 64);
    assert_ne!(as_token, hs_token);
    let yaml_line = |key: &str| {
        yaml.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{yaml}")).to_owned()
    };
    assert!(yaml_line("as_token:").contains(&as_token), "{yaml}");
    assert!(yaml_line("hs_token:").contains(&hs_token), "{yaml}");
    // Nothing but the tokens changed: same lines, comments included.
    assert_eq!(written.lines().count(), example.lines().count());
    let changed = written.lines().zip(example.lines()).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 3, "as_token, hs_token and the client's token");
    assert!(boardroom(&["check-config"], &path).status.success());
    // Again: nothing to generate, the same tokens.
    assert!(boardroom(&["registration", "-g"], &path).status.success());
    assert_eq!(std::fs::read_to_string(&path).expect("read"), written);
}
