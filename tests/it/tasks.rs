//! End-to-end: tasks as thread roots with a canonical state event, changes as root edits
//! and feed replies, comments, rights, and gap-free numbering under concurrency.

use std::time::Duration;

use ruma::{
    OwnedEventId, OwnedRoomId,
    api::client::{
        push::get_notifications, redact::redact_event,
        relations::get_relating_events_with_rel_type, threads::get_threads,
    },
    events::{relation::RelationType, room::member::MembershipState},
};
use serde_json::Value;

use boardroom::{
    domain::Action,
    domain::inbox::Kind,
    domain::stream::{StreamData, TaskChange},
    store::inbound::{EntryKind, PendingEntry},
    testing as handler,
};

use crate::harness::{Stack, User};

const CONFIG: &str = "[permissions]\nboard_creators = [\"@alice:localhost\"]";

struct Board {
    stack: Stack,
    alice: User,
    bob: User,
    general: OwnedRoomId,
    tasks: OwnedRoomId,
}

/// Alice creates the board `launch`; Bob is invited and joins; both are in `general` and
/// `tasks`.
async fn board() -> Board {
    let stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let bob = stack.synapse.register("bob").await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, MembershipState::Join).await;
    let reply = alice.command(&dm, &bot, "!board create launch Launch").await;
    assert!(reply.contains("created"), "{reply}");
    let space = alice.join("#boardroom_launch:localhost").await.expect("space");
    let general = alice.join("#boardroom_launch-general:localhost").await.expect("general");
    let tasks = alice.join("#boardroom_launch-tasks:localhost").await.expect("tasks");
    alice.command(&general, &bot, "!board invite @bob:localhost").await;
    bob.join(space.as_str()).await.expect("bob joins the space");
    bob.join(general.as_str()).await.expect("bob joins general");
    bob.join(tasks.as_str()).await.expect("bob joins tasks");
    // Rooms are processed in lanes of their own, so a command in `general` may be
    // handled before Bob's join of the space: wait until the join is indexed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack.boardroom.store().boards_of(&bob.user_id).expect("boards").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "Bob's join never indexed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = bob.command(&general, &bot, "!board info").await;
    assert!(info.contains("@bob:localhost (member)"), "{info}");
    Board { stack, alice, bob, general, tasks }
}

async fn task_state(user: &User, tasks: &OwnedRoomId, n: u64) -> Value {
    user.state(tasks, "dev.boardroom.task", &n.to_string())
        .await
        .unwrap_or_else(|| panic!("no state for task {n}"))
}

fn root_of(state: &Value) -> OwnedEventId {
    state["root_event_id"].as_str().expect("root_event_id").try_into().expect("event id")
}

/// The body of the root's latest edit.
async fn root_text(user: &User, room: &OwnedRoomId, root: &OwnedEventId) -> String {
    let req = get_relating_events_with_rel_type::v1::Request::new(
        room.clone(),
        root.clone(),
        RelationType::Replacement,
    );
    let resp = user.client.send(req, None).await.expect("relations");
    let mut edits: Vec<Value> =
        resp.chunk.iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
    edits.sort_by_key(|e| e["origin_server_ts"].as_u64());
    edits
        .last()
        .map(|e| e["content"]["m.new_content"]["body"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_a_thread_with_state_and_a_feed() {
    let Board { stack, alice, bob, general, tasks } = board().await;
    let bot = stack.boardroom.bot().to_owned();

    let reply = alice.command(&general, &bot, "!task new Fix the login page").await;
    assert!(
        reply.contains("Created launch#1 “Fix the login page”")
            && reply.contains("https://matrix.to/#/"),
        "{reply}"
    );
    let state = task_state(&alice, &tasks, 1).await;
    assert_eq!(state["number"], 1);
    assert_eq!(state["title"], "Fix the login page");
    assert_eq!(state["status"], "todo");
    assert_eq!(state["assignees"], serde_json::json!([]));
    assert_eq!(state["labels"], serde_json::json!([]));
    assert_eq!(state["created_by"], "@alice:localhost");
    assert_eq!(state["deleted"], false);
    assert!(state["created_at"].as_u64().is_some_and(|t| t > 0));
    let root = root_of(&state);
    let threads = alice
        .client
        .send(get_threads::v1::Request::new(tasks.clone()), None)
        .await
        .expect("threads");
    let roots: Vec<String> = threads
        .chunk
        .iter()
        .filter_map(|t| t.get_field::<String>("event_id").ok().flatten())
        .collect();
    assert!(roots.contains(&root.to_string()), "{roots:?} lacks {root}");

    // Changes in the thread: state, root edit, feed reply.
    let said = alice.command_in_thread(&tasks, &root, &bot, "!task assign @bob:localhost").await;
    assert!(said.contains("@alice:localhost assigned @bob:localhost"), "{said}");
    assert_eq!(
        task_state(&alice, &tasks, 1).await["assignees"],
        serde_json::json!(["@bob:localhost"])
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !root_text(&alice, &tasks, &root).await.contains("Assigned: @bob:localhost") {
        assert!(std::time::Instant::now() < deadline, "the root was not edited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The assignee is notified: a highlight in Bob's notifications.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut req = get_notifications::v3::Request::new();
        req.only = Some("highlight".into());
        let n = bob.client.send(req, None).await.expect("notifications");
        if n.notifications.iter().any(|n| {
            n.event.get_field::<Value>("content").ok().flatten().is_some_and(|c| {
                c["body"].as_str().is_some_and(|b| b.contains("assigned @bob:localhost"))
            })
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob got no highlight for the assignment");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // From another room, naming the task.
    let said = alice.command(&general, &bot, "!task status #1 doing").await;
    assert!(said.contains("moved it from todo to doing"), "{said}");
    let said = alice.command(&general, &bot, "!task status #1 nowhere").await;
    assert!(
        said.contains("There is no column nowhere; the columns are: todo, doing, review, done"),
        "{said}"
    );
    assert_eq!(task_state(&alice, &tasks, 1).await["status"], "doing");

    for (cmd, expect) in [
        ("!task rename Fix login for good", "renamed it to “Fix login for good”"),
        ("!task label +bug +ui", "changed the labels: +bug +ui"),
        ("!task label -ui", "changed the labels: -ui"),
        ("!task due 2026-12-01", "set the due date to 2026-12-01"),
        ("!task unassign @bob:localhost", "unassigned @bob:localhost"),
    ] {
        let said = alice.command_in_thread(&tasks, &root, &bot, cmd).await;
        assert!(said.contains(expect), "{cmd}: {said}");
    }
    let state = task_state(&alice, &tasks, 1).await;
    assert_eq!(state["title"], "Fix login for good");
    assert_eq!(state["labels"], serde_json::json!(["bug"]));
    assert_eq!(state["due"], "2026-12-01");
    assert_eq!(state["assignees"], serde_json::json!([]));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = root_text(&alice, &tasks, &root).await;
        if text.contains("Fix login for good")
            && text.contains("Due: 2026-12-01")
            && text.contains("Labels: bug")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "root shows {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let list = bob.command(&general, &bot, "!task list").await;
    assert!(list.contains("doing (1)") && list.contains("#1 Fix login for good"), "{list}");
    let info = bob.command(&general, &bot, "!board info").await;
    assert!(info.contains("Tasks: todo 0, doing 1, review 0, done 0"), "{info}");

    // Bob may not delete Alice's task; Alice may.
    let said = bob.command_in_thread(&tasks, &root, &bot, "!task delete").await;
    assert!(said.contains("Only the task's creator or a board admin"), "{said}");
    assert_eq!(task_state(&alice, &tasks, 1).await["deleted"], false);
    let said = alice.command_in_thread(&tasks, &root, &bot, "!task delete").await;
    assert!(said.contains("deleted it"), "{said}");
    assert_eq!(task_state(&alice, &tasks, 1).await["deleted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_are_indexed_edited_and_redacted() {
    let Board { stack, alice, bob, general, tasks } = board().await;
    let bot = stack.boardroom.bot().to_owned();
    alice.command(&general, &bot, "!task new Write the docs").await;
    let root = root_of(&task_state(&alice, &tasks, 1).await);

    let first = alice.say_in_thread(&tasks, &root, "I can take the API part").await;
    let second = bob.say_in_thread(&tasks, &root, "I'll do the guide").await;
    // An edit of Bob's comment.
    let mut edit = ruma::events::room::message::RoomMessageEventContent::text_plain(
        "* I'll do the guide and the FAQ",
    );
    edit.relates_to = Some(ruma::events::room::message::Relation::Replacement(
        ruma::events::relation::Replacement::new(
            second.clone(),
            ruma::events::room::message::RoomMessageEventContentWithoutRelation::text_plain(
                "I'll do the guide and the FAQ",
            ),
        ),
    ));
    bob.send(&tasks, edit).await;
    // A command answered after them means they have all been processed (same room, in order).
    alice.command_in_thread(&tasks, &root, &bot, "!task status review").await;
    let comments = |stack: &Stack| -> Vec<(String, String)> {
        stack
            .boardroom
            .store()
            .comments("launch", 1)
            .expect("comments")
            .into_iter()
            .map(|c| (c.author.to_string(), c.body))
            .collect()
    };
    // Commands in the thread are not comments; the edit shows the new text.
    assert_eq!(
        comments(&stack),
        [
            ("@alice:localhost".to_owned(), "I can take the API part".to_owned()),
            ("@bob:localhost".to_owned(), "I'll do the guide and the FAQ".to_owned()),
        ]
    );
    let watchers: Vec<String> = stack
        .boardroom
        .store()
        .watchers("launch", 1)
        .expect("read")
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert_eq!(
        watchers,
        ["@alice:localhost", "@bob:localhost"],
        "creator and commenter watch the task"
    );

    // A redacted comment is gone.
    let req = redact_event::v3::Request::new(tasks.clone(), first, ruma::TransactionId::new());
    alice.client.send(req, None).await.expect("redact");
    alice.command_in_thread(&tasks, &root, &bot, "!task status doing").await;
    assert_eq!(
        comments(&stack),
        [("@bob:localhost".to_owned(), "I'll do the guide and the FAQ".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_and_refusals() {
    let Board { stack, alice, bob, general, tasks } = board().await;
    let bot = stack.boardroom.bot().to_owned();
    alice.command(&general, &bot, "!task new One").await;
    alice.command(&general, &bot, "!task status #1 review").await;

    // Columns: a change that would strand a task is refused, naming it.
    let said = alice.command(&general, &bot, "!board columns todo,doing,done").await;
    assert!(said.contains("move #1 (review) first"), "{said}");
    let said = bob.command(&general, &bot, "!board columns a,b").await;
    assert!(said.contains("Only board admins"), "{said}");
    let said = alice.command(&general, &bot, "!board columns backlog,todo,doing,review,done").await;
    assert!(said.contains("backlog, todo, doing, review, done"), "{said}");
    let said = alice.command(&general, &bot, "!task new Two").await;
    assert!(said.contains("launch#2"), "{said}");
    assert_eq!(
        task_state(&alice, &tasks, 2).await["status"],
        "backlog",
        "new tasks start in the first column"
    );

    // Bob leaves the board (removed) but is still in general: his commands are refused and
    // change nothing.
    alice.command(&general, &bot, "!board remove @bob:localhost").await;
    let space = alice.resolve("#boardroom_launch:localhost").await;
    alice.wait_for_membership(&space, &bob.user_id, MembershipState::Leave).await;
    let said = bob.command(&general, &bot, "!task status #1 done").await;
    assert!(said.contains("Only members of the board launch"), "{said}");
    assert_eq!(task_state(&alice, &tasks, 1).await["status"], "review");
    let said = bob.command(&general, &bot, "!task new Sneaky").await;
    assert!(said.contains("Only members"), "{said}");
    assert!(alice.state(&tasks, "dev.boardroom.task", "3").await.is_none());
    let said = alice.command(&general, &bot, "!task status #9 done").await;
    assert!(said.contains("There is no task #9"), "{said}");

    // A direct edit of the canonical state is put back, and the thread says so.
    let mut tampered = task_state(&alice, &tasks, 1).await;
    let root = root_of(&tampered);
    tampered["title"] = "Hijacked".into();
    tampered["status"] = "done".into();
    let req = ruma::api::client::state::send_state_event::v3::Request::new_raw(
        tasks.clone(),
        "dev.boardroom.task".into(),
        "1".into(),
        ruma::serde::Raw::new(&tampered).expect("raw").cast_unchecked(),
    );
    alice.client.send(req, None).await.expect("alice can send state");
    alice
        .wait_for(&tasks, Duration::from_secs(15), "the revert notice", |ev| {
            ev.iter()
                .filter_map(|e| match e {
                    ruma::events::AnyTimelineEvent::MessageLike(
                        ruma::events::AnyMessageLikeEvent::RoomMessage(
                            ruma::events::MessageLikeEvent::Original(m),
                        ),
                    ) if m.sender == bot => Some(m.content.body().to_owned()),
                    _ => None,
                })
                .find(|b| b.contains("changed the state of launch#1 directly; it was put back"))
        })
        .await;
    let state = task_state(&alice, &tasks, 1).await;
    assert_eq!((state["title"].as_str(), state["status"].as_str()), (Some("One"), Some("review")));
    assert_eq!(state["root_event_id"].as_str(), Some(root.as_str()));

    // Content that is no task at all is put back too.
    let req = ruma::api::client::state::send_state_event::v3::Request::new_raw(
        tasks.clone(),
        "dev.boardroom.task".into(),
        "1".into(),
        ruma::serde::Raw::new(&serde_json::json!({"junk": true})).expect("raw").cast_unchecked(),
    );
    alice.client.send(req, None).await.expect("alice can send state");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while task_state(&alice, &tasks, 1).await["title"] != "One" {
        assert!(std::time::Instant::now() < deadline, "junk task state was not put back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The board's own state set by an admin's client: valid columns are followed, columns
    // that would strand a task are put back.
    let board_state = |columns: &[&str]| {
        let mut content = serde_json::json!({
            "slug": "launch", "name": "Launch", "created_by": "@alice:localhost",
            "columns": columns,
        });
        content["created_by_event"] = stack
            .boardroom
            .store()
            .board("launch")
            .expect("read")
            .expect("board")
            .created_by_event
            .to_string()
            .into();
        ruma::api::client::state::send_state_event::v3::Request::new_raw(
            space.clone(),
            "dev.boardroom.board".into(),
            String::new(),
            ruma::serde::Raw::new(&content).expect("raw").cast_unchecked(),
        )
    };
    let wider = ["backlog", "todo", "doing", "review", "done", "later"];
    alice.client.send(board_state(&wider), None).await.expect("alice sets the board's state");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while stack.boardroom.store().board("launch").expect("read").expect("board").columns != wider {
        assert!(std::time::Instant::now() < deadline, "the new columns were not followed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = alice.command(&general, &bot, "!task status #1 later").await;
    assert!(said.contains("moved it from review to later"), "{said}");
    alice.client.send(board_state(&["todo", "done"]), None).await.expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = alice.state(&space, "dev.boardroom.board", "").await.expect("board state");
        if now["columns"] == serde_json::json!(wider) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "stranding columns were not put back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stack.boardroom.store().board("launch").expect("read").expect("board").columns,
        wider
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_numbers_stay_unique_and_gap_free_under_concurrency() {
    let Board { stack, alice, bob, general, tasks } = board().await;
    let bot = stack.boardroom.bot().to_owned();
    // Six commands at once from two users in two rooms (two processing lanes).
    let mut sent = Vec::new();
    let (a, b) = tokio::join!(
        async {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push((
                    general.clone(),
                    alice.say(&general, &format!("!task new from alice {i}")).await,
                ));
            }
            v
        },
        async {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push((tasks.clone(), bob.say(&tasks, &format!("!task new from bob {i}")).await));
            }
            v
        }
    );
    sent.extend(a);
    sent.extend(b);
    for (room, event) in &sent {
        alice
            .wait_for(room, Duration::from_secs(30), "every task created", |ev| {
                (!crate::harness::replies_to(ev, &bot, event).is_empty()).then_some(())
            })
            .await;
    }
    let mut numbers: Vec<u64> = stack
        .boardroom
        .store()
        .tasks_of("launch")
        .expect("tasks")
        .iter()
        .map(|t| t.fields.number)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    for n in 1..=6 {
        let state = task_state(&alice, &tasks, n).await;
        assert_eq!(state["number"], n);
    }
}

/// The command event `body` that `user` sent in `room`, as a handler would get it again.
async fn command_entry(user: &User, room: &OwnedRoomId, body: &str) -> PendingEntry {
    let raw = user
        .timeline(room)
        .await
        .into_iter()
        .rev()
        .find(|e| {
            e.get_field::<Value>("content")
                .ok()
                .flatten()
                .is_some_and(|c| c["body"].as_str() == Some(body))
        })
        .unwrap_or_else(|| panic!("no event `{body}`"));
    PendingEntry {
        seq: 1_000_000,
        kind: EntryKind::Timeline,
        room_id: room.to_string(),
        json: raw.json().get().as_bytes().to_vec(),
        may_change_rooms: false,
        plain: false,
    }
}

fn bodies(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendMessage { content, .. } => Some(content.body().to_owned()),
            _ => None,
        })
        .collect()
}

fn assignments(stack: &Stack, user: &str) -> usize {
    let user: ruma::OwnedUserId = user.try_into().expect("user id");
    let inbox = stack.boardroom.store().notifications(&user, None, 100).expect("inbox");
    inbox.iter().filter(|n| n.kind == Kind::Assignment).count()
}

/// A crash after a command's effects were recorded but before it was marked done runs the
/// command again on restart: it must answer as the first time and change nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_run_again_after_a_crash_changes_nothing_twice() {
    let Board { stack, alice, bob: _bob, general, tasks } = board().await;
    let bot = stack.boardroom.bot().to_owned();
    let ctx = stack.boardroom.ctx();

    let reply = alice.command(&general, &bot, "!task new Ship it").await;
    assert!(reply.contains("Created launch#1"), "{reply}");
    let again =
        handler::handle(ctx, &command_entry(&alice, &general, "!task new Ship it").await).await;
    let said = bodies(&again);
    assert!(said.iter().any(|b| b.contains("Created launch#1 “Ship it”")), "{said:?}");
    let store = stack.boardroom.store();
    assert_eq!(store.next_task_number("launch").expect("next"), 2, "no second task");
    assert_eq!(store.task("launch", 2).expect("read"), None);
    assert_eq!(alice.state(&tasks, "dev.boardroom.task", "2").await, None);

    let root = root_of(&task_state(&alice, &tasks, 1).await);
    let said = alice.command_in_thread(&tasks, &root, &bot, "!task assign @bob:localhost").await;
    assert!(said.contains("assigned @bob:localhost"), "{said}");
    assert_eq!(assignments(&stack, "@bob:localhost"), 1);
    let again =
        handler::handle(ctx, &command_entry(&alice, &tasks, "!task assign @bob:localhost").await)
            .await;
    let said = bodies(&again);
    assert!(
        said.iter().any(|b| b.contains("@alice:localhost assigned @bob:localhost")),
        "{said:?}"
    );
    assert!(!said.iter().any(|b| b.contains("Nothing changed")), "{said:?}");
    assert_eq!(assignments(&stack, "@bob:localhost"), 1, "one assignment entry, not two");
    // The board's live stream tells of each command, and of each change, once.
    let log = store.live_read("launch", 0, 10_000).expect("the live log");
    let told =
        |what: &dyn Fn(&StreamData) -> bool| log.iter().filter(|(_, e)| what(&e.data)).count();
    let said_by = |text: &'static str| move |d: &StreamData| matches!(d, StreamData::Message(m) if m.body.as_deref() == Some(text));
    assert_eq!(told(&said_by("!task new Ship it")), 1, "{log:#?}");
    assert_eq!(told(&said_by("!task assign @bob:localhost")), 1, "{log:#?}");
    assert_eq!(
        told(&|d| matches!(d, StreamData::Task(t) if t.change == TaskChange::Created)),
        1,
        "{log:#?}"
    );
    assert_eq!(
        told(&|d| matches!(d, StreamData::Task(t) if t.change == TaskChange::Changed)),
        1,
        "{log:#?}"
    );

    // Naming Bob again with Alice: only the newly assigned would be told, and Alice
    // assigned herself, so the feed entry notifies nobody.
    let cmd = "!task assign @bob:localhost @alice:localhost";
    let said = alice.command_in_thread(&tasks, &root, &bot, cmd).await;
    assert!(said.contains("assigned @alice:localhost") && !said.contains("@bob"), "{said}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let feed = loop {
        let found = alice.timeline(&tasks).await.into_iter().find_map(|ev| {
            let sender = ev.get_field::<String>("sender").ok().flatten()?;
            let content = ev.get_field::<Value>("content").ok().flatten()?;
            (sender == bot.as_str()
                && content["body"].as_str()?.contains("@alice:localhost assigned @alice"))
            .then_some(content)
        });
        if let Some(f) = found {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "no feed entry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(feed["msgtype"], "m.notice", "{feed}");
    assert_eq!(feed["m.mentions"], serde_json::json!({}), "{feed}");
    assert_eq!(assignments(&stack, "@bob:localhost"), 1);
    assert_eq!(
        task_state(&alice, &tasks, 1).await["assignees"],
        serde_json::json!(["@bob:localhost", "@alice:localhost"])
    );
}
