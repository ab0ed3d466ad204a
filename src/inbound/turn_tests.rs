//! A lane's turn ([`super::process_turn`]): the messages that are not commands are written
//! together, and any other entry is handled on its own after what came before it is
//! written, so that it sees it (its completion goes with the next write); and where
//! entries go ([`super::route`]).

use ruma::{RoomId, events::room::member::MembershipState};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    Completions,
    trust_tests::{ATTACKER, GENERAL, TASKS, alice, board, mallory, message},
};
use crate::store::inbound::{EntryKind, NewEntry};

/// Mallory mentions Alice, talks, redacts her mention, mentions Alice again and redacts
/// her talk, all in one turn: the stream has each message followed by what it made, in
/// order; the first redaction, handled on its own after the two messages before it were
/// written, took away the first mention; the messages' entries left the queue with their
/// write, and so did the first redaction's, with the write after it; the last redaction's
/// completion is left for the completion writer.
#[tokio::test]
async fn a_turn_writes_its_messages_together_and_in_order_with_what_comes_between() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let (ctx, store) = (&app.ctx, &app.ctx.store);
    let general = RoomId::parse(GENERAL).expect("room id");
    for user in [alice(), mallory()] {
        store.set_membership(&general, user, &MembershipState::Join, None, None).expect("member");
    }
    let mention = |body: &str| {
        message(
            GENERAL,
            mallory(),
            json!({ "msgtype": "m.text", "body": body, "m.mentions": { "user_ids": [alice()] } }),
        )
    };
    let first = mention("alice: the first look");
    let first_id = first["event_id"].as_str().expect("id").to_owned();
    let redaction = json!({
        "type": "m.room.redaction",
        "room_id": GENERAL,
        "sender": mallory(),
        "redacts": first_id,
        "content": { "redacts": first_id },
        "event_id": "$turn-redaction",
        "origin_server_ts": 1_700_000_000_000u64,
    });
    let talk = message(GENERAL, mallory(), json!({ "msgtype": "m.text", "body": "just talking" }));
    let talk_id = talk["event_id"].as_str().expect("id").to_owned();
    let mut last = redaction.clone();
    last["redacts"] = json!(talk_id);
    last["content"]["redacts"] = json!(talk_id);
    last["event_id"] = json!("$turn-last-redaction");
    let events = [first, talk, redaction, mention("alice: the second look"), last];
    let jsons: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (e["event_id"].as_str().expect("id").to_owned(), serde_json::to_vec(e).expect("json"))
        })
        .collect();
    let entries: Vec<NewEntry<'_>> = jsons
        .iter()
        .map(|(id, json)| NewEntry {
            kind: EntryKind::Timeline,
            room_id: GENERAL,
            event_id: Some(id),
            json,
            may_change_rooms: false,
            // As ingest's first pass reads it.
            plain: crate::inbound::peek::Peek::of(json).is_some_and(|p| p.cannot_be_a_command()),
        })
        .collect();
    store.ingest("turn", [7; 32], &entries).expect("ingest");
    let turn = store.pending_from(0, 10).expect("pending");
    let seqs: Vec<u64> = turn.iter().map(|e| e.seq).collect();
    let head = store.live_head("launch").expect("head");

    let completions = Completions::default();
    let processed_before = ctx.metrics.events_processed.get();
    super::process_turn(ctx, turn, &CancellationToken::new(), &completions).await;

    let log = store.live_read("launch", head, 20).expect("log");
    let seen: Vec<(&str, Option<String>)> = log
        .iter()
        .map(|(_, e)| {
            let redacts = match &e.data {
                crate::domain::stream::StreamData::Message(m) => {
                    m.redacts.as_ref().map(|r| r.to_string())
                }
                _ => None,
            };
            (e.kind(), redacts)
        })
        .collect();
    let plain = |kind| (kind, None);
    assert_eq!(
        seen,
        [
            plain("message"),
            plain("notification"),
            plain("message"),
            ("message", Some(first_id.clone())),
            plain("message"),
            plain("notification"),
            ("message", Some(talk_id)),
        ],
        "each message with what it made, in order, the redactions where they came"
    );
    assert_eq!(store.unread_count(alice()).expect("count"), 1, "the first mention was redacted");
    let done: Vec<(u64, bool)> =
        completions.take().iter().map(|c| (c.seq, c.off_the_queue)).collect();
    assert_eq!(
        done,
        [(seqs[4], false)],
        "only the last redaction, after every message, is left to the completion writer: \
         the messages' own write took them off the queue, and the write of the message after \
         it the first redaction"
    );
    assert_eq!(
        ctx.metrics.events_processed.get() - processed_before,
        4,
        "the entries written by the turn are counted processed without the writer"
    );
    let left: Vec<u64> =
        store.pending_from(0, 10).expect("pending").iter().map(|e| e.seq).collect();
    assert_eq!(
        left,
        [seqs[4]],
        "the last redaction, after every message, waits for the completion writer"
    );
}

/// A plain message (as ingest marks it) in a room that is no board's, mentioning Alice,
/// taken in a turn: the mark only says it cannot be a command; the turn finds no board
/// room for it, so nothing is logged or notified, and it completes with no action.
#[tokio::test]
async fn a_plain_message_outside_a_board_logs_nothing_and_notifies_no_one_in_a_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let (ctx, store) = (&app.ctx, &app.ctx.store);
    let event = message(
        ATTACKER,
        mallory(),
        json!({ "msgtype": "m.text", "body": "alice: look", "m.mentions": { "user_ids": [alice()] } }),
    );
    let json = serde_json::to_vec(&event).expect("json");
    let plain = crate::inbound::peek::Peek::of(&json).is_some_and(|p| p.cannot_be_a_command());
    assert!(plain, "ingest marks it plain");
    let id = event["event_id"].as_str().expect("id");
    let entry = NewEntry {
        kind: EntryKind::Timeline,
        room_id: ATTACKER,
        event_id: Some(id),
        json: &json,
        may_change_rooms: false,
        plain,
    };
    store.ingest("outside", [9; 32], &[entry]).expect("ingest");
    let turn = store.pending_from(0, 10).expect("pending");
    let head = store.live_head("launch").expect("head");

    let completions = Completions::default();
    super::process_turn(ctx, turn, &CancellationToken::new(), &completions).await;

    assert!(store.live_read("launch", head, 10).expect("log").is_empty(), "nothing logged");
    assert_eq!(store.unread_count(alice()).expect("count"), 0, "no one notified");
    let done: Vec<(bool, usize)> =
        completions.take().iter().map(|c| (c.off_the_queue, c.actions.len())).collect();
    assert_eq!(done, [(false, 0)], "completed with no action, by the completion writer");
}

/// Two `!help` commands, each in a turn of its own: the first while a group is being
/// written (the writer's place is taken), so its completion waits in the queue; the second
/// once the place is free, so its turn writes its completion itself, with the first's
/// before it: both leave the queue and both replies reach the outbox, in order, without
/// the completion writer.
#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "the test holds the writer's place over a turn, which only tries to take it"
)]
async fn a_turn_writes_a_command_s_reply_itself_after_what_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let (ctx, store) = (&app.ctx, &app.ctx.store);
    let help = |n: u32| {
        let mut e = message(GENERAL, alice(), json!({ "msgtype": "m.text", "body": "!help" }));
        e["event_id"] = json!(format!("$help-{n}"));
        serde_json::to_vec(&e).expect("json")
    };
    let jsons = [help(1), help(2)];
    let entries: Vec<NewEntry<'_>> = jsons
        .iter()
        .zip(["$help-1", "$help-2"])
        .map(|(json, id)| NewEntry {
            kind: EntryKind::Timeline,
            room_id: GENERAL,
            event_id: Some(id),
            json,
            may_change_rooms: true,
            plain: false,
        })
        .collect();
    store.ingest("help", [6; 32], &entries).expect("ingest");
    let mut turns = store.pending_from(0, 10).expect("pending").into_iter();
    let (first, second) = (turns.next().expect("first"), turns.next().expect("second"));
    let outbox_before = store.outbox_from(0, 100).expect("outbox").len();
    let completions = Completions::default();

    let writing = completions.writing.lock().expect("the writer's place");
    super::process_turn(ctx, vec![first.clone()], &CancellationToken::new(), &completions).await;
    drop(writing);
    let waiting: Vec<(u64, bool)> = completions
        .waiting
        .lock()
        .expect("queue")
        .iter()
        .map(|c| (c.seq, c.actions.is_empty()))
        .collect();
    assert_eq!(waiting, [(first.seq, false)], "the first reply waits while a group is written");
    assert_eq!(store.outbox_from(0, 100).expect("outbox").len(), outbox_before, "not queued yet");

    super::process_turn(ctx, vec![second.clone()], &CancellationToken::new(), &completions).await;
    assert!(completions.take().is_empty(), "nothing left for the completion writer");
    assert!(store.pending_from(0, 10).expect("pending").is_empty(), "both left the queue");
    let replies: Vec<String> = store
        .outbox_from(0, 100)
        .expect("outbox")
        .into_iter()
        .skip(outbox_before)
        .map(|(_, v)| {
            let action: serde_json::Value = serde_json::from_slice(&v).expect("action");
            action.to_string()
        })
        .collect();
    assert_eq!(replies.len(), 2, "both replies queued: {replies:?}");
    for (reply, id) in replies.iter().zip(["$help-1", "$help-2"]) {
        assert!(reply.contains("Boardroom commands") && reply.contains(id), "in order: {reply}");
    }
}

/// The completion writer does not wait on the lock a lane holds while it writes a group
/// (that would hold a worker thread for a write that can wait on the disk): a completion
/// queued meanwhile stays pending until the lane lets go, and is written then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::await_holding_lock, reason = "the test holds the lock as a lane writing would")]
async fn the_completion_writer_writes_what_came_during_a_lane_s_write_when_it_lets_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let (ctx, store) = (&app.ctx, &app.ctx.store);
    let mut help = message(GENERAL, alice(), json!({ "msgtype": "m.text", "body": "!help" }));
    help["event_id"] = json!("$help-during");
    let json = serde_json::to_vec(&help).expect("json");
    let entry = NewEntry {
        kind: EntryKind::Timeline,
        room_id: GENERAL,
        event_id: Some("$help-during"),
        json: &json,
        may_change_rooms: true,
        plain: false,
    };
    store.ingest("during", [7; 32], &[entry]).expect("ingest");
    let pending = store.pending_from(0, 10).expect("pending");
    let outbox_before = store.outbox_from(0, 100).expect("outbox").len();
    let completions = std::sync::Arc::new(Completions::default());
    let writer = tokio::spawn(super::write_completions(ctx.clone(), completions.clone()));

    // A lane is writing a group: the command's completion goes to the completion writer,
    // which finds the lock taken.
    let lane = completions.writing.lock().expect("the lane's lock");
    super::process_turn(ctx, pending, &CancellationToken::new(), &completions).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(store.pending_from(0, 10).expect("pending").len(), 1, "not written under the lock");
    assert_eq!(store.outbox_from(0, 100).expect("outbox").len(), outbox_before, "no reply yet");

    completions.let_go(lane);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !store.pending_from(0, 10).expect("pending").is_empty() {
        assert!(std::time::Instant::now() < deadline, "written once the lane let go");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let replies = store.outbox_from(0, 100).expect("outbox").len() - outbox_before;
    assert_eq!(replies, 1, "the reply queued with it");
    completions.close();
    writer.await.expect("the completion writer ends when closed");
}

/// A board room's entries that cannot change rooms go to a lane the board's rooms share;
/// a possible command, an entry of another kind, or one outside a board, to the room's
/// own. A room moved to another board goes to that board's lanes at once.
#[tokio::test]
async fn entries_share_their_board_s_lanes_unless_they_may_change_rooms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let store = &app.ctx.store;
    let entry = |room: &'static str, kind: EntryKind, may_change_rooms: bool| NewEntry {
        kind,
        room_id: room,
        event_id: None,
        json: b"{}",
        may_change_rooms,
        plain: false,
    };
    let entries = [
        entry(GENERAL, EntryKind::Timeline, false),
        entry(TASKS, EntryKind::Timeline, false),
        entry(GENERAL, EntryKind::Timeline, true),
        entry(GENERAL, EntryKind::Receipt, false),
        entry("!elsewhere:localhost", EntryKind::Timeline, false),
    ];
    store.ingest("route", [8; 32], &entries).expect("ingest");
    let pending = store.pending_from(0, 10).expect("pending");
    let routes: Vec<(String, Option<String>)> = pending
        .iter()
        .map(|e| {
            let r = super::route(store, e);
            (r.key, r.shared)
        })
        .collect();
    let lanes = *super::BOARD_LANES;
    let shared =
        |room: &str| Some(format!("board {} launch", super::fnv1a(room.as_bytes()) % lanes));
    assert_eq!(
        routes,
        [
            (GENERAL.to_owned(), shared(GENERAL)),
            (TASKS.to_owned(), shared(TASKS)),
            (GENERAL.to_owned(), None),
            (GENERAL.to_owned(), None),
            ("!elsewhere:localhost".to_owned(), None),
        ]
    );
    let general = RoomId::parse(GENERAL).expect("room id");
    let mut moved = store.room(&general).expect("read").expect("a board room");
    moved.board = "other".into();
    store.put_room(&general, &moved).expect("room");
    let shared = super::route(store, &pending[0]).shared.expect("a shared lane");
    assert!(shared.ends_with(" other"), "{shared}");
}

/// A board's rooms share one lane per async worker but one: the worker left over is
/// ingest's. Two workers make one lane; one worker still one; many at most 16.
#[test]
fn a_board_has_a_lane_per_core_but_one() {
    let lanes: Vec<u64> = [0, 1, 2, 3, 8, 64].into_iter().map(super::board_lanes).collect();
    assert_eq!(lanes, [1, 1, 1, 2, 7, 16]);
    // Counted on the runtime processing runs on, as `[runtime] worker_threads` makes it.
    for (workers, lanes) in [(1u64, 1u64), (3, 2), (5, 4)] {
        let rt = crate::app::runtime(&crate::config::RuntimeConfig { worker_threads: workers })
            .expect("runtime");
        assert_eq!(rt.block_on(async { super::board_lanes_here() }), lanes, "{workers} workers");
    }
}

/// A board's everyday events, as the pipeline bench mixes them (a message, a mention, a
/// comment in a task's thread, a member joining), ingested and taken in turns, three
/// rounds: every map the catalog marks [`Writes::Busy`](crate::store::maps::Writes) (1 MiB
/// write-buffer blocks) is written by them, and every map marked rare (64 KiB blocks, each
/// counted against the write buffers' budget) that they write holds no more records after
/// the third round than after the first (a count, a counter, rewritten in place): none
/// gains records with every event, which would fill its buffer block by block.
#[tokio::test]
async fn a_board_s_everyday_events_add_records_only_to_maps_marked_busy() {
    use crate::store::maps::{self, MAPS, Writes};
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let (ctx, store) = (&app.ctx, &app.ctx.store);
    for room in [GENERAL, TASKS] {
        let room = RoomId::parse(room).expect("room id");
        for user in [alice(), mallory()] {
            store.set_membership(&room, user, &MembershipState::Join, None, None).expect("member");
        }
    }
    // What the set-up wrote goes to table files: the write buffers then hold only what
    // the events write.
    store.flush_write_buffers().expect("flush");
    let db = store.db().expect("db");
    let cf = |name: &str| crate::store::cf(&db, name).expect("cf");
    let buffered = |name: &str| {
        db.property_int_value_cf(cf(name), "rocksdb.num-entries-active-mem-table")
            .expect("property")
            .unwrap_or(0)
    };
    let records = |name: &str| db.iterator_cf(cf(name), rocksdb::IteratorMode::Start).count();
    assert!(MAPS.iter().all(|m| buffered(m.name) == 0), "the write buffers start empty");

    let mut after_first: Vec<usize> = Vec::new();
    for round in 0..3 {
        let mut join = message(GENERAL, mallory(), json!({ "membership": "join" }));
        let newcomer = format!("@carol{round}:localhost");
        join["type"] = json!("m.room.member");
        join["sender"] = json!(newcomer);
        join["state_key"] = json!(newcomer);
        let mention = json!({
            "msgtype": "m.text",
            "body": "alice: a look?",
            "m.mentions": { "user_ids": [alice()] },
        });
        let comment = json!({
            "msgtype": "m.text",
            "body": "tried it on staging",
            "m.relates_to": { "rel_type": "m.thread", "event_id": "$root1" },
        });
        let events = [
            message(GENERAL, mallory(), json!({ "msgtype": "m.text", "body": "it is green" })),
            message(GENERAL, mallory(), mention),
            message(TASKS, mallory(), comment),
            join,
        ];
        let jsons: Vec<(String, String, Vec<u8>)> = events
            .iter()
            .map(|e| {
                let id = e["event_id"].as_str().expect("id").to_owned();
                let room = e["room_id"].as_str().expect("room").to_owned();
                (id, room, serde_json::to_vec(e).expect("json"))
            })
            .collect();
        let entries: Vec<NewEntry<'_>> = jsons
            .iter()
            .map(|(id, room, json)| {
                // As ingest's first pass reads it.
                let peek = crate::inbound::peek::Peek::of(json).expect("peek");
                NewEntry {
                    kind: EntryKind::Timeline,
                    room_id: room,
                    event_id: Some(id),
                    json,
                    may_change_rooms: peek.may_change_rooms(&ctx.settings),
                    plain: peek.cannot_be_a_command(),
                }
            })
            .collect();
        store.ingest(&format!("everyday-{round}"), [round; 32], &entries).expect("ingest");
        let turn = store.pending_from(0, 10).expect("pending");
        assert_eq!(turn.len(), 4, "every event is queued");
        let completions = Completions::default();
        super::process_turn(ctx, turn, &CancellationToken::new(), &completions).await;
        let seqs: Vec<u64> = completions.take().iter().map(|c| c.seq).collect();
        store.complete_pending_group(&seqs, &[]).expect("complete");
        assert!(store.pending_from(0, 10).expect("pending").is_empty(), "all processed");
        if round == 0 {
            after_first = MAPS.iter().map(|m| records(m.name)).collect();
        }
    }

    let written: Vec<&maps::MapDesc> = MAPS.iter().filter(|m| buffered(m.name) > 0).collect();
    let names: Vec<&str> = written.iter().map(|m| m.name).collect();
    let busy_unwritten: Vec<&str> = MAPS
        .iter()
        .filter(|m| m.writes == Writes::Busy && !names.contains(&m.name))
        .map(|m| m.name)
        .collect();
    assert_eq!(busy_unwritten, Vec::<&str>::new(), "maps marked busy the events left alone");
    let growing_rare: Vec<(&str, usize, usize)> = MAPS
        .iter()
        .zip(&after_first)
        .filter(|(m, _)| m.writes == Writes::Rare && names.contains(&m.name))
        .map(|(m, first)| (m.name, *first, records(m.name)))
        .filter(|(_, first, now)| now > first)
        .collect();
    assert_eq!(
        growing_rare,
        Vec::<(&str, usize, usize)>::new(),
        "maps marked rare that gain records with every event (map, after one round, after three)"
    );
    // The check has something to check: rare maps rewritten in place, busy maps growing.
    for rewritten in [maps::GLOBAL, maps::USERID_UNREAD, maps::SLUGNUM_COMMENTCOUNT] {
        assert!(names.contains(&rewritten), "the events rewrote {rewritten}: {names:?}");
    }
    let live = MAPS.iter().position(|m| m.name == maps::SLUGID_LIVE).expect("live");
    assert!(records(maps::SLUGID_LIVE) > after_first[live], "the live log grew");
}
