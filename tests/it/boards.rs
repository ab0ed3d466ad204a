//! End-to-end: boards as spaces, their rooms, membership and rights, the index and its
//! rebuild, room upgrades — against a real Synapse, in room versions 12 and 11.

use std::time::Duration;

use ruma::{
    OwnedRoomId, RoomId, RoomVersionId,
    api::client::{room::upgrade_room, space::get_hierarchy},
    events::room::member::MembershipState,
};
use serde_json::Value;

use crate::harness::{Stack, User};

const CONFIG: &str = "[permissions]\nboard_creators = [\"@alice:localhost\"]";

/// Alice DMs the bot and creates the board `launch`; returns the DM.
async fn create_board(stack: &Stack, alice: &User) -> (OwnedRoomId, String) {
    let bot = stack.boardroom.bot();
    let dm = alice.create_room(&[bot]).await;
    alice.wait_for_membership(&dm, bot, MembershipState::Join).await;
    let reply = alice.command(&dm, bot, "!board create launch Product Launch").await;
    (dm, reply)
}

async fn hierarchy(user: &User, space: &RoomId) -> Vec<(OwnedRoomId, Option<String>)> {
    let resp = user
        .client
        .send(get_hierarchy::v1::Request::new(space.to_owned()), None)
        .await
        .expect("hierarchy");
    resp.rooms.iter().map(|r| (r.summary.room_id.clone(), r.summary.name.clone())).collect()
}

fn children(h: &[(OwnedRoomId, Option<String>)], space: &RoomId) -> Vec<String> {
    let mut names: Vec<String> =
        h.iter().filter(|(id, _)| id != space).filter_map(|(_, n)| n.clone()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_is_a_space_with_general_and_tasks() {
    let stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let (dm, reply) = create_board(&stack, &alice).await;
    assert!(reply.contains("Board Product Launch (launch) created"), "{reply}");

    let space = alice.resolve("#boardroom_launch:localhost").await;
    let general = alice.resolve("#boardroom_launch-general:localhost").await;
    let tasks = alice.resolve("#boardroom_launch-tasks:localhost").await;
    alice.join(space.as_str()).await.expect("alice joins the space");

    let h = hierarchy(&alice, &space).await;
    assert_eq!(children(&h, &space), ["Product Launch · general", "Product Launch · tasks"]);

    let create = alice.state(&space, "m.room.create", "").await.expect("create");
    assert_eq!(create["type"], "m.space");
    assert_eq!(create["room_version"], "12");
    assert_eq!(
        create["additional_creators"],
        serde_json::json!([alice.user_id.as_str()]),
        "alice owns it"
    );
    let name = alice.state(&space, "m.room.name", "").await.expect("name");
    assert_eq!(name["name"], "Product Launch");
    assert!(alice.state(&space, "m.room.topic", "").await.is_some());
    let board = alice.state(&space, "dev.boardroom.board", "").await.expect("board state");
    assert_eq!(board["slug"], "launch");

    for (room, kind) in [(&general, "chat"), (&tasks, "tasks")] {
        alice.join(room.as_str()).await.expect("alice joins the room she is invited to");
        let rules = alice.state(room, "m.room.join_rules", "").await.expect("join rules");
        assert_eq!(rules["join_rule"], "restricted");
        assert_eq!(rules["allow"][0]["room_id"], space.as_str());
        assert_eq!(rules["allow"][0]["type"], "m.room_membership");
        let parent = alice.state(room, "m.space.parent", space.as_str()).await.expect("parent");
        assert_eq!(parent["canonical"], true);
        assert_eq!(parent["via"], serde_json::json!(["localhost"]));
        let child = alice.state(&space, "m.space.child", room.as_str()).await.expect("child");
        assert_eq!(child["via"], serde_json::json!(["localhost"]));
        let rec = alice.state(room, "dev.boardroom.room", "").await.expect("room state");
        assert_eq!(rec["kind"], kind);
        let create = alice.state(room, "m.room.create", "").await.expect("create");
        assert_eq!(create["additional_creators"], serde_json::json!([alice.user_id.as_str()]));
        // Creators have implicit power in room version 12: they are not listed.
        let pl = alice.state(room, "m.room.power_levels", "").await.expect("power levels");
        assert_eq!(pl["users"], serde_json::json!({}));
        assert_eq!(pl["invite"], 50);
        let aliases = alice.state(room, "m.room.canonical_alias", "").await.expect("alias");
        assert!(aliases["alias"].as_str().is_some_and(|a| a.starts_with("#boardroom_launch-")));
    }

    // The same slug again is refused; a bad slug is refused with the rules.
    let again = alice.command(&dm, &bot, "!board create launch").await;
    assert!(again.contains("is in use"), "{again}");
    let elsewhere = alice.command(&dm, &bot, "!board info").await;
    assert!(
        elsewhere.contains("not part of a board") && elsewhere.contains("Usage: !board info"),
        "{elsewhere}"
    );
    let bad = alice.command(&dm, &bot, "!board create Launch_2").await;
    assert!(
        bad.contains("lowercase letters, digits and `-`") && bad.contains("Usage: !board create"),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_through_the_space_and_removal_reaches_private_rooms() {
    let stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let bob = stack.synapse.register("bob").await;
    let carol = stack.synapse.register("carol").await;
    create_board(&stack, &alice).await;
    let space = alice.resolve("#boardroom_launch:localhost").await;
    let general =
        alice.join("#boardroom_launch-general:localhost").await.expect("alice joins general");
    alice.join(space.as_str()).await.expect("alice joins the space");

    // Not a member: cannot join a board room.
    let refused = carol.join(general.as_str()).await.expect_err("carol is not a member");
    assert_eq!(refused.status(), Some(403), "{refused}");

    let reply = alice.command(&general, &bot, "!board invite @bob:localhost").await;
    assert!(reply.contains("Invited @bob:localhost"), "{reply}");
    bob.join(space.as_str()).await.expect("bob accepts");
    bob.join(general.as_str()).await.expect("bob joins general through the space");

    // Bob is a member, not an admin: he cannot invite, nor create boards.
    let reply = bob.command(&general, &bot, "!board invite @carol:localhost").await;
    assert!(reply.contains("Only board admins"), "{reply}");
    let reply = bob.command(&general, &bot, "!board create bobs").await;
    assert!(reply.contains("may not create boards"), "{reply}");
    let reply = alice.command(&general, &bot, "!board invite @nobody:localhost").await;
    assert!(reply.contains("There is no user @nobody:localhost"), "{reply}");

    let reply = alice.command(&general, &bot, "!board room secret private @bob:localhost").await;
    assert!(reply.contains("private room #boardroom_launch-secret:localhost"), "{reply}");
    let secret = alice.resolve("#boardroom_launch-secret:localhost").await;
    alice.join(secret.as_str()).await.expect("alice joins the private room");
    assert_eq!(
        alice.state(&secret, "m.room.join_rules", "").await.expect("rules")["join_rule"],
        "invite"
    );
    bob.join(secret.as_str()).await.expect("bob joins the private room");

    let info = alice.command(&general, &bot, "!board info").await;
    for needle in [
        "general (chat)",
        "tasks (tasks)",
        "secret (private chat)",
        "@alice:localhost (owner)",
        "@bob:localhost (member)",
    ] {
        assert!(info.contains(needle), "{needle} missing from {info}");
    }

    let reply = alice.command(&general, &bot, "!board remove @bob:localhost").await;
    assert!(reply.contains("Removed @bob:localhost"), "{reply}");
    alice.wait_for_membership(&space, &bob.user_id, MembershipState::Leave).await;
    alice.wait_for_membership(&secret, &bob.user_id, MembershipState::Leave).await;

    // Refusals change nothing and say why.
    let reply = alice.command(&general, &bot, "!board remove @carol:localhost").await;
    assert!(reply.contains("not a member"), "{reply}");
    let dm = carol.create_room(&[&bot]).await;
    carol.wait_for_membership(&dm, &bot, MembershipState::Leave).await;
}

/// Deletes the stopped Boardroom's database and runs `boardroom reindex`, which must succeed.
fn reindex_from_nothing(stack: &Stack) -> std::process::Output {
    std::fs::remove_dir_all(&stack.boardroom.settings.raw.database.path)
        .expect("delete the database");
    let out = std::process::Command::new(crate::harness::boardroom_exe())
        .arg("reindex")
        .arg("--config")
        .arg(&stack.boardroom.config_path)
        .output()
        .expect("run reindex");
    assert!(out.status.success(), "reindex failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

async fn index_dump(stack: &Stack) -> Vec<String> {
    let store =
        boardroom::store::Store::open(&stack.boardroom.settings.raw.database.path).expect("open");
    let mut dump = store.dump_board_index().expect("dump");
    dump.extend(store.dump_task_index().expect("dump"));
    dump
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_restores_the_same_index_and_upgrades_keep_rooms_in_the_board() {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let bob = stack.synapse.register("bob").await;
    create_board(&stack, &alice).await;
    let space = alice.resolve("#boardroom_launch:localhost").await;
    let general = alice.join("#boardroom_launch-general:localhost").await.expect("join");
    alice.join(space.as_str()).await.expect("join");
    alice.command(&general, &bot, "!board invite @bob:localhost").await;
    bob.join(space.as_str()).await.expect("bob joins");
    alice.command(&general, &bot, "!board room design").await;

    // A task with comments: one edited, one redacted.
    let tasks = alice.join("#boardroom_launch-tasks:localhost").await.expect("join tasks");
    alice.command(&general, &bot, "!task new Reindex me").await;
    let state = alice.state(&tasks, "dev.boardroom.task", "1").await.expect("task state");
    let root: ruma::OwnedEventId =
        state["root_event_id"].as_str().expect("root").try_into().expect("id");
    alice.say_in_thread(&tasks, &root, "first comment").await;
    let second = alice.say_in_thread(&tasks, &root, "second").await;
    let mut edit =
        ruma::events::room::message::RoomMessageEventContent::text_plain("* second, edited");
    edit.relates_to = Some(ruma::events::room::message::Relation::Replacement(
        ruma::events::relation::Replacement::new(
            second,
            ruma::events::room::message::RoomMessageEventContentWithoutRelation::text_plain(
                "second, edited",
            ),
        ),
    ));
    alice.send(&tasks, edit).await;
    let third = alice.say_in_thread(&tasks, &root, "to be redacted").await;
    let redact = ruma::api::client::redact::redact_event::v3::Request::new(
        tasks.clone(),
        third,
        ruma::TransactionId::new(),
    );
    alice.client.send(redact, None).await.expect("redact");
    alice.command_in_thread(&tasks, &root, &bot, "!task assign @bob:localhost").await;

    // Upgrade general: the new room takes its place in the board.
    let upgraded = alice
        .client
        .send(upgrade_room::v3::Request::new(general.clone(), RoomVersionId::V12), None)
        .await
        .expect("upgrade")
        .replacement_room;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let child_new = alice.state(&space, "m.space.child", upgraded.as_str()).await;
        let child_old = alice.state(&space, "m.space.child", general.as_str()).await;
        let linked = child_new.is_some_and(|c| c["via"] != Value::Array(vec![]));
        let unlinked =
            child_old.is_none_or(|c| c["via"] == Value::Array(vec![]) || c.get("via").is_none());
        if linked && unlinked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upgraded room did not take the old one's place"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The board answers in the new room.
    alice.join(upgraded.as_str()).await.expect("alice joins the new room");
    let info = alice.command(&upgraded, &bot, "!board info").await;
    assert!(info.contains("general (chat)") && info.contains("design (chat)"), "{info}");
    let h = hierarchy(&alice, &space).await;
    let ids: Vec<&OwnedRoomId> = h.iter().map(|(id, _)| id).collect();
    assert!(ids.contains(&&upgraded) && !ids.contains(&&general), "{h:?}");

    // Rebuild from the homeserver alone and compare.
    stack.boardroom.stop().await;
    let before = index_dump(&stack).await;
    assert!(before.iter().any(|l| l.contains("slug_board: launch")), "{before:#?}");
    assert!(before.iter().any(|l| l.contains("second, edited")), "{before:#?}");
    assert!(
        !before.iter().any(|l| l.contains("to be redacted") || l.contains("\"body\":\"second\"")),
        "{before:#?}"
    );
    let out = reindex_from_nothing(&stack);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("reindexed 1 boards and 3 board rooms"), "{said}");
    // Without a terminal, each phase's end is a line: rooms, then task threads.
    let progress = String::from_utf8_lossy(&out.stderr);
    let rooms = progress.find("reading rooms: ").unwrap_or_else(|| panic!("{progress}"));
    let threads = progress.find("reading task threads: ").unwrap_or_else(|| panic!("{progress}"));
    assert!(rooms < threads, "{progress}");
    assert!(progress.contains("reading task threads: 1/1"), "{progress}");
    assert!(said.contains("1 tasks with 2 comments"), "{said}");
    let after = index_dump(&stack).await;
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boards_work_in_room_version_11() {
    let stack = Stack::start_with(CONFIG, &["--default-room-version", "11"]).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let bob = stack.synapse.register("bob").await;
    let (_, reply) = create_board(&stack, &alice).await;
    assert!(reply.contains("created"), "{reply}");
    let space = alice.resolve("#boardroom_launch:localhost").await;
    let general = alice.join("#boardroom_launch-general:localhost").await.expect("join");
    alice.join(space.as_str()).await.expect("join");
    let create = alice.state(&space, "m.room.create", "").await.expect("create");
    assert_eq!(create["room_version"], "11");
    let pl = alice.state(&space, "m.room.power_levels", "").await.expect("pl");
    assert_eq!(pl["users"][alice.user_id.as_str()], 100);
    assert_eq!(pl["users"][bot.as_str()], 100);
    alice.command(&general, &bot, "!board invite @bob:localhost").await;
    bob.join(space.as_str()).await.expect("bob joins the space");
    bob.join(general.as_str()).await.expect("bob joins general through the space");
    let info = alice.command(&general, &bot, "!board info").await;
    assert!(
        info.contains("@alice:localhost (owner)") && info.contains("@bob:localhost (member)"),
        "{info}"
    );
}

/// Polls `f` until it gives something, or panics after 20 s naming `what`.
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bodies of the bot's messages in `room`.
async fn bot_says(user: &User, room: &RoomId, bot: &ruma::UserId) -> Vec<String> {
    user.timeline(room)
        .await
        .iter()
        .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str()))
        .filter_map(|e| e.get_field::<Value>("content").ok().flatten())
        .filter_map(|c| c["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_tasks_room_gets_its_tasks_once_the_bot_has_power_there() {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    create_board(&stack, &alice).await;
    let space = alice.resolve("#boardroom_launch:localhost").await;
    alice.join(space.as_str()).await.expect("join");
    let general = alice.join("#boardroom_launch-general:localhost").await.expect("join");
    let tasks = alice.join("#boardroom_launch-tasks:localhost").await.expect("join tasks");
    alice.command(&general, &bot, "!task new Carry me over").await;
    alice.command(&general, &bot, "!task new Gone").await;
    alice.command(&general, &bot, "!task delete #2").await;
    let old_root: ruma::OwnedEventId =
        alice.state(&tasks, "dev.boardroom.task", "1").await.expect("task state")["root_event_id"]
            .as_str()
            .expect("root")
            .try_into()
            .expect("id");
    alice.say_in_thread(&tasks, &old_root, "a comment from before").await;
    eventually("the comment indexed", async || {
        (!stack.boardroom.store().comments("launch", 1).expect("comments").is_empty()).then_some(())
    })
    .await;

    // Alice upgrades the tasks room (room version 12: she is the new room's only creator,
    // and the bot has no power there). The bot says what it needs.
    let new = alice
        .client
        .send(upgrade_room::v3::Request::new(tasks.clone(), RoomVersionId::V12), None)
        .await
        .expect("upgrade")
        .replacement_room;
    eventually("the bot's request for power", async || {
        bot_says(&alice, &new, &bot)
            .await
            .iter()
            .any(|b| b.contains("needs power 100"))
            .then_some(())
    })
    .await;
    assert!(alice.state(&new, "dev.boardroom.task", "1").await.is_none());
    // Until then, tasks wait: a new one is refused with the reason, and posts nothing.
    let said = alice.command(&general, &bot, "!task new Too early").await;
    assert!(said.contains("needs power 100") && said.contains("/op"), "{said}");
    let said = alice.command(&general, &bot, "!task status #1 doing").await;
    assert!(said.contains("needs power 100"), "{said}");
    // `!board info` flags the room.
    let info = alice.command(&general, &bot, "!board info").await;
    assert!(
        info.lines().any(|l| l.contains("tasks (tasks)")
            && l.contains("waits for an admin to give Boardroom power 100")),
        "{info}"
    );
    assert!(
        !bot_says(&alice, &new, &bot).await.iter().any(|b| b.contains("Too early")),
        "no root was posted"
    );
    // The list links to the threads where they still are: in the old room.
    let list = alice.command(&general, &bot, "!task list").await;
    assert!(list.contains(&format!("https://matrix.to/#/{tasks}/{old_root}")), "{list}");

    // She gives it power: the room gets its board state and the tasks.
    let mut pl = alice.state(&new, "m.room.power_levels", "").await.expect("power levels");
    pl["users"][bot.as_str()] = 100.into();
    let req = ruma::api::client::state::send_state_event::v3::Request::new_raw(
        new.clone(),
        "m.room.power_levels".into(),
        String::new(),
        ruma::serde::Raw::new(&pl).expect("raw").cast_unchecked(),
    );
    alice.client.send(req, None).await.expect("alice sets power levels");
    let moved = eventually("task 1 in the new room", async || {
        alice.state(&new, "dev.boardroom.task", "1").await
    })
    .await;
    let new_root: ruma::OwnedEventId =
        moved["root_event_id"].as_str().expect("root").try_into().expect("id");
    assert_ne!(new_root, old_root, "the thread continues in the new room");
    assert_eq!(moved["title"], "Carry me over");
    let deleted = eventually("task 2 in the new room", async || {
        alice.state(&new, "dev.boardroom.task", "2").await
    })
    .await;
    assert_eq!(deleted["deleted"], true);
    let room_state = alice.state(&new, "dev.boardroom.room", "").await.expect("board room state");
    assert_eq!(
        (room_state["board"].as_str(), room_state["kind"].as_str()),
        (Some("launch"), Some("tasks"))
    );
    assert!(alice.state(&new, "m.space.parent", space.as_str()).await.is_some());
    eventually("the old thread's pointer", async || {
        bot_says(&alice, &tasks, &bot)
            .await
            .iter()
            .any(|b| b.contains("launch#1 moved to"))
            .then_some(())
    })
    .await;

    // Work goes on in the new thread; the old comment is still the task's.
    let said = alice.command_in_thread(&new, &new_root, &bot, "!task status doing").await;
    assert!(said.contains("moved it from todo to doing"), "{said}");
    assert_eq!(
        alice.state(&new, "dev.boardroom.task", "1").await.expect("state")["status"],
        "doing"
    );
    let comments = stack.boardroom.store().comments("launch", 1).expect("comments");
    assert!(comments.iter().any(|c| c.body == "a comment from before"), "{comments:?}");
    let said = alice.command(&general, &bot, "!task new After the move").await;
    assert!(said.contains("launch#3"), "{said}");
    eventually("task 3's root in the new room", async || {
        alice.state(&new, "dev.boardroom.task", "3").await
    })
    .await;

    // A rebuild from the homeserver alone finds the same: tasks from the new room, the
    // comments of both threads.
    stack.boardroom.stop().await;
    let before = index_dump(&stack).await;
    reindex_from_nothing(&stack);
    let after = index_dump(&stack).await;
    assert_eq!(after, before);
    stack.restart_boardroom().await;
}
