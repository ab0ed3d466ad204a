//! End-to-end, against a real Synapse: chat over the HTTP API. A Matrix user's token reads
//! `general` across two pages as that user, sends a message whose mention highlights bob,
//! and is refused a private room it is not in; a client's virtual user types (seen by a
//! Matrix client's `/sync`) and is set online (seen in the board's presence and in Matrix
//! presence). Refusals change nothing.

use std::time::{Duration, Instant};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId,
    api::client::{presence::get_presence, push::get_notifications, redact::redact_event},
    events::{
        AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent,
        relation::Replacement,
        room::message::{Relation, RoomMessageEventContent},
    },
    presence::PresenceState,
};
use serde_json::{Value, json};

use crate::harness::{Launch, User};

const CONFIG: &str = r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["launch"]
"#;

const CLIENT: &str = "tracker-client-token";

type Setup = Launch;

/// [`Launch`], once Boardroom has indexed Alice's and Bob's joins.
async fn setup() -> Setup {
    let setup = Launch::start(CONFIG).await;
    setup.until_ok(&setup.alice.token, None, "/boards/launch/rooms").await;
    setup.until_ok(&setup.bob.token, None, "/boards/launch/rooms").await;
    setup
}

async fn call(
    method: &str,
    url: &str,
    token: &str,
    user: Option<&str>,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = match method {
        "POST" => http.post(url),
        "PUT" => http.put(url),
        _ => http.get(url),
    };
    req = req.bearer_auth(token);
    if let Some(u) = user {
        req = req.header("X-Boardroom-User", u);
    }
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

impl Launch {
    async fn get(&self, token: &str, user: Option<&str>, path: &str) -> (u16, Value) {
        call("GET", &format!("{}{path}", self.api), token, user, None, None).await
    }

    async fn post(&self, token: &str, user: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        call("POST", &format!("{}{path}", self.api), token, user, Some(body), None).await
    }

    async fn put(&self, token: &str, user: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        call("PUT", &format!("{}{path}", self.api), token, user, Some(body), None).await
    }

    /// Polls `path` until it answers 200 (Boardroom indexes what the homeserver pushes).
    async fn until_ok(&self, token: &str, user: Option<&str>, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(token, user, path).await;
            if status == 200 {
                return body;
            }
            assert!(Instant::now() < deadline, "GET {path} still answers {status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The bodies of a history page, newest first.
    fn bodies(page: &Value) -> Vec<String> {
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["body"].as_str().unwrap_or("<redacted>").to_owned())
            .collect()
    }
}

/// The room's text messages as `user`'s client sees them, oldest first.
async fn texts(user: &User, room: &ruma::RoomId) -> Vec<(OwnedUserId, String)> {
    user.timeline(room)
        .await
        .iter()
        .filter_map(|r| match r.deserialize().ok()? {
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(m),
            )) => Some((m.sender, m.content.body().to_owned())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_matrix_user_reads_general_in_pages_sends_a_mention_and_is_refused_a_private_room() {
    let s = setup().await;
    let (alice, bob) = (&s.alice, &s.bob);

    // Five messages, the third edited afterwards: its edit is the newest event.
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(alice.say(&s.general, &format!("m{i}")).await);
    }
    let mut edit = RoomMessageEventContent::text_plain("* m3 edited");
    edit.relates_to = Some(Relation::Replacement(Replacement::new(
        sent[2].clone(),
        RoomMessageEventContent::text_plain("m3 edited").into(),
    )));
    alice.send(&s.general, edit).await;
    // And the first one redacted.
    let redact = redact_event::v3::Request::new(
        s.general.clone(),
        sent[0].clone(),
        ruma::TransactionId::new(),
    );
    alice.client.send(redact, None).await.expect("alice redacts m1");

    // Page one: the edit is folded into m3, so three events give two messages.
    let (status, first) =
        s.get(&alice.token, None, "/boards/launch/rooms/general/messages?limit=3").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(Setup::bodies(&first), ["m5", "m4"], "{first}");
    assert_eq!(first["messages"][0]["event_id"], sent[4].as_str());
    assert_eq!(first["messages"][0]["sender"], alice.user_id.as_str());
    let next = first["next_batch"].as_str().expect("a next page");
    // Page two, from there: m3 with its latest text, then the two before it.
    let (status, second) = s
        .get(
            &alice.token,
            None,
            &format!("/boards/launch/rooms/general/messages?limit=3&from={next}"),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(Setup::bodies(&second), ["m3 edited", "m2", "<redacted>"], "{second}");
    assert_eq!(second["messages"][2]["event_id"], sent[0].as_str(), "{second}");
    assert_eq!(second["messages"][2]["redacted"], true, "{second}");
    assert_eq!(second["messages"][0]["edited"], true, "{second}");
    assert_eq!(second["messages"][1]["edited"], false, "{second}");

    // Alice mentions bob: the message carries m.mentions and a pill, and bob's homeserver
    // counts it as a highlight.
    let (status, posted) = s
        .post(
            &alice.token,
            None,
            "/boards/launch/rooms/general/messages",
            json!({ "body": "@bob ready?" }),
        )
        .await;
    assert_eq!(status, 200, "{posted}");
    let event_id: OwnedEventId =
        posted["event_id"].as_str().expect("event id").try_into().expect("event id");
    let seen = bob
        .wait_for(&s.general, Duration::from_secs(15), "alice's mention", |events| {
            events.iter().find_map(|e| match e {
                AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                    MessageLikeEvent::Original(m),
                )) if m.event_id == event_id => Some(m.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(seen.sender, alice.user_id, "sent as alice, not as the bot");
    let mentions = seen.content.mentions.clone().expect("m.mentions");
    assert!(mentions.user_ids.contains(&bob.user_id), "{mentions:?}");
    let html = match &seen.content.msgtype {
        ruma::events::room::message::MessageType::Text(t) => {
            t.formatted.as_ref().map(|f| f.body.clone()).unwrap_or_default()
        }
        other => panic!("not text: {other:?}"),
    };
    assert!(html.contains("https://matrix.to/#/@bob:localhost"), "{html}");
    let mut highlights = get_notifications::v3::Request::new();
    highlights.only = Some("highlight".to_owned());
    let found = bob.client.send(highlights, None).await.expect("bob's notifications");
    assert!(
        found.notifications.iter().any(|n| n
            .event
            .get_field::<OwnedEventId>("event_id")
            .ok()
            .flatten()
            == Some(event_id.clone())),
        "bob's highlights: {:?}",
        found.notifications.iter().map(|n| n.event.json().get()).collect::<Vec<_>>()
    );

    // A private room alice adds for herself: bob neither lists it nor reads nor writes
    // it, and is told exactly what a room that does not exist tells.
    let (status, leads) = s
        .post(
            &alice.token,
            None,
            "/boards/launch/rooms",
            json!({ "name": "leads", "private": true }),
        )
        .await;
    assert_eq!(status, 201, "{leads}");
    assert_eq!(leads["private"], true);
    let leads_id: OwnedRoomId = leads["room_id"].as_str().expect("room id").try_into().expect("id");
    alice.join(leads_id.as_str()).await.expect("alice joins leads");
    alice.say(&leads_id, "the leads' secret").await;
    let names = |v: &Value| -> Vec<String> {
        v["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (_, alices) = s.get(&alice.token, None, "/boards/launch/rooms").await;
    assert_eq!(names(&alices), ["general", "leads", "tasks"], "{alices}");
    let (_, bobs) = s.get(&bob.token, None, "/boards/launch/rooms").await;
    assert_eq!(names(&bobs), ["general", "tasks"], "{bobs}");
    let (status, read) = s.get(&bob.token, None, "/boards/launch/rooms/leads/messages").await;
    let (nope_status, nope) = s.get(&bob.token, None, "/boards/launch/rooms/nope/messages").await;
    assert_eq!((status, nope_status), (404, 404), "{read} {nope}");
    assert_eq!(read["errcode"], "M_NOT_FOUND");
    assert_eq!(
        read["error"].as_str().map(|e| e.replace("leads", "nope")),
        nope["error"].as_str().map(str::to_owned),
        "a private room is refused as one that does not exist"
    );
    let (status, wrote) = s
        .post(
            &bob.token,
            None,
            "/boards/launch/rooms/leads/messages",
            json!({ "body": "let me in" }),
        )
        .await;
    assert_eq!(status, 404, "{wrote}");
    assert!(
        !texts(alice, &leads_id).await.iter().any(|(_, b)| b == "let me in"),
        "bob's refused message is not in the room"
    );
    // Alice reads her private room.
    let (status, page) = s.get(&alice.token, None, "/boards/launch/rooms/leads/messages").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(Setup::bodies(&page).first().map(String::as_str), Some("the leads' secret"));
    // Alice types there: she sees it in the board's presence, bob does not.
    let (status, body) = s
        .put(&alice.token, None, "/boards/launch/rooms/leads/typing", json!({ "typing": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, hers) = s.get(&alice.token, None, "/boards/launch/presence").await;
    assert_eq!(
        hers["typing"],
        json!([{ "room": "leads", "users": [alice.user_id.as_str()] }]),
        "{hers}"
    );
    let (_, his) = s.get(&bob.token, None, "/boards/launch/presence").await;
    assert_eq!(his["typing"], json!([]), "{his}");
    let (status, body) = s
        .put(&bob.token, None, "/boards/launch/rooms/leads/typing", json!({ "typing": true }))
        .await;
    assert_eq!(status, 404, "{body}");

    // History is read as the caller, not as the bot (which is in every room): a public
    // room bob has not joined is the homeserver's to refuse him, until he joins it.
    let (status, design) =
        s.post(&alice.token, None, "/boards/launch/rooms", json!({ "name": "design" })).await;
    assert_eq!((status, &design["private"]), (201, &json!(false)), "{design}");
    let design_id: OwnedRoomId =
        design["room_id"].as_str().expect("room id").try_into().expect("id");
    alice.join(design_id.as_str()).await.expect("alice joins design");
    alice.say(&design_id, "mockups are in").await;
    let (status, refused) = s.get(&bob.token, None, "/boards/launch/rooms/design/messages").await;
    assert_eq!((status, refused["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{refused}");
    assert!(!refused.to_string().contains("mockups"), "{refused}");
    bob.join(design_id.as_str()).await.expect("bob joins design through the space");
    let (status, page) = s.get(&bob.token, None, "/boards/launch/rooms/design/messages").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(Setup::bodies(&page).first().map(String::as_str), Some("mockups are in"));

    // Carol is on no board: refused alike for a board that exists and one that does not.
    let (status, refused) =
        s.get(&s.carol.token, None, "/boards/launch/rooms/general/messages").await;
    let (other, unknown) =
        s.get(&s.carol.token, None, "/boards/ghost/rooms/general/messages").await;
    assert_eq!((status, other), (403, 403), "{refused} {unknown}");
    assert_eq!(
        (refused["errcode"].as_str(), unknown["errcode"].as_str()),
        (Some("M_FORBIDDEN"), Some("M_FORBIDDEN"))
    );
    let before = texts(alice, &s.general).await.len();
    let (status, _) = s
        .post(
            &s.carol.token,
            None,
            "/boards/launch/rooms/general/messages",
            json!({ "body": "hi" }),
        )
        .await;
    assert_eq!(status, 403);

    // Bad input: a limit out of range, an unknown room, a blank or huge body.
    for bad in ["limit=0", "limit=101", "limit=abc", "from="] {
        let (status, body) = s
            .get(&alice.token, None, &format!("/boards/launch/rooms/general/messages?{bad}"))
            .await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{bad}: {body}"
        );
    }
    let (status, body) = s.get(&alice.token, None, "/boards/launch/rooms/nope/messages").await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
    for text in [" ".to_owned(), "x".repeat(16_001)] {
        let (status, body) = s
            .post(
                &alice.token,
                None,
                "/boards/launch/rooms/general/messages",
                json!({ "body": text }),
            )
            .await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");
    }
    let (status, body) = s
        .post(
            &alice.token,
            None,
            "/boards/launch/rooms/general/messages",
            json!({ "body": "in a thread", "thread_root": "$nowhere:localhost" }),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");
    let (status, body) = s
        .post(&alice.token, None, "/boards/launch/rooms/general/messages", json!({ "text": "x" }))
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{body}");
    assert_eq!(texts(alice, &s.general).await.len(), before, "no refused request sent anything");
}

#[tokio::test]
async fn a_virtual_user_sends_once_per_key_reads_as_itself_in_a_thread_and_is_seen_typing_and_online()
 {
    let s = setup().await;
    let (alice, bob) = (&s.alice, &s.bob);
    let vu = Some("pm");
    let vu_id: OwnedUserId = "@boardroom_pm:localhost".try_into().expect("user id");

    // Sent twice under one Idempotency-Key: one message, one event id.
    let url = format!("{}/boards/launch/rooms/general/messages", s.api);
    let body = json!({ "body": "standup in 5, @alice" });
    let (status, first) = call("POST", &url, CLIENT, vu, Some(body.clone()), Some("k1")).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = call("POST", &url, CLIENT, vu, Some(body), Some("k1")).await;
    assert_eq!((status, &again["event_id"]), (200, &first["event_id"]), "{again}");
    let root: OwnedEventId = first["event_id"].as_str().expect("id").try_into().expect("id");
    let from_pm: Vec<String> = texts(alice, &s.general)
        .await
        .into_iter()
        .filter(|(sender, _)| *sender == vu_id)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(from_pm, ["standup in 5, @alice"], "sent once, as the virtual user");
    // Another virtual user of the same client with the same key sends its own message.
    let body = json!({ "body": "me too" });
    let (status, other) = call("POST", &url, CLIENT, Some("qa"), Some(body), Some("k1")).await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(other["event_id"], first["event_id"], "one key, two senders, two messages");
    let qa: OwnedUserId = "@boardroom_qa:localhost".try_into().expect("user id");
    assert!(
        texts(alice, &s.general).await.iter().any(|(sender, b)| *sender == qa && b == "me too"),
        "qa's message is in the room"
    );

    // A reply in its thread; the virtual user reads it back as itself.
    let (status, reply) = s
        .post(
            CLIENT,
            vu,
            "/boards/launch/rooms/general/messages",
            json!({ "body": "noted", "thread_root": root }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, page) = s.get(CLIENT, vu, "/boards/launch/rooms/general/messages?limit=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(Setup::bodies(&page), ["noted", "me too", "standup in 5, @alice"], "{page}");
    assert_eq!(page["messages"][0]["thread_root"], root.as_str(), "{page}");
    assert_eq!(page["messages"][0]["sender"], vu_id.as_str());

    // Typing: bob's client sees it in /sync; the board's presence lists it.
    let (status, body) = s
        .put(
            CLIENT,
            vu,
            "/boards/launch/rooms/general/typing",
            json!({ "typing": true, "timeout_ms": 60_000 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_sync(bob, "the virtual user typing in general", |sync| {
        typing_in(sync, &s.general).is_some_and(|users| users.contains(&vu_id.to_string()))
    })
    .await;
    let presence = s.until_ok(&alice.token, None, "/boards/launch/presence").await;
    assert_eq!(
        presence["typing"],
        json!([{ "room": "general", "users": [vu_id.as_str()] }]),
        "{presence}"
    );
    let (status, body) =
        s.put(CLIENT, vu, "/boards/launch/rooms/general/typing", json!({ "typing": false })).await;
    assert_eq!(status, 200, "{body}");
    wait_for_sync(bob, "the virtual user to stop typing", |sync| {
        typing_in(sync, &s.general).is_some_and(|users| !users.contains(&vu_id.to_string()))
    })
    .await;
    let (_, presence) = s.get(&alice.token, None, "/boards/launch/presence").await;
    assert_eq!(presence["typing"], json!([]), "{presence}");
    let (status, body) = s
        .put(
            CLIENT,
            vu,
            "/boards/launch/rooms/general/typing",
            json!({ "typing": true, "timeout_ms": 0 }),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");

    // Presence: set online over the API, the board lists it online, and Matrix says so.
    let (status, body) = s.put(CLIENT, vu, "/presence", json!({ "presence": "online" })).await;
    assert_eq!(status, 200, "{body}");
    let (_, presence) = s.get(&alice.token, None, "/boards/launch/presence").await;
    let listed = presence["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["user_id"] == vu_id.as_str())
        .cloned();
    assert_eq!(listed.as_ref().map(|m| &m["presence"]), Some(&json!("online")), "{presence}");
    let matrix = alice
        .client
        .send(get_presence::v3::Request::new(vu_id.clone()), None)
        .await
        .expect("the virtual user's presence");
    assert_eq!(matrix.presence, PresenceState::Online);
    // Set offline: gone from the list, offline in Matrix.
    let (status, _) = s.put(CLIENT, vu, "/presence", json!({ "presence": "offline" })).await;
    assert_eq!(status, 200);
    let (_, presence) = s.get(&alice.token, None, "/boards/launch/presence").await;
    assert!(
        !presence["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["user_id"] == vu_id.as_str()),
        "{presence}"
    );
    let matrix = alice
        .client
        .send(get_presence::v3::Request::new(vu_id.clone()), None)
        .await
        .expect("the virtual user's presence");
    assert_eq!(matrix.presence, PresenceState::Offline);

    // Refused: a Matrix user's token (their own client sets their presence), a state
    // that is none of the three.
    let (status, body) =
        s.put(&alice.token, None, "/presence", json!({ "presence": "online" })).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = s.put(CLIENT, vu, "/presence", json!({ "presence": "busy" })).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{body}");
}

/// The users typing in `room` in a sync response, if it says.
fn typing_in(sync: &Value, room: &ruma::RoomId) -> Option<Vec<String>> {
    sync["rooms"]["join"][room.as_str()]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.typing")
        .map(|e| {
            e["content"]["user_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        })
}

/// Syncs as `user` (long-polling from the first sync on) until `seen` holds of a
/// response; panics after 30 s.
async fn wait_for_sync(user: &User, what: &str, seen: impl Fn(&Value) -> bool) {
    let http = reqwest::Client::new();
    let base = user.client.base_url().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut since: Option<String> = None;
    loop {
        let mut url = format!("{base}/_matrix/client/v3/sync?timeout=2000");
        if let Some(s) = &since {
            url.push_str(&format!("&since={s}"));
        }
        let sync: Value = http
            .get(&url)
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("sync")
            .json()
            .await
            .expect("sync json");
        if seen(&sync) {
            return;
        }
        since = sync["next_batch"].as_str().map(str::to_owned);
        assert!(Instant::now() < deadline, "timed out after 30 s waiting for {what}");
    }
}
