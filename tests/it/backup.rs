//! `boardroom export` and `boardroom import`, the real binary: a round trip on a populated
//! database gives the same file and the same state; a database that holds records, a
//! truncated file, a newer schema and a database in use are refused, changing nothing; an
//! export from a database another process holds and writes is consistent.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use boardroom::{
    domain::{
        inbox::{Kind, Notification},
        stream::{MessageEvent, StreamData, StreamEvent},
    },
    store::{
        SCHEMA_VERSION, Store,
        inbound::{EntryKind, NewEntry},
    },
};

fn user_id(id: &str) -> OwnedUserId {
    id.try_into().expect("user id")
}

fn event_id(id: &str) -> OwnedEventId {
    id.try_into().expect("event id")
}

fn room_id(id: &str) -> OwnedRoomId {
    id.try_into().expect("room id")
}

/// A config whose database is `db`.
fn config(dir: &Path, name: &str, db: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    crate::harness::write_minimal_config(&path, db);
    path
}

fn boardroom(config: &Path, args: &[&str]) -> Output {
    Command::new(crate::harness::boardroom_exe())
        .args(args)
        .arg("-c")
        .arg(config)
        .env_remove("BOARDROOM__HOMESERVER__URL")
        // Exports made at "the same time": equal byte for byte.
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run boardroom")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {stderr}");
    stderr
}

fn failed(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {stderr}");
    stderr
}

fn notification(user: &str, event: &str, n: u64) -> Notification {
    Notification {
        id: 0,
        user_id: user_id(user),
        kind: Kind::Mention,
        board: "launch".into(),
        room_id: room_id("!general:example.org"),
        thread_root: None,
        event_id: event_id(event),
        sender: user_id("@alice:example.org"),
        excerpt: format!("hello {n} — ünïcode \"quoted\"\nnext line"),
        ts: 1000 + n,
        read: false,
        seq: n,
    }
}

fn message(n: u64) -> StreamEvent {
    StreamEvent::public(StreamData::Message(MessageEvent {
        room: "general".into(),
        room_id: room_id("!general:example.org"),
        event_id: format!("$m{n}").try_into().expect("event"),
        sender: user_id("@alice:example.org"),
        display_name: None,
        msgtype: Some("m.text".into()),
        body: Some(format!("message {n}")),
        formatted_body: None,
        ts: 2000 + n,
        thread_root: None,
        replaces: None,
        redacts: None,
    }))
}

/// Fills a database through the store's own repositories: every kind of state an export
/// holds, and a board's task counter (`slug_tasknext`, board index), which it does not.
fn populate(store: &Store) {
    let entry = |id: &'static str| NewEntry {
        kind: EntryKind::Timeline,
        room_id: "!general:example.org",
        event_id: Some(id),
        json: br#"{"origin_server_ts": 1000, "content": {"body": "waiting"}}"#,
        may_change_rooms: false,
        plain: false,
    };
    store.ingest("txn-1", [7; 32], &[entry("$p1"), entry("$p2")]).expect("ingest");
    store.complete_pending(1, &[]).expect("one processed");
    store
        .enqueue_outbound(&[
            br#"{"join_room":{"room_id":"!a:example.org"}}"#.to_vec(),
            b"{}".to_vec(),
        ])
        .expect("outbox");
    store.outbox_mark_sent(1, 5000).expect("sent mark");
    store.outbox_dead(2, b"{}", "M_FORBIDDEN: not invited").expect("dead letter");
    store
        .add_notifications(vec![
            notification("@bob:example.org", "$e1", 1),
            notification("@bob:example.org", "$e2", 2),
            notification("@carol:example.org", "$e2", 3),
        ])
        .expect("notifications");
    store.mark_read(&user_id("@bob:example.org"), 1).expect("read");
    store
        .log_once(
            &event_id("$m1"),
            vec![("launch".into(), message(1)), ("launch".into(), message(2))],
        )
        .expect("live log");
    store
        .record_webhook_delivery(
            "ci",
            "delivery-1",
            &[0xFF; 32],
            &serde_json::json!({"ok": true}),
            &[],
        )
        .expect("webhook delivery");
    store.claim_virtual_user(&user_id("@bot_ci:example.org"), "ci", 10).expect("virtual user");
    store.reserve_task_number("launch", &event_id("$cmd")).expect("reserved number");
    store.note_once(&room_id("!general:example.org"), "encrypted").expect("note");
}

fn unread(store: &Store, user: &str) -> u64 {
    store.unread_count(&user_id(user)).expect("unread")
}

/// Export → import into a new database → export: the same bytes, and the imported
/// database reads back the same state through the repositories.
#[test]
fn export_import_round_trip_on_a_populated_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a"), dir.path().join("b"));
    let (conf_a, conf_b) = (config(dir.path(), "a", &db_a), config(dir.path(), "b", &db_b));
    {
        let store = Store::open(&db_a).expect("open");
        populate(&store);
    }
    let first = dir.path().join("first.jsonl");
    let said = ok(&boardroom(&conf_a, &["export", "--output", first.to_str().expect("utf-8")]));
    assert!(said.contains("exported "), "{said}");
    // Without a terminal, a line per map.
    assert!(said.contains("useridid_notification: 3"), "{said}");
    let text = std::fs::read_to_string(&first).expect("read export");
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("header")).expect("json");
    assert_eq!(header["format"], "boardroom-export");
    assert_eq!(header["format_version"], 1);
    assert_eq!(header["schema_version"], SCHEMA_VERSION);
    assert_eq!(header["created_ms"], 1_700_000_000_000u64);
    assert!(text.lines().last().expect("end").starts_with(r#"{"end":"#));
    // Readable where it can be; the board index is not in it.
    assert!(text.contains(r#""map":"useridid_notification","key":["@bob:example.org","#), "{text}");
    assert!(!text.contains("slug_tasknext"), "{text}");

    let said = ok(&boardroom(&conf_b, &["import", "--input", first.to_str().expect("utf-8")]));
    assert!(said.contains("boardroom reindex"), "{said}");
    // From standard output this time: the same bytes.
    let second = boardroom(&conf_b, &["export"]);
    ok(&second);
    assert!(second.stdout == text.as_bytes(), "the round trip changed the export");

    let store = Store::open(&db_b).expect("the imported database opens");
    assert_eq!(unread(&store, "@bob:example.org"), 1);
    assert_eq!(unread(&store, "@carol:example.org"), 1);
    let bob = store.notifications(&user_id("@bob:example.org"), None, 10).expect("notifications");
    assert_eq!(bob.len(), 2);
    assert!(bob.iter().any(|n| n.excerpt.contains("ünïcode \"quoted\"\nnext line")));
    assert_eq!(store.notified_by(&event_id("$e2")).expect("notified").len(), 2);
    assert_eq!(store.pending_counts().expect("pending").0, 1);
    assert!(store.is_event_seen("$p1").expect("seen"));
    assert_eq!(store.outbox_from(0, 10).expect("outbox").len(), 1);
    assert_eq!(store.outbox_sent_at(1).expect("sent"), Some(5000));
    assert_eq!(store.outbox_dead_entries(10).expect("dead").len(), 1);
    // The board's log: the two messages, and the inbox entries and the read told to
    // their owners; the same events under the same ids as in the database exported.
    let live = store.live_read("launch", 0, 100).expect("live");
    assert_eq!(live.len(), 6, "{live:?}");
    let original = Store::open(&db_a).expect("open the original");
    assert_eq!(live, original.live_read("launch", 0, 100).expect("live"));
    drop(original);
    assert!(store.webhook_delivery("ci", "delivery-1").expect("delivery").is_some());
    assert!(store.webhook_delivery_signed("ci", &[0xFF; 32]).expect("signed").is_some());
    assert!(store.virtual_user(&user_id("@bot_ci:example.org")).expect("vu").is_some());
    assert!(store.noted(&room_id("!general:example.org"), "encrypted").expect("noted"));
    // Counters carry on past what was imported: no id handed out twice.
    store.enqueue_outbound(&[b"{}".to_vec()]).expect("enqueue");
    assert_eq!(store.outbox_from(0, 10).expect("outbox").last().map(|(s, _)| *s), Some(3));
    let carol =
        store.notifications(&user_id("@carol:example.org"), None, 10).expect("notifications");
    let highest = bob.iter().chain(&carol).map(|n| n.id).max().expect("ids");
    let again = store
        .add_notifications(vec![notification("@bob:example.org", "$e9", 9)])
        .expect("notification");
    assert!(again.iter().all(|n| n.id > highest), "{again:?}");
}

/// A database holding records is refused without `--force`, and nothing changes; with
/// it, its own state is replaced by the export's.
#[test]
fn import_refuses_a_database_that_holds_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a"), dir.path().join("b"));
    let (conf_a, conf_b) = (config(dir.path(), "a", &db_a), config(dir.path(), "b", &db_b));
    {
        let store = Store::open(&db_a).expect("open");
        populate(&store);
        let other = Store::open(&db_b).expect("open");
        other
            .add_notifications(vec![notification("@dave:example.org", "$d", 1)])
            .expect("notification");
    }
    let export = dir.path().join("a.jsonl");
    ok(&boardroom(&conf_a, &["export", "-o", export.to_str().expect("utf-8")]));
    let before = boardroom(&conf_b, &["export"]).stdout;

    let err = failed(&boardroom(&conf_b, &["import", "-i", export.to_str().expect("utf-8")]));
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");
    assert!(err.contains("useridid_notification"), "{err}");
    assert_eq!(boardroom(&conf_b, &["export"]).stdout, before, "the refusal changed it");

    // From standard input this time.
    let mut child = Command::new(crate::harness::boardroom_exe())
        .args(["import", "--force", "-c"])
        .arg(&conf_b)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run boardroom");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&std::fs::read(&export).expect("read")).expect("write stdin");
    }
    ok(&child.wait_with_output().expect("wait"));
    let leftover: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftover.is_empty(), "the copy of standard input is left: {leftover:?}");
    assert_eq!(
        boardroom(&conf_b, &["export"]).stdout,
        std::fs::read(&export).expect("read"),
        "--force leaves the export's state, and only it"
    );
}

/// A truncated or altered file, a newer schema: refused with the line, nothing written.
/// An older schema is imported, then migrated.
#[test]
fn import_refuses_a_truncated_file_or_a_newer_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a"), dir.path().join("b"));
    let (conf_a, conf_b) = (config(dir.path(), "a", &db_a), config(dir.path(), "b", &db_b));
    {
        let store = Store::open(&db_a).expect("open");
        populate(&store);
    }
    let text = String::from_utf8(ok_stdout(&boardroom(&conf_a, &["export"]))).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    let empty = || {
        let store = Store::open(&db_b).expect("open");
        let bob = user_id("@bob:example.org");
        assert!(store.notifications(&bob, None, 10).expect("read").is_empty());
        assert_eq!(store.pending_counts().expect("pending").0, 0);
        assert_eq!(store.schema_version().expect("schema"), Some(SCHEMA_VERSION));
    };
    let import = |name: &str, body: &[u8]| -> String {
        let file = dir.path().join(name);
        std::fs::write(&file, body).expect("write");
        failed(&boardroom(&conf_b, &["import", "-i", file.to_str().expect("utf-8")]))
    };

    // Cut before the closing line.
    let cut = lines[..lines.len() - 1].join("\n") + "\n";
    let err = import("cut.jsonl", cut.as_bytes());
    assert!(err.contains(&format!("line {}", lines.len())) && err.contains("truncated"), "{err}");
    empty();
    // Cut in the middle of a line.
    let err = import("mid.jsonl", &text.as_bytes()[..text.len() / 2]);
    assert!(err.contains("line ") && err.contains("truncated"), "{err}");
    empty();
    // A record altered into something else.
    let mut broken = lines.clone();
    broken[3] = r#"{"map":"useridid_notification","key":"#;
    let err = import("broken.jsonl", (broken.join("\n") + "\n").as_bytes());
    assert!(err.contains("line 4: "), "{err}");
    empty();
    // Written by a newer Boardroom.
    let newer = text.replacen(
        &format!(r#""schema_version":{SCHEMA_VERSION}"#),
        &format!(r#""schema_version":{}"#, SCHEMA_VERSION + 1),
        1,
    );
    let err = import("newer.jsonl", newer.as_bytes());
    assert!(err.contains("line 1: ") && err.contains("newer than this Boardroom"), "{err}");
    empty();

    // From the schema before: imported at it, then migrated by the usual migrations.
    use base64::Engine as _;
    let b64 = |v: u64| base64::engine::general_purpose::STANDARD.encode(v.to_be_bytes());
    let older: String = text
        .replacen(
            &format!(r#""schema_version":{SCHEMA_VERSION}"#),
            &format!(r#""schema_version":{}"#, SCHEMA_VERSION - 1),
            1,
        )
        .lines()
        .map(|l| {
            if l.starts_with(r#"{"map":"global","key":["schema_version"]"#) {
                l.replace(&b64(SCHEMA_VERSION), &b64(SCHEMA_VERSION - 1)) + "\n"
            } else {
                l.to_owned() + "\n"
            }
        })
        .collect();
    assert!(older.contains(&b64(SCHEMA_VERSION - 1)), "{older}");
    let file = dir.path().join("older.jsonl");
    std::fs::write(&file, older).expect("write");
    let said = ok(&boardroom(&conf_b, &["import", "-i", file.to_str().expect("utf-8")]));
    assert!(
        said.contains(&format!("schema version {}, now {SCHEMA_VERSION}", SCHEMA_VERSION - 1)),
        "{said}"
    );
    let store = Store::open(&db_b).expect("open");
    assert_eq!(unread(&store, "@bob:example.org"), 1);
}

fn ok_stdout(out: &Output) -> Vec<u8> {
    ok(out);
    out.stdout.clone()
}

/// Import refuses a database `serve` holds; export reads one that another process holds
/// and writes all along, and what it wrote is one consistent state: each inbox write
/// (entries and unread count together) wholly in or out.
#[test]
fn export_reads_a_database_in_use_consistently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a"), dir.path().join("b"));
    let (conf_a, conf_b) = (config(dir.path(), "a", &db_a), config(dir.path(), "b", &db_b));
    let held = Store::open(&db_a).expect("open");
    populate(&held);
    let export = dir.path().join("a.jsonl");
    ok(&boardroom(&conf_a, &["export", "-o", export.to_str().expect("utf-8")]));
    let err = failed(&boardroom(&conf_a, &["import", "-i", export.to_str().expect("utf-8")]));
    assert!(err.contains("is in use by another process") && err.contains("stop it first"), "{err}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (held, stop) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 100;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let event = format!("$w{n}");
                held.add_notifications(vec![
                    notification("@erin:example.org", &event, n),
                    notification("@frank:example.org", &event, n),
                ])
                .expect("the holder writes");
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            n - 100
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    for round in 0..3 {
        let during = dir.path().join(format!("during-{round}.jsonl"));
        ok(&boardroom(&conf_a, &["export", "-o", during.to_str().expect("utf-8")]));
        let _ = std::fs::remove_dir_all(&db_b);
        ok(&boardroom(&conf_b, &["import", "-i", during.to_str().expect("utf-8")]));
        let store = Store::open(&db_b).expect("open");
        let erin = user_id("@erin:example.org");
        let entries = store.notifications(&erin, None, 100_000).expect("notifications");
        assert_eq!(entries.len() as u64, unread(&store, "@erin:example.org"));
        assert_eq!(
            unread(&store, "@erin:example.org"),
            unread(&store, "@frank:example.org"),
            "one write told both, so both or neither"
        );
        drop(store);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    // The holder was not disturbed, and a last export sees all it wrote.
    let last = boardroom(&conf_a, &["export"]);
    let text = String::from_utf8(ok_stdout(&last)).expect("utf-8");
    let erin = text
        .lines()
        .filter(|l| l.starts_with(r#"{"map":"useridid_notification","key":["@erin:example.org","#))
        .count();
    assert_eq!(erin as u64, written);
    drop(held);
}
