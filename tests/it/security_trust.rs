//! End-to-end, against a real Synapse: the room-state trust model (docs/SECURITY.md).
//! Boardroom's own state counts only when the bot wrote it, in rooms it created or adopted
//! through a checked upgrade: a board member who forges it in rooms of their own takes over
//! nothing, and task state Boardroom did not write is put back or emptied.

use std::time::Duration;

use ruma::{
    OwnedRoomId, RoomId,
    api::client::state::{get_state_event_for_key, send_state_event},
    events::room::member::MembershipState,
};
use serde_json::{Value, json};

use crate::harness::{Stack, User};

const CONFIG: &str = "[permissions]\nboard_creators = [\"@alice:localhost\"]";

struct Board {
    stack: Stack,
    alice: User,
    mallory: User,
    space: OwnedRoomId,
    general: OwnedRoomId,
    tasks: OwnedRoomId,
}

/// Alice creates the board `launch` and invites Mallory, who joins: as a board member,
/// the bot accepts her invites.
async fn board() -> Board {
    let stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let mallory = stack.synapse.register("mallory").await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, MembershipState::Join).await;
    let reply = alice.command(&dm, &bot, "!board create launch Launch").await;
    assert!(reply.contains("created"), "{reply}");
    let space = alice.join("#boardroom_launch:localhost").await.expect("space");
    let general = alice.join("#boardroom_launch-general:localhost").await.expect("general");
    let tasks = alice.join("#boardroom_launch-tasks:localhost").await.expect("tasks");
    let said = alice.command(&general, &bot, "!board invite @mallory:localhost").await;
    assert!(said.contains("Invited"), "{said}");
    mallory.join(space.as_str()).await.expect("mallory joins the space");
    mallory.join(general.as_str()).await.expect("mallory joins general");
    // Rooms are processed in lanes of their own: the command in `general` may come before
    // the space's join is indexed. Wait for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while stack.boardroom.store().boards_of(&mallory.user_id).expect("boards").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the join never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let info = mallory.command(&general, &bot, "!board info").await;
    assert!(info.contains("@mallory:localhost (member)"), "{info}");
    Board { stack, alice, mallory, space, general, tasks }
}

/// `user` sends a state event with any content.
async fn send_state(user: &User, room: &RoomId, ty: &str, key: &str, content: Value) {
    let req = send_state_event::v3::Request::new_raw(
        room.to_owned(),
        ty.into(),
        key.to_owned(),
        ruma::serde::Raw::new(&content).expect("raw").cast_unchecked(),
    );
    user.client
        .send(req, None)
        .await
        .unwrap_or_else(|e| panic!("{} sends {ty}: {e}", user.user_id));
}

/// The current state event (whole: sender and content), as a Matrix client reads it.
async fn state_event(user: &User, room: &RoomId, ty: &str, key: &str) -> Option<Value> {
    let mut req =
        get_state_event_for_key::v3::Request::new(room.to_owned(), ty.into(), key.to_owned());
    req.format = get_state_event_for_key::v3::StateEventFormat::Event;
    let resp = user.client.send(req, None).await.ok()?;
    serde_json::from_str(resp.event_or_content.get()).ok()
}

/// Mallory's own room, with the bot in it (it accepts her invite).
async fn attackers_room(b: &Board) -> OwnedRoomId {
    let bot = b.stack.boardroom.bot();
    let room = b.mallory.create_room(&[bot]).await;
    b.mallory.wait_for_membership(&room, bot, MembershipState::Join).await;
    room
}

/// The board `launch` as Boardroom's index has it: its space and Mallory's role.
fn indexed(b: &Board) -> (OwnedRoomId, &'static str, &'static str) {
    let store = b.stack.boardroom.store();
    let board = store.board("launch").expect("store").expect("the board launch");
    (
        board.space_id.clone(),
        board.role_of(&b.alice.user_id).as_str(),
        board.role_of(&b.mallory.user_id).as_str(),
    )
}

/// Alice's `!task new` in general: the task is in the real tasks room, and its root is a
/// message of the bot there.
async fn new_task_lands_in_the_real_tasks_room(b: &Board, title: &str) -> String {
    let bot = b.stack.boardroom.bot();
    let said = b.alice.command(&b.general, bot, &format!("!task new {title}")).await;
    let number = said
        .split("launch#")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no task number in {said}"))
        .to_owned();
    let state = b
        .alice
        .state(&b.tasks, "dev.boardroom.task", &number)
        .await
        .unwrap_or_else(|| panic!("no state for task {number} in the real tasks room: {said}"));
    assert_eq!(state["title"], title);
    let root = state["root_event_id"].as_str().expect("root").to_owned();
    let in_tasks = b.alice.timeline(&b.tasks).await.iter().any(|e| {
        e.get_field::<String>("event_id").ok().flatten().as_deref() == Some(root.as_str())
            && e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str())
    });
    assert!(in_tasks, "the root {root} of task {number} is not in the real tasks room");
    number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_by_forged_board_state_in_an_attackers_room_changes_nothing() {
    let b = board().await;
    let bot = b.stack.boardroom.bot().to_owned();
    let before = indexed(&b);
    assert_eq!(before, (b.space.clone(), "owner", "member"));

    let room = attackers_room(&b).await;
    send_state(
        &b.mallory,
        &room,
        "dev.boardroom.board",
        "",
        json!({
            "slug": "launch", "name": "Pwned", "created_by": b.mallory.user_id,
            "created_by_event": "$mine", "columns": ["todo", "doing", "done"],
        }),
    )
    .await;
    // Her room's lane answers this after it handled the forged state.
    let said = b.mallory.command(&room, &bot, "!task list").await;
    assert!(said.contains("This room is not part of a board"), "{said}");
    let said = b.mallory.command(&room, &bot, "!task rename #1 Pwned").await;
    assert!(said.contains("not part of a board"), "{said}");

    assert_eq!(indexed(&b), before, "the board's space and roles are unchanged");
    assert!(b.stack.boardroom.store().board_by_space(&room).expect("store").is_none());
    // The real owner still runs the board, and its tasks go to its real tasks room.
    let carol = b.stack.synapse.register("carol").await;
    let said = b.alice.command(&b.general, &bot, "!board invite @carol:localhost").await;
    assert!(said.contains("Invited @carol:localhost"), "{said}");
    carol.join(b.space.as_str()).await.expect("carol joins the real space");
    new_task_lands_in_the_real_tasks_room(&b, "Real work").await;
    let info = b.alice.command(&b.general, &bot, "!board info").await;
    assert!(info.contains("@alice:localhost (owner)"), "{info}");
    assert!(info.contains("@mallory:localhost (member)"), "{info}");
    // The space's board state is still Boardroom's.
    let board_state =
        state_event(&b.alice, &b.space, "dev.boardroom.board", "").await.expect("board state");
    assert_eq!(board_state["sender"], bot.as_str());
    assert_eq!(board_state["content"]["name"], "Launch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_board_room_state_in_attackers_rooms_adds_no_tasks_room() {
    let b = board().await;
    let bot = b.stack.boardroom.bot().to_owned();
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let room = attackers_room(&b).await;
        send_state(
            &b.mallory,
            &room,
            "dev.boardroom.room",
            "",
            json!({"board": "launch", "name": "tasks", "kind": "tasks"}),
        )
        .await;
        let said = b.mallory.command(&room, &bot, "!task list").await;
        assert!(said.contains("This room is not part of a board"), "{said}");
        rooms.push(room);
    }
    let info = b.alice.command(&b.general, &bot, "!board info").await;
    assert_eq!(info.matches("(tasks)").count(), 1, "{info}");
    assert_eq!(
        b.stack.boardroom.store().tasks_room_of("launch").expect("store").map(|(r, _)| r),
        Some(b.tasks.clone())
    );
    new_task_lands_in_the_real_tasks_room(&b, "Where does this go").await;
    for room in &rooms {
        let bot_posts = b
            .mallory
            .timeline(room)
            .await
            .iter()
            .filter(|e| {
                e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str())
            })
            .filter_map(|e| e.get_field::<Value>("content").ok().flatten())
            .filter(|c| c["body"].as_str().is_some_and(|s| s.contains("Where does this go")))
            .count();
        assert_eq!(bot_posts, 0, "the task's root went to the attacker's room {room}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_to_a_room_that_does_not_replace_the_board_room_is_not_followed() {
    let b = board().await;
    let bot = b.stack.boardroom.bot().to_owned();
    // Alice (power 100 in general) points general's tombstone at a room of her own that
    // the bot is in, but that was never an upgrade of general.
    let own = b.alice.create_room(&[&bot]).await;
    b.alice.wait_for_membership(&own, &bot, MembershipState::Join).await;
    send_state(
        &b.alice,
        &b.general,
        "m.room.tombstone",
        "",
        json!({"body": "moved", "replacement_room": own}),
    )
    .await;
    // The bot leaves the room that is no upgrade once it has looked at it.
    b.alice.wait_for_membership(&own, &bot, MembershipState::Leave).await;
    let store = b.stack.boardroom.store();
    assert!(store.room(&own).expect("store").is_none(), "the room joined the board");
    assert!(store.room(&b.general).expect("store").is_some(), "general left the board");
    let info = b.alice.command(&b.tasks, &bot, "!board info").await;
    assert_eq!(info.matches("(chat)").count(), 1, "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghost_task_state_is_emptied_and_every_task_state_is_the_bots() {
    let b = board().await;
    let bot = b.stack.boardroom.bot().to_owned();
    let number = new_task_lands_in_the_real_tasks_room(&b, "One").await;
    assert_eq!(number, "1");
    let real = b.alice.state(&b.tasks, "dev.boardroom.task", "1").await.expect("task 1");

    // Alice has the power to write state in the tasks room: a task nobody created, the
    // same task under a non-canonical key, and task 1 again with the same content.
    let mut ghost = real.clone();
    ghost["number"] = 999.into();
    ghost["title"] = "Ghost".into();
    send_state(&b.alice, &b.tasks, "dev.boardroom.task", "999", ghost).await;
    let mut padded = real.clone();
    padded["title"] = "Hijacked".into();
    send_state(&b.alice, &b.tasks, "dev.boardroom.task", "01", padded).await;
    send_state(&b.alice, &b.tasks, "dev.boardroom.task", "1", real.clone()).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut settled = true;
        for key in ["999", "01"] {
            let ev = state_event(&b.alice, &b.tasks, "dev.boardroom.task", key).await;
            settled &= ev
                .as_ref()
                .is_some_and(|e| e["sender"] == bot.as_str() && e["content"] == json!({}));
        }
        let one = state_event(&b.alice, &b.tasks, "dev.boardroom.task", "1").await;
        settled &=
            one.as_ref().is_some_and(|e| e["sender"] == bot.as_str() && e["content"] == real);
        if settled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ghost task state was not emptied (999, 01) or task 1 not written back by the bot"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The index never took them.
    let store = b.stack.boardroom.store();
    assert!(store.task("launch", 999).expect("store").is_none());
    let one = store.task("launch", 1).expect("store").expect("task 1");
    assert_eq!(one.fields.title, "One");
    let said = b.alice.command(&b.general, &bot, "!task list").await;
    assert!(
        said.contains("#1 One") && !said.contains("Ghost") && !said.contains("Hijacked"),
        "{said}"
    );
}

/// The whole index of the stopped Boardroom, board and tasks.
fn index_dump(stack: &Stack) -> Vec<String> {
    let store =
        boardroom::store::Store::open(&stack.boardroom.settings.raw.database.path).expect("open");
    let mut dump = store.dump_board_index().expect("dump");
    dump.extend(store.dump_task_index().expect("dump"));
    dump
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_from_full_state_ignores_boardroom_state_the_bot_did_not_write() {
    let mut b = board().await;
    let bot = b.stack.boardroom.bot().to_owned();
    new_task_lands_in_the_real_tasks_room(&b, "One").await;
    let task = b.alice.state(&b.tasks, "dev.boardroom.task", "1").await.expect("task 1");
    // Mallory's room claims the board, is its tasks room and holds its task #1.
    let room = attackers_room(&b).await;
    let board = json!({
        "slug": "launch", "name": "Pwned", "created_by": b.mallory.user_id,
        "created_by_event": "$mine", "columns": ["todo", "done"],
    });
    send_state(&b.mallory, &room, "dev.boardroom.board", "", board).await;
    send_state(
        &b.mallory,
        &room,
        "dev.boardroom.room",
        "",
        json!({"board": "launch", "name": "tasks", "kind": "tasks"}),
    )
    .await;
    let mut hijacked = task.clone();
    hijacked["title"] = "Hijacked".into();
    send_state(&b.mallory, &room, "dev.boardroom.task", "1", hijacked.clone()).await;
    let said = b.mallory.command(&room, &bot, "!task list").await;
    assert!(said.contains("not part of a board"), "{said}");

    // With Boardroom stopped (nothing puts them back), Alice leaves task state of her own in
    // the real tasks room: task 1 changed, a task 2 nobody created, task 1 under `01`.
    b.stack.boardroom.stop().await;
    let before = index_dump(&b.stack);
    send_state(&b.alice, &b.tasks, "dev.boardroom.task", "1", hijacked.clone()).await;
    let mut ghost = task.clone();
    ghost["number"] = 2.into();
    ghost["title"] = "Ghost".into();
    send_state(&b.alice, &b.tasks, "dev.boardroom.task", "2", ghost).await;
    send_state(&b.alice, &b.tasks, "dev.boardroom.task", "01", hijacked).await;

    std::fs::remove_dir_all(&b.stack.boardroom.settings.raw.database.path)
        .expect("delete the database");
    let out = std::process::Command::new(crate::harness::boardroom_exe())
        .arg("reindex")
        .arg("--config")
        .arg(&b.stack.boardroom.config_path)
        .output()
        .expect("run reindex");
    assert!(out.status.success(), "reindex failed: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("reindexed 1 boards and 2 board rooms"), "{said}");
    assert!(said.contains("1 tasks"), "{said}");
    let after = index_dump(&b.stack);
    assert_eq!(after, before, "the rebuilt index differs from the one Boardroom kept");
    assert!(
        !after.iter().any(|l| l.contains("Hijacked") || l.contains("Ghost") || l.contains("Pwned"))
    );
}

/// Waits until the current `ty`/`key` state in `room` was sent by the bot with content
/// `check` accepts.
async fn wait_for_bots_state(
    b: &Board,
    room: &RoomId,
    ty: &str,
    key: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) {
    let bot = b.stack.boardroom.bot();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = state_event(&b.alice, room, ty, key).await;
        if ev.as_ref().is_some_and(|e| e["sender"] == bot.as_str() && check(&e["content"])) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {ev:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_state_an_admin_writes_in_the_boards_own_rooms_is_rewritten_by_the_bot() {
    let b = board().await;
    let bot = b.stack.boardroom.bot().to_owned();
    // Alice (power 100) makes general claim to be the tasks room: put back.
    send_state(
        &b.alice,
        &b.general,
        "dev.boardroom.room",
        "",
        json!({"board": "launch", "name": "general", "kind": "tasks"}),
    )
    .await;
    wait_for_bots_state(
        &b,
        &b.general,
        "dev.boardroom.room",
        "",
        "general's record put back",
        |c| c["kind"] == "chat" && c["name"] == "general" && c["board"] == "launch",
    )
    .await;
    let info = b.alice.command(&b.general, &bot, "!board info").await;
    assert_eq!(info.matches("(tasks)").count(), 1, "{info}");

    // She renames the board in the space's state: followed, and written again by the bot.
    let mut board =
        b.alice.state(&b.space, "dev.boardroom.board", "").await.expect("the board state");
    board["name"] = "Launch Renamed".into();
    send_state(&b.alice, &b.space, "dev.boardroom.board", "", board).await;
    wait_for_bots_state(&b, &b.space, "dev.boardroom.board", "", "the renamed board", |c| {
        c["name"] == "Launch Renamed" && c["slug"] == "launch"
    })
    .await;
    let info = b.alice.command(&b.general, &bot, "!board info").await;
    assert!(info.contains("Board Launch Renamed (launch)"), "{info}");
}

/// An admin of a board room (power 50) may rename it, but not change its power levels,
/// turn on encryption or open its history: those stay with the owner, as the homeserver's
/// own defaults have it. A `power_level_content_override` replaces the homeserver's
/// `events` map whole, so Boardroom writes these levels out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_change_power_levels_encryption_or_history_in_board_rooms() {
    let b = board().await;
    let Some(mut pl) = state_event(&b.alice, &b.general, "m.room.power_levels", "").await else {
        panic!("general has power levels");
    };
    let content = &mut pl["content"];
    content["users"]["@mallory:localhost"] = json!(50);
    send_state(&b.alice, &b.general, "m.room.power_levels", "", content.clone()).await;

    for (ty, content) in [
        ("m.room.power_levels", {
            let mut c = content.clone();
            c["users"]["@mallory:localhost"] = json!(50);
            c["state_default"] = json!(0);
            c
        }),
        ("m.room.encryption", json!({"algorithm": "m.megolm.v1.aes-sha2"})),
        ("m.room.history_visibility", json!({"history_visibility": "world_readable"})),
    ] {
        let req = send_state_event::v3::Request::new_raw(
            b.general.clone(),
            ty.into(),
            String::new(),
            ruma::serde::Raw::new(&content).expect("raw").cast_unchecked(),
        );
        let refused = b.mallory.client.send(req, None).await;
        assert!(refused.is_err(), "an admin changed {ty} in a board room");
    }
    let encryption = state_event(&b.alice, &b.general, "m.room.encryption", "").await;
    assert!(encryption.is_none(), "general got encrypted: {encryption:?}");
    // What an admin may do, they still can.
    send_state(&b.mallory, &b.general, "m.room.name", "", json!({"name": "chat"})).await;
}
