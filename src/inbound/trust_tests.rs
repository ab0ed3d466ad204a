//! The room-state trust model (docs/SECURITY.md), at the handler and index level: a
//! forged event of every state type the index follows changes nothing. Each event goes
//! through [`handler::handle`] as the homeserver would deliver it; none of these paths
//! needs the homeserver (the ones that do — putting back state in a board's own rooms,
//! checking an upgrade's replacement — are tested end to end in
//! tests/it/security_trust.rs).

use std::sync::atomic::{AtomicU64, Ordering};

use ruma::{
    OwnedUserId, RoomId, UserId, events::room::member::MembershipState, owned_event_id, room_id,
    user_id,
};
use serde_json::{Value, json};

use super::handler;
use crate::{
    Config,
    app::App,
    domain::board::{BoardRecord, RoomKind, RoomRecord},
    domain::{board::default_columns, task::TaskRecord},
    store::inbound::{EntryKind, PendingEntry},
};

const SPACE: &str = "!space:localhost";
pub(super) const GENERAL: &str = "!general:localhost";
pub(super) const TASKS: &str = "!tasks:localhost";
pub(super) const ATTACKER: &str = "!attacker:localhost";

pub(super) fn alice() -> &'static UserId {
    user_id!("@alice:localhost")
}

pub(super) fn mallory() -> &'static UserId {
    user_id!("@mallory:localhost")
}

/// The board `launch` (Alice owns it) with its general and tasks rooms and task #1; Mallory
/// is a member (so the bot accepts her invites) and has a room of her own, which the bot
/// has joined.
pub(super) fn board(dir: &std::path::Path) -> App {
    let config = Config::offline(&dir.join("db"), "").expect("config");
    let app = App::new(config.validate().expect("valid")).expect("app");
    let store = &app.ctx.store;
    let bot = app.ctx.settings.bot_user_id.clone();
    let space = RoomId::parse(SPACE).expect("room id");
    store
        .put_board(&BoardRecord {
            slug: "launch".into(),
            space_id: space.clone(),
            name: "Launch".into(),
            created_by: alice().to_owned(),
            created_by_event: owned_event_id!("$create"),
            creators: vec![],
            power_users: [(bot.clone(), 100), (alice().to_owned(), 100)].into_iter().collect(),
            users_default: 0,
            columns: default_columns(),
        })
        .expect("board");
    for (room, name, kind) in
        [(GENERAL, "general", RoomKind::Chat), (TASKS, "tasks", RoomKind::Tasks)]
    {
        let record = RoomRecord {
            board: "launch".into(),
            name: name.into(),
            kind,
            private: false,
            pending_move_from: None,
        };
        store.put_room(&RoomId::parse(room).expect("room id"), &record).expect("room");
    }
    for user in [alice(), mallory()] {
        store
            .set_membership(&space, user, &MembershipState::Join, None, Some("launch"))
            .expect("member");
    }
    store.put_task(&TaskRecord::example("launch", 1, owned_event_id!("$root1"))).expect("task");
    app
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A state event as the homeserver delivers it.
fn event(room: &str, sender: &UserId, ty: &str, key: &str, content: Value) -> Value {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    json!({
        "type": ty,
        "room_id": room,
        "sender": sender,
        "state_key": key,
        "content": content,
        "event_id": format!("$forged{n}"),
        "origin_server_ts": 1_700_000_000_000u64 + n,
    })
}

/// Handles `event` like the processing lane would; returns the actions it asked for.
async fn deliver(app: &App, event: Value) -> Vec<crate::domain::Action> {
    let entry = PendingEntry {
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
        kind: EntryKind::Timeline,
        room_id: event["room_id"].as_str().expect("room").to_owned(),
        json: serde_json::to_vec(&event).expect("json"),
        may_change_rooms: false,
        plain: false,
    };
    handler::handle(&app.ctx, &entry).await
}

/// The whole index, board and tasks, and the boards' live logs (what subscribers are
/// told), to compare before and after.
fn index(app: &App) -> Vec<String> {
    let mut all = app.ctx.store.dump_board_index().expect("dump");
    all.extend(app.ctx.store.dump_task_index().expect("dump"));
    let live = [crate::store::maps::SLUGID_LIVE, crate::store::maps::SLUG_LIVEFLOOR];
    all.extend(app.ctx.store.dump_maps(&live).expect("dump"));
    all
}

/// Delivers every event and asserts the index is what it was, and nothing was sent.
async fn changes_nothing(app: &App, events: Vec<Value>) {
    let before = index(app);
    for e in events {
        let what = e.to_string();
        let actions = deliver(app, e).await;
        assert!(actions.is_empty(), "{what} asked for {actions:?}");
        assert_eq!(index(app), before, "{what} changed the index");
    }
}

fn board_content(slug: &str, owner: &UserId) -> Value {
    json!({
        "slug": slug,
        "name": "Hijacked",
        "created_by": owner,
        "created_by_event": "$mine",
        "columns": ["todo", "done"],
    })
}

#[tokio::test]
async fn forged_board_state_in_another_room_takes_over_no_board() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    changes_nothing(
        &app,
        vec![
            event(
                ATTACKER,
                mallory(),
                "dev.boardroom.board",
                "",
                board_content("launch", mallory()),
            ),
            // Copying the real creator and event changes nothing either.
            event(ATTACKER, mallory(), "dev.boardroom.board", "", {
                let mut c = board_content("launch", alice());
                c["created_by_event"] = "$create".into();
                c
            }),
            // Another slug: no new board.
            event(ATTACKER, mallory(), "dev.boardroom.board", "", board_content("mine", mallory())),
            // In a board room that is not the space: nothing.
            event(GENERAL, alice(), "dev.boardroom.board", "", board_content("launch", mallory())),
        ],
    )
    .await;
    let store = &app.ctx.store;
    let b = store.board("launch").expect("get").expect("the board");
    assert_eq!(b.space_id, SPACE);
    assert_eq!(b.role_of(mallory()).as_str(), "member");
    assert!(store.board_by_space(&RoomId::parse(ATTACKER).expect("id")).expect("get").is_none());
    assert!(store.board("mine").expect("get").is_none());
}

#[tokio::test]
async fn forged_board_room_state_adds_no_room_to_a_board() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let tasks_room = json!({"board": "launch", "name": "tasks", "kind": "tasks"});
    changes_nothing(
        &app,
        vec![
            event(ATTACKER, mallory(), "dev.boardroom.room", "", tasks_room.clone()),
            event("!attacker2:localhost", mallory(), "dev.boardroom.room", "", tasks_room.clone()),
            // Under another state key: nothing either.
            event(ATTACKER, mallory(), "dev.boardroom.room", "x", tasks_room),
        ],
    )
    .await;
    let rooms = app.ctx.store.rooms_of("launch").expect("rooms");
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    let (tasks, _) = app.ctx.store.tasks_room_of("launch").expect("get").expect("tasks room");
    assert_eq!(tasks, TASKS);
}

#[tokio::test]
async fn forged_task_state_outside_the_tasks_room_is_never_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let mut task = serde_json::to_value(
        TaskRecord::example("launch", 1, owned_event_id!("$attackerroot")).fields,
    )
    .expect("json");
    task["title"] = "Hijacked".into();
    changes_nothing(
        &app,
        vec![
            event(ATTACKER, mallory(), "dev.boardroom.task", "1", task.clone()),
            event(ATTACKER, mallory(), "dev.boardroom.task", "2", task.clone()),
            // In a chat room of the board: not a tasks room, nothing.
            event(GENERAL, alice(), "dev.boardroom.task", "1", task),
        ],
    )
    .await;
    let t = app.ctx.store.task("launch", 1).expect("get").expect("task 1");
    assert_eq!(t.fields.root_event_id, "$root1");
    assert!(app.ctx.store.task("launch", 2).expect("get").is_none());
}

#[tokio::test]
async fn forged_power_levels_outside_the_space_change_no_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let mallory_owns =
        json!({"users": {mallory(): 100}, "users_default": 100, "state_default": 50});
    changes_nothing(
        &app,
        vec![
            event(ATTACKER, mallory(), "m.room.power_levels", "", mallory_owns),
            // A board room's power levels are not the board's roles.
            event(
                GENERAL,
                alice(),
                "m.room.power_levels",
                "",
                json!({"users": {mallory(): 100}, "users_default": 0, "state_default": 50}),
            ),
        ],
    )
    .await;
    let b = app.ctx.store.board("launch").expect("get").expect("board");
    assert_eq!(b.role_of(mallory()).as_str(), "member");
    assert_eq!(b.role_of(alice()).as_str(), "owner");

    // Control: the space's own power levels (which the homeserver lets only its admins
    // change) are the board's roles.
    let space_pl = json!({"users": {alice(): 100, mallory(): 50}, "users_default": 0});
    deliver(&app, event(SPACE, alice(), "m.room.power_levels", "", space_pl)).await;
    let b = app.ctx.store.board("launch").expect("get").expect("board");
    assert_eq!(b.role_of(mallory()).as_str(), "admin");
}

#[tokio::test]
async fn forged_space_child_outside_the_space_unlinks_no_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    changes_nothing(
        &app,
        vec![
            event(ATTACKER, mallory(), "m.space.child", TASKS, json!({"via": []})),
            event(ATTACKER, mallory(), "m.space.child", ATTACKER, json!({"via": ["localhost"]})),
            event(GENERAL, alice(), "m.space.child", TASKS, json!({"via": []})),
        ],
    )
    .await;
    assert_eq!(app.ctx.store.rooms_of("launch").expect("rooms").len(), 2);

    // Control: unlinking in the space itself (its admins' right) takes the room out.
    deliver(&app, event(SPACE, alice(), "m.space.child", GENERAL, json!({"via": []}))).await;
    assert!(app.ctx.store.room(room_id!("!general:localhost")).expect("get").is_none());
}

#[tokio::test]
async fn forged_space_parent_adds_no_room_to_a_board() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    changes_nothing(
        &app,
        vec![
            event(
                ATTACKER,
                mallory(),
                "m.space.parent",
                SPACE,
                json!({"via": ["localhost"], "canonical": true}),
            ),
            // A space child naming her room, sent in her own room: nothing either.
            event(ATTACKER, mallory(), "m.space.child", ATTACKER, json!({"via": ["localhost"]})),
        ],
    )
    .await;
    assert!(app.ctx.store.room(room_id!("!attacker:localhost")).expect("get").is_none());
}

#[tokio::test]
async fn forged_membership_outside_the_board_makes_no_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let eve: OwnedUserId = user_id!("@eve:localhost").to_owned();
    changes_nothing(
        &app,
        vec![
            event(ATTACKER, &eve, "m.room.member", eve.as_str(), json!({"membership": "join"})),
            event(
                ATTACKER,
                mallory(),
                "m.room.member",
                alice().as_str(),
                json!({"membership": "leave"}),
            ),
        ],
    )
    .await;
    assert!(!app.ctx.store.is_board_member("launch", &eve).expect("get"));
    assert!(app.ctx.store.is_board_member("launch", alice()).expect("get"));
}

#[tokio::test]
async fn a_tombstone_outside_a_board_or_to_an_indexed_room_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let to = |room: &str| json!({"body": "moved", "replacement_room": room});
    changes_nothing(
        &app,
        vec![
            // In a room that is not in a board.
            event(ATTACKER, mallory(), "m.room.tombstone", "", to("!elsewhere:localhost")),
            // In a board room, to a room already in the index: its tasks room, its space.
            event(GENERAL, alice(), "m.room.tombstone", "", to(TASKS)),
            event(GENERAL, alice(), "m.room.tombstone", "", to(SPACE)),
            event(GENERAL, alice(), "m.room.tombstone", "", to(GENERAL)),
        ],
    )
    .await;
}

#[tokio::test]
async fn forged_create_naming_a_board_room_as_predecessor_adopts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    changes_nothing(
        &app,
        vec![event(
            ATTACKER,
            mallory(),
            "m.room.create",
            "",
            json!({"room_version": "11", "creator": mallory(), "predecessor": {"room_id": TASKS, "event_id": "$x"}}),
        )],
    )
    .await;
    assert!(app.ctx.store.room(room_id!("!attacker:localhost")).expect("get").is_none());
}

/// A message as the homeserver delivers it.
pub(super) fn message(room: &str, sender: &UserId, content: Value) -> Value {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    json!({
        "type": "m.room.message",
        "room_id": room,
        "sender": sender,
        "content": content,
        "event_id": format!("$message{n}"),
        "origin_server_ts": 1_700_000_000_000u64 + n,
    })
}

/// A reply in a task's thread is a comment only in that task's board's tasks room: the
/// relation names any event id its sender likes, so from another room (Mallory's own, the
/// board's chat room) it comments on nothing, and an author's edit sent elsewhere changes
/// no comment.
#[tokio::test]
async fn a_thread_reply_outside_the_tasks_room_comments_on_no_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let store = &app.ctx.store;
    let reply = |room: &str, body: &str| {
        let thread = json!({ "rel_type": "m.thread", "event_id": "$root1" });
        message(
            room,
            mallory(),
            json!({ "msgtype": "m.text", "body": body, "m.relates_to": thread }),
        )
    };
    let edit = |room: &str, of: &str, body: &str| {
        message(
            room,
            mallory(),
            json!({
                "msgtype": "m.text",
                "body": format!("* {body}"),
                "m.new_content": { "msgtype": "m.text", "body": body },
                "m.relates_to": { "rel_type": "m.replace", "event_id": of },
            }),
        )
    };
    let bodies = || -> Vec<String> {
        store.comments("launch", 1).expect("comments").into_iter().map(|c| c.body).collect()
    };
    for room in [ATTACKER, GENERAL] {
        let actions = deliver(&app, reply(room, "forged from another room")).await;
        assert!(actions.is_empty(), "{actions:?}");
    }
    assert!(bodies().is_empty(), "{:?}", bodies());
    assert!(store.commenters("launch", 1).expect("commenters").is_empty());

    // The same reply in the tasks room is a comment, and its author can edit it there.
    let real = reply(TASKS, "a real comment");
    let real_id = real["event_id"].as_str().expect("id").to_owned();
    deliver(&app, real).await;
    assert_eq!(bodies(), ["a real comment"]);
    for room in [ATTACKER, GENERAL] {
        deliver(&app, edit(room, &real_id, "edited from another room")).await;
    }
    assert_eq!(bodies(), ["a real comment"]);
    deliver(&app, edit(TASKS, &real_id, "edited in its room")).await;
    assert_eq!(bodies(), ["edited in its room"]);
}

/// A redaction takes away what the redacted event made only in the event's own room:
/// `redacts` names any event id, so one sent from another room removes no comment and no
/// inbox entry.
#[tokio::test]
async fn a_redaction_from_another_room_takes_away_no_comment_and_no_inbox_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let store = &app.ctx.store;
    let tasks = RoomId::parse(TASKS).expect("room id");
    for user in [alice(), mallory()] {
        store.set_membership(&tasks, user, &MembershipState::Join, None, None).expect("member");
    }
    let comment = message(
        TASKS,
        mallory(),
        json!({
            "msgtype": "m.text",
            "body": "alice: could you look?",
            "m.mentions": { "user_ids": [alice()] },
            "m.relates_to": { "rel_type": "m.thread", "event_id": "$root1" },
        }),
    );
    let comment_id = comment["event_id"].as_str().expect("id").to_owned();
    deliver(&app, comment).await;
    let left = || {
        let comments = store.comments("launch", 1).expect("comments").len();
        (comments, store.unread_count(alice()).expect("count"))
    };
    assert_eq!(left(), (1, 1), "a comment and Alice's mention");

    let redaction = |room: &str| {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        json!({
            "type": "m.room.redaction",
            "room_id": room,
            "sender": mallory(),
            "redacts": comment_id,
            "content": { "redacts": comment_id },
            "event_id": format!("$redaction{n}"),
            "origin_server_ts": 1_700_000_000_000u64 + n,
        })
    };
    for room in [ATTACKER, GENERAL] {
        deliver(&app, redaction(room)).await;
        assert_eq!(left(), (1, 1), "a redaction in {room} took something away");
    }
    deliver(&app, redaction(TASKS)).await;
    assert_eq!(left(), (0, 0), "the redaction in the comment's own room");
}

/// In a room that is no board's, a message that cannot be a command is not read further
/// (nothing is logged, indexed or notified), and a command still is answered; in a board
/// room every message is logged.
#[tokio::test]
async fn outside_a_board_only_commands_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let before = index(&app);
    let text = |body: &str| json!({ "msgtype": "m.text", "body": body });
    for content in [
        text("hello, no command here"),
        json!({ "msgtype": "m.notice", "body": "!help" }),
        json!({ "msgtype": "m.text", "body": "alice: look", "m.mentions": { "user_ids": [alice()] } }),
    ] {
        let actions = deliver(&app, message(ATTACKER, mallory(), content)).await;
        assert!(actions.is_empty(), "{actions:?}");
    }
    assert_eq!(index(&app), before);
    assert_eq!(app.ctx.store.unread_count(alice()).expect("count"), 0);
    let actions = deliver(&app, message(ATTACKER, mallory(), text("!help"))).await;
    assert!(
        matches!(actions.first(), Some(crate::domain::Action::SendMessage { room_id, .. }) if room_id == ATTACKER),
        "{actions:?}"
    );
    let head = app.ctx.store.live_head("launch").expect("head");
    deliver(&app, message(GENERAL, mallory(), text("hello, no command here"))).await;
    let log = app.ctx.store.live_read("launch", head, 10).expect("log");
    assert_eq!(log.iter().map(|(_, e)| e.kind()).collect::<Vec<_>>(), ["message"]);
}

/// The guards of Boardroom's own state read an event's content only once its sender and
/// room are checked: the bot's own echoes (every task and board change it writes comes
/// back) and events outside the board's rooms are never parsed. A change in the board's
/// own room by someone else is read (and then waits on the homeserver, not here, to be put
/// back).
#[tokio::test]
async fn own_state_guards_read_content_only_after_sender_and_room() {
    use std::cell::Cell;

    use crate::domain::task::TaskEventContent;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = board(dir.path());
    let (ctx, bot) = (&app.ctx, app.ctx.settings.bot_user_id.clone());
    let (space, tasks, general, attacker) = (
        RoomId::parse(SPACE).expect("id"),
        RoomId::parse(TASKS).expect("id"),
        RoomId::parse(GENERAL).expect("id"),
        RoomId::parse(ATTACKER).expect("id"),
    );
    let event_id = owned_event_id!("$change");
    let read = Cell::new(0);
    let task_content = || {
        read.set(read.get() + 1);
        None::<TaskEventContent>
    };
    for (room, sender) in
        [(&tasks, bot.as_ref()), (&attacker, mallory()), (&general, alice()), (&space, alice())]
    {
        let out =
            crate::tasks::guard::guard_task_state(ctx, room, sender, &event_id, "1", task_content)
                .await;
        assert!(matches!(out.as_deref(), Ok([])), "{room} {sender}: {out:?}");
    }
    assert_eq!(read.get(), 0, "a task change the guard ignores was parsed");
    // Putting the task back needs the homeserver, which is not there: the guard is left
    // waiting on it once it has read the content.
    let guard =
        crate::tasks::guard::guard_task_state(ctx, &tasks, mallory(), &event_id, "1", task_content);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), guard).await;
    assert_eq!(read.get(), 1, "Mallory's change in the tasks room was not read");

    let read = Cell::new(0);
    let board_content = || {
        read.set(read.get() + 1);
        None
    };
    for (room, sender) in [(&space, bot.as_ref()), (&attacker, mallory()), (&general, alice())] {
        let out = crate::tasks::columns::follow_board_event(ctx, room, sender, board_content).await;
        assert!(out.is_ok(), "{room} {sender}: {out:?}");
    }
    assert_eq!(read.get(), 0, "a board change the guard ignores was parsed");
    let follow = crate::tasks::columns::follow_board_event(ctx, &space, mallory(), board_content);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), follow).await;
    assert_eq!(read.get(), 1, "Mallory's change in the space was not read");
}
