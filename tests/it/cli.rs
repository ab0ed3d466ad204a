//! The real binary: `check-config`, `registration`, `dead-letters` and `reindex`.

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

const GOOD: &str = r#"
[homeserver]
url = "http://127.0.0.1:8008"
server_name = "example.org"
[appservice]
url = "http://127.0.0.1:9009"
as_token = "as-secret-token"
hs_token = "hs-secret-token"
[database]
path = "/tmp/boardroom-cli-test"
"#;

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
    let db = dir.path().join("db");
    let path = dir.path().join("boardroom.toml");
    std::fs::write(
        &path,
        GOOD.replace("/tmp/boardroom-cli-test", db.to_str().expect("utf-8 path")),
    )
    .expect("write");
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

    // While another process holds the database, it says what to do.
    let _held = boardroom::store::Store::open(&db).expect("store");
    let out = boardroom(&["dead-letters"], &path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
}

/// `reindex` (and `dead-letters`) while another process holds the database: a sentence
/// that names it and says what to do, not RocksDB's lock error; `-c` names the config.
#[test]
fn a_database_in_use_is_named_and_the_config_takes_dash_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let path = dir.path().join("boardroom.toml");
    std::fs::write(&path, GOOD.replace("/tmp/boardroom-cli-test", db.to_str().expect("utf-8")))
        .expect("write");
    let held = boardroom::store::Store::open(&db).expect("store");
    for args in [["reindex"].as_slice(), ["dead-letters"].as_slice()] {
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
