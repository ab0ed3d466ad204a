//! End-to-end: a real Synapse, Boardroom, and users acting through the client-server API.

use std::time::Duration;

use ruma::{
    api::client::{profile::get_profile, room::get_room_event},
    events::{
        AnyTimelineEvent,
        relation::Thread,
        room::{
            member::MembershipState,
            message::{MessageType, Relation, RoomMessageEventContent},
        },
    },
};

use crate::harness::{Stack, replies_to};

const CREATORS: &str = "[permissions]\nboard_creators = [\"@alice:localhost\"]";

fn body(m: &ruma::events::room::message::OriginalRoomMessageEvent) -> &str {
    m.content.body()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_unknown_and_silence_in_a_dm_and_a_thread() {
    let stack = Stack::start(CREATORS).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;

    // The bot registered itself and set its display name at start-up.
    let profile = alice
        .client
        .send(get_profile::v3::Request::new(bot.clone()), None)
        .await
        .expect("bot profile");
    assert_eq!(
        profile.get("displayname").and_then(|v| v.as_str()),
        Some("Boardroom"),
        "bot display name"
    );

    let room = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&room, &bot, MembershipState::Join).await;

    let help = alice.say(&room, "!help").await;
    let reply = alice
        .wait_for(&room, Duration::from_secs(15), "the reply to !help", |ev| {
            replies_to(ev, &bot, &help)
                .first()
                .map(|m| (body(m).to_owned(), m.content.msgtype.clone()))
        })
        .await;
    assert!(reply.0.contains("Boardroom commands") && reply.0.contains("!help"), "{}", reply.0);
    let MessageType::Notice(notice) = reply.1 else { panic!("the reply is not a notice") };
    assert!(notice.formatted.is_some_and(|f| f.body.contains("<code>!help</code>")));

    let nonsense = alice.say(&room, "!nonsense").await;
    let plain = alice.say(&room, "hello everyone, just chatting").await;
    // Thread: a root, then a command inside its thread.
    let root = alice.say(&room, "a thread root").await;
    let mut in_thread = RoomMessageEventContent::text_plain("!help");
    in_thread.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root.clone())));
    let threaded = alice.send(&room, in_thread).await;

    let (nonsense_reply, thread_reply) = alice
        .wait_for(&room, Duration::from_secs(15), "replies to !nonsense and the thread", |ev| {
            let a = replies_to(ev, &bot, &nonsense).first().map(|m| body(m).to_owned())?;
            let b =
                replies_to(ev, &bot, &threaded).first().map(|m| m.content.relates_to.clone())?;
            Some((a, b))
        })
        .await;
    assert!(
        nonsense_reply.contains("Unknown command !nonsense") && nonsense_reply.contains("!help"),
        "{nonsense_reply}"
    );
    match thread_reply {
        Some(Relation::Thread(t)) => {
            assert_eq!(t.event_id, root, "reply is in the command's thread")
        }
        other => panic!("reply to a threaded command is not in the thread: {other:?}"),
    }

    // The plain message came before the threaded command in the same room, and rooms are
    // processed in order: by now it has been handled, and it got no answer.
    let events: Vec<AnyTimelineEvent> =
        alice.timeline(&room).await.iter().filter_map(|r| r.deserialize().ok()).collect();
    assert!(replies_to(&events, &bot, &plain).is_empty(), "a plain message was answered");
    let bot_messages = events
        .iter()
        .filter(|e| matches!(e, AnyTimelineEvent::MessageLike(m) if m.sender() == bot))
        .count();
    assert_eq!(bot_messages, 3, "exactly one reply per command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_from_others_are_declined() {
    let stack = Stack::start(CREATORS).await;
    let bot = stack.boardroom.bot().to_owned();
    let bob = stack.synapse.register("bob").await;
    let room = bob.create_room(&[&bot]).await;
    let reason = bob.wait_for_membership(&room, &bot, MembershipState::Leave).await;
    let reason = reason.expect("the bot says why it declines");
    assert!(reason.contains(bob.user_id.as_str()) && reason.contains("board_creators"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_answered_once() {
    let stack = Stack::start(CREATORS).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let room = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&room, &bot, MembershipState::Join).await;

    let help = alice.say(&room, "!help").await;
    alice
        .wait_for(&room, Duration::from_secs(15), "the reply", |ev| {
            (!replies_to(ev, &bot, &help).is_empty()).then_some(())
        })
        .await;

    // The homeserver redelivers the same event in a new transaction (as after its restart,
    // when transaction ids start again at 1): Boardroom acknowledges and does not answer again.
    let event = alice
        .client
        .send(get_room_event::v3::Request::new(room.clone(), help.clone()), None)
        .await
        .expect("fetch the event")
        .event;
    let settings = &stack.boardroom.settings;
    for txn in ["1", "redelivery-1"] {
        let resp = reqwest::Client::new()
            .put(format!("http://{}/_matrix/app/v1/transactions/{txn}", settings.listen))
            .bearer_auth(settings.hs_token.expose())
            .json(&serde_json::json!({ "events": [event] }))
            .send()
            .await
            .expect("put transaction");
        assert_eq!(resp.status(), 200);
    }
    // A later command is answered: everything before it in the room has been processed.
    let marker = alice.say(&room, "!help").await;
    let events = alice
        .wait_for(&room, Duration::from_secs(15), "the marker reply", |ev| {
            (!replies_to(ev, &bot, &marker).is_empty()).then(|| ev.to_vec())
        })
        .await;
    assert_eq!(
        replies_to(&events, &bot, &help).len(),
        1,
        "the redelivered event was answered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_while_boardroom_is_down_is_answered_after_restart() {
    let mut stack = Stack::start(CREATORS).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let room = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&room, &bot, MembershipState::Join).await;

    stack.boardroom.stop().await;
    let help = alice.say(&room, "!help").await;
    // Let Synapse fail to deliver and back off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    stack.restart_boardroom().await;
    alice
        .wait_for(&room, Duration::from_secs(10), "the reply within 10 s of the restart", |ev| {
            (!replies_to(ev, &bot, &help).is_empty()).then_some(())
        })
        .await;
    eprintln!("reply arrived {:?} after the restart", started.elapsed());
}
