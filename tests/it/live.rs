//! End-to-end, against a real Synapse: a board's live stream (Server-Sent Events). A
//! subscriber sees a chat message from a Matrix client, a task created by command, its
//! status change, a comment, typing from a Matrix client and its own new notification, in
//! that order, each once; after a disconnect, and again across a Boardroom restart, it
//! resumes with `Last-Event-ID` and gets exactly what it missed, then live events. A
//! member not in a private room never gets its messages; a removed member's stream ends.

use std::time::{Duration, Instant};

use ruma::{
    OwnedRoomId,
    api::client::typing::create_typing_event::v3::TypingInfo,
    api::client::typing::create_typing_event::{self, v3::Typing},
};
use serde_json::json;

use crate::{
    harness::{Boardroom, Launch, User},
    sse::{Ev, Sse, open, open_url},
};

const CONFIG: &str = r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["launch"]
[live]
keepalive_secs = 1
"#;

type Setup = Launch;

async fn setup() -> Setup {
    let setup = Launch::start(CONFIG).await;
    setup.until_member(&setup.bob).await;
    setup
}

impl Launch {
    /// Waits until Boardroom has indexed `user` as a member of the board.
    async fn until_member(&self, user: &User) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            let status = http
                .get(format!("{}/boards/launch", self.api))
                .bearer_auth(&user.token)
                .send()
                .await
                .expect("GET /boards/launch")
                .status();
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "{} is still not a member: {status}", user.user_id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn open(&self, user: &User, last: Option<u64>) -> Sse {
        open(&self.api, "launch", &user.token, last).await.expect("the stream opens")
    }
}

/// The logged events in `seen`, with their ids strictly growing (each once).
fn logged(seen: &[Ev]) -> Vec<Ev> {
    let out: Vec<Ev> = seen.iter().filter(|e| e.is_logged()).cloned().collect();
    let ids: Vec<u64> = out.iter().map(|e| e.id.expect("a logged event has an id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly growing: {ids:?}");
    out
}

/// The bodies of the `message` events in `seen`, in order.
fn messages(seen: &[Ev]) -> Vec<String> {
    seen.iter().filter(|e| e.event == "message").map(|e| e.body().to_owned()).collect()
}

/// Waits for the `ready` event that ends a (re)connect's replay; returns what came before.
async fn until_ready(sse: &mut Sse) -> Vec<Ev> {
    let mut seen = sse.until("ready", |e| e.event == "ready").await;
    let ready = seen.pop().expect("ready");
    assert_eq!(ready.data["board"], "launch");
    assert_eq!(ready.id, ready.data["last_event_id"].as_u64(), "{ready:?}");
    seen
}

async fn type_in(user: &User, room: &OwnedRoomId) {
    let typing = Typing::Yes(TypingInfo::new(Duration::from_secs(30)));
    let req = create_typing_event::v3::Request::new(user.user_id.clone(), room.clone(), typing);
    user.client.send(req, None).await.expect("typing");
}

#[tokio::test]
async fn a_subscriber_sees_each_change_once_in_order_and_resumes_after_a_disconnect_and_a_restart()
{
    let mut s = setup().await;
    let bot = s.stack.boardroom.bot().to_owned();
    let mut sse = s.open(&s.alice, None).await;
    let before = until_ready(&mut sse).await;
    assert!(logged(&before).is_empty(), "nothing replayed on a first connect: {before:#?}");
    assert_eq!(sse.retry, Some(2000), "retry advice on connect");
    // A quiet stream gets keep-alive comments (every second here, 15 s by default).
    let deadline = Instant::now() + Duration::from_secs(10);
    while sse.comments == 0 {
        assert!(Instant::now() < deadline, "no keep-alive");
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), sse.resp.chunk()).await
        {
            sse.buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
            while let Some(end) = sse.buf.find("\n\n") {
                let block: String = sse.buf.drain(..end + 2).collect();
                assert!(
                    block.starts_with(": keep-alive"),
                    "only keep-alives while quiet: {block:?}"
                );
                sse.comments += 1;
            }
        }
    }

    // Six things, one after another.
    s.bob.say(&s.general, "hello from bob").await;
    let reply = s.alice.command(&s.general, &bot, "!task new Write the launch notes").await;
    assert!(reply.contains("launch#1"), "{reply}");
    let reply = s.alice.command(&s.general, &bot, "!task status #1 doing").await;
    assert!(reply.contains("doing"), "{reply}");
    let created =
        sse.until("the task", |e| e.event == "task" && e.data["change"] == "changed").await;
    let root = created
        .iter()
        .find(|e| e.event == "task")
        .and_then(|e| e.data["task"]["root_event_id"].as_str().map(str::to_owned))
        .expect("the task's root");
    let root: ruma::OwnedEventId = root.try_into().expect("event id");
    s.bob.say_in_thread(&s.tasks, &root, "a comment from bob").await;
    let mut seen = created;
    seen.extend(sse.until("the comment", |e| e.event == "comment").await);
    type_in(&s.bob, &s.general).await;
    seen.extend(
        sse.until("bob typing", |e| {
            e.event == "typing" && e.data["user_ids"].as_array().is_some_and(|u| !u.is_empty())
        })
        .await,
    );
    s.bob.say(&s.general, "@alice have a look").await;
    seen.extend(
        sse.until("alice's mention", |e| {
            e.event == "notification" && e.data["notification"]["kind"] == "mention"
        })
        .await,
    );

    // In that order, each logged event once.
    let position = |what: &str, pred: &dyn Fn(&Ev) -> bool| {
        let found: Vec<usize> =
            seen.iter().enumerate().filter(|(_, e)| pred(e)).map(|(i, _)| i).collect();
        assert_eq!(found.len(), 1, "{what} once in {seen:#?}");
        found[0]
    };
    let order = [
        position("bob's message", &|e| e.event == "message" && e.body() == "hello from bob"),
        position("the task created", &|e| e.event == "task" && e.data["change"] == "created"),
        position("the task moved", &|e| {
            e.event == "task"
                && e.data["change"] == "changed"
                && e.data["task"]["status"] == "doing"
        }),
        position("bob's comment", &|e| {
            e.event == "comment"
                && e.data["task"] == 1
                && e.data["change"] == "new"
                && e.data["comment"]["body"] == "a comment from bob"
                && e.data["comment"]["author"] == "@bob:localhost"
        }),
        position("bob typing", &|e| {
            e.event == "typing"
                && e.data["user_ids"] == json!(["@bob:localhost"])
                && e.data["room"] == "general"
        }),
        position("alice's mention", &|e| {
            e.event == "notification"
                && e.data["notification"]["kind"] == "mention"
                && e.data["notification"]["user_id"] == "@alice:localhost"
        }),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order: {order:?} in {seen:#?}");
    let notified = &seen[order[5]];
    assert!(notified.data["unread_count"].as_u64().is_some_and(|n| n >= 1), "{notified:?}");
    let task = &seen[order[1]].data["task"];
    assert_eq!(
        (task["number"].clone(), task["title"].clone()),
        (json!(1), json!("Write the launch notes"))
    );
    logged(&seen);

    // Alice reads it over the API: her stream says which entry and the count after it.
    let id = notified.data["notification"]["id"].as_u64().expect("the entry's id");
    let unread = notified.data["unread_count"].as_u64().expect("a count");
    let read = reqwest::Client::new()
        .post(format!("{}/notifications/{id}/read", s.api))
        .bearer_auth(&s.alice.token)
        .send()
        .await
        .expect("mark read");
    assert_eq!(read.status().as_u16(), 200);
    let seen = sse.until("the read mark", |e| e.event == "notification").await;
    let mark = seen.last().expect("the mark");
    assert_eq!(mark.data["read"], json!([id]), "{mark:?}");
    assert_eq!(mark.data["unread_count"].as_u64(), Some(unread - 1), "{mark:?}");

    // Disconnect; three things happen; resume: exactly those three, then live.
    let last = sse.last_id.expect("an id");
    drop(sse);
    for body in ["away 1", "away 2", "away 3"] {
        s.bob.say(&s.general, body).await;
    }
    let mut sse = s.open(&s.alice, Some(last)).await;
    let seen = sse.until("the third", |e| e.body() == "away 3").await;
    let missed = logged(&seen);
    assert_eq!(messages(&missed), ["away 1", "away 2", "away 3"], "{seen:#?}");
    assert_eq!(missed.len(), 3, "nothing else, nothing twice: {missed:#?}");
    assert_eq!(missed[0].id, Some(last + 1), "no gap at the seam");
    s.bob.say(&s.general, "live again").await;
    let seen = sse.until("the live one", |e| e.is_logged()).await;
    assert_eq!(messages(&seen), ["live again"], "{seen:#?}");

    // Across a restart: the stream ends cleanly when Boardroom stops; three things happen
    // while it is down; after the restart the stream resumes with exactly those three.
    let (settings, config_path) =
        (s.stack.boardroom.settings.clone(), s.stack.boardroom.config_path.clone());
    s.stack.boardroom.stop().await;
    let rest = sse.until_end(Duration::from_secs(15)).await;
    assert!(logged(&rest).is_empty(), "{rest:#?}");
    let last = sse.last_id.expect("an id");
    drop(sse);
    for body in ["down 1", "down 2", "down 3"] {
        s.bob.say(&s.general, body).await;
    }
    s.stack.boardroom = Boardroom::start(settings, config_path).await;
    let mut sse = s.open(&s.alice, Some(last)).await;
    let seen = sse.until("the third", |e| e.body() == "down 3").await;
    let missed = logged(&seen);
    assert_eq!(messages(&missed), ["down 1", "down 2", "down 3"], "{seen:#?}");
    assert_eq!(missed.len(), 3, "{missed:#?}");
    assert_eq!(missed[0].id, Some(last + 1));
    s.bob.say(&s.general, "after the restart").await;
    let seen = sse.until("the live one", |e| e.is_logged()).await;
    assert_eq!(messages(&seen), ["after the restart"], "{seen:#?}");

    // A resume from an id never handed out is told to refetch, and goes on from there.
    let mut sse = s.open(&s.alice, Some(1_000_000)).await;
    let first = sse.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(first.event, "reset", "{first:?}");
    until_ready(&mut sse).await;
    s.bob.say(&s.general, "after the reset").await;
    let seen = sse.until("the live one", |e| e.is_logged()).await;
    assert_eq!(messages(&seen), ["after the reset"], "{seen:#?}");
}

#[tokio::test]
async fn private_rooms_reach_only_their_members_and_a_removed_members_stream_ends() {
    let s = setup().await;
    let bot = s.stack.boardroom.bot().to_owned();
    // Carol is not on the board: no stream. Nor for a board that does not exist, nor with
    // a bad id, nor without a token.
    let (status, body) = open(&s.api, "launch", &s.carol.token, None).await.err().expect("refused");
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (status, _) = open(&s.api, "nope", &s.alice.token, None).await.err().expect("refused");
    assert_eq!(status, 403, "a board the caller is not on reads as forbidden, existing or not");
    let bad = reqwest::Client::new()
        .get(format!("{}/boards/launch/events?last_event_id=abc", s.api))
        .bearer_auth(&s.alice.token)
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status().as_u16(), 400);
    let none = reqwest::get(format!("{}/boards/launch/events", s.api)).await.expect("request");
    assert_eq!(none.status().as_u16(), 401);

    // Alice adds a private room for herself; bob is not in it.
    let reply = s.alice.command(&s.general, &bot, "!board room leads private").await;
    assert!(reply.contains("leads"), "{reply}");
    let leads = s.alice.join("#boardroom_launch-leads:localhost").await.expect("alice joins leads");
    let mut hers = s.open(&s.alice, None).await;
    let mut his = s.open(&s.bob, None).await;
    // A task app's virtual user, with its client token and name in the query string.
    let url =
        format!("{}/boards/launch/events?access_token=tracker-client-token&user_id=watcher", s.api);
    let mut app = open_url(url, None).await.expect("the client's stream opens");
    until_ready(&mut hers).await;
    until_ready(&mut his).await;
    until_ready(&mut app).await;
    let start = his.last_id;
    s.alice.say(&leads, "the leads' secret").await;
    s.alice.say(&s.general, "for everyone").await;
    let seen = hers.until("general", |e| e.body() == "for everyone").await;
    assert_eq!(messages(&seen), ["the leads' secret", "for everyone"], "{seen:#?}");
    let seen = his.until("general", |e| e.body() == "for everyone").await;
    assert_eq!(messages(&seen), ["for everyone"], "bob never gets the private room: {seen:#?}");
    let seen = app.until("general", |e| e.body() == "for everyone").await;
    assert_eq!(messages(&seen), ["for everyone"], "nor does a virtual user: {seen:#?}");
    // Bob mentions alice: her notification is hers alone.
    s.bob.say(&s.general, "@alice see the leads room").await;
    s.alice.say(&s.general, "sentinel").await;
    let seen = hers.until("sentinel", |e| e.body() == "sentinel").await;
    assert!(
        seen.iter().any(|e| e.event == "notification"
            && e.data["notification"]["user_id"] == "@alice:localhost"),
        "{seen:#?}"
    );
    for stream in [&mut his, &mut app] {
        let seen = stream.until("sentinel", |e| e.body() == "sentinel").await;
        assert_eq!(messages(&seen), ["@alice see the leads room", "sentinel"], "{seen:#?}");
        assert!(!seen.iter().any(|e| e.event == "notification"), "{seen:#?}");
    }
    // Nor when he replays the log.
    let mut again = s.open(&s.bob, start).await;
    let seen = again.until("general", |e| e.body() == "for everyone").await;
    assert_eq!(messages(&seen), ["for everyone"], "{seen:#?}");
    drop(again);

    // Alice removes bob: his stream says so and ends; hers goes on.
    let reply = s.alice.command(&s.general, &bot, "!board remove @bob:localhost").await;
    assert!(reply.contains("@bob:localhost"), "{reply}");
    let rest = his.until_end(Duration::from_secs(30)).await;
    assert!(
        rest.iter().any(|e| e.event == "membership"
            && e.data["user_id"] == "@bob:localhost"
            && e.data["membership"] != "join"),
        "{rest:#?}"
    );
    assert_eq!(rest.last().map(|e| e.event.as_str()), Some("end"), "{rest:#?}");
    let seen = hers
        .until("bob's removal", |e| {
            e.event == "membership" && e.data["user_id"] == "@bob:localhost"
        })
        .await;
    assert_ne!(seen.last().map(|e| e.data["membership"].clone()), Some(json!("join")));
    // And he cannot open another.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match open(&s.api, "launch", &s.bob.token, None).await {
            Err((status, _)) => {
                assert_eq!(status, 403);
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "bob still opens a stream"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
