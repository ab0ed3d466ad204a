//! `boardroom reindex`: rebuilds the board index from the homeserver alone — the rooms the
//! bot has joined, their current state and the tasks' threads — so that a lost database
//! loses no board, task or comment.

use ruma::{
    OwnedRoomId, RoomId, UserId,
    api::client::{
        membership::joined_rooms, relations::get_relating_events_with_rel_type,
        room::get_room_event,
    },
    events::{
        AnyMessageLikeEvent, AnyStateEvent, MessageLikeEvent, StateEvent, StaticEventContent,
        relation::RelationType,
    },
    serde::Raw,
};

use crate::{
    boards::index::{
        Indexed, apply_room_state, fetch_state, index_members_from_state, replaces, sent_by,
        tombstone_target,
    },
    config::Settings,
    domain::board::{RoomKind, RoomRecord},
    domain::task::{Comment, TaskEventContent, TaskRecord},
    domain::{EVENT_TYPE_PREFIX, bot::command_text},
    error::Result,
    matrix::{Auth, HomeserverClient, RetryPolicy},
    store::Store,
};

/// What a rebuild found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Rooms the bot is in.
    pub rooms: usize,
    /// Boards indexed.
    pub boards: usize,
    /// Board rooms indexed.
    pub board_rooms: usize,
    /// Tasks indexed.
    pub tasks: usize,
    /// Comments indexed.
    pub comments: usize,
}

/// What a reindex is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The state of every room the bot is in.
    Rooms,
    /// The threads of every task, for their comments.
    TaskThreads,
}

impl Phase {
    /// The phase in a few words.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Rooms => "reading rooms",
            Phase::TaskThreads => "reading task threads",
        }
    }
}

/// Rebuilds the board index. `progress(phase, done, total)` is called as rooms, then task
/// threads, are read.
pub async fn reindex(
    settings: &Settings,
    mut progress: impl FnMut(Phase, usize, usize),
) -> Result<Summary> {
    let store = Store::open(&settings.raw.database.path)?;
    let client = HomeserverClient::new(
        &settings.homeserver_url,
        Auth::Appservice(settings.as_token.clone()),
    )?
    .with_retry(RetryPolicy::SHORT);
    let rooms = client.send(joined_rooms::v3::Request::new(), None).await?.joined_rooms;
    let total = rooms.len();
    progress(Phase::Rooms, 0, total);
    let mut states: Vec<(OwnedRoomId, Vec<Raw<AnyStateEvent>>)> = Vec::with_capacity(total);
    for (i, room) in rooms.into_iter().enumerate() {
        let state = fetch_state(&client, &room).await?;
        let state = own_state(&client, &settings.bot_user_id, &room, state).await?;
        states.push((room, state));
        progress(Phase::Rooms, i + 1, total);
    }
    store.clear_board_index()?;
    store.clear_task_index()?;
    let (mut summary, threads) = rebuild(&store, &settings.bot_user_id, &states)?;
    summary.rooms = total;
    progress(Phase::TaskThreads, 0, threads.len());
    for (i, (room, slug, fields)) in threads.iter().enumerate() {
        summary.comments += reindex_comments(settings, &client, &store, room, slug, fields).await?;
        progress(Phase::TaskThreads, i + 1, threads.len());
    }
    // The rebuild wrote the boards' logs as if everything were new, and what the index
    // held before is gone: a live stream resuming from before must refetch.
    store.live_reset_all()?;
    Ok(summary)
}

/// How far back a state key's history is walked to find what the bot wrote there.
const MAX_STATE_HOPS: usize = 32;

/// `state` with Boardroom's own state (`dev.boardroom.*`) as the bot last wrote it: where
/// someone else wrote over it (while Boardroom was not running to put it back), the
/// events it replaced (`unsigned.replaces_state`) are read back to the bot's; where the
/// bot wrote nothing under that key, it is left out. Everything else is kept as it is.
async fn own_state(
    client: &HomeserverClient,
    bot: &UserId,
    room: &RoomId,
    state: Vec<Raw<AnyStateEvent>>,
) -> Result<Vec<Raw<AnyStateEvent>>> {
    let mut out = Vec::with_capacity(state.len());
    for raw in state {
        let ty = raw.get_field::<String>("type").ok().flatten().unwrap_or_default();
        if !ty.starts_with(EVENT_TYPE_PREFIX) || sent_by(&raw, bot) {
            out.push(raw);
            continue;
        }
        let key = raw.get_field::<String>("state_key").ok().flatten().unwrap_or_default();
        let mut current = raw;
        let mut found = None;
        for _ in 0..MAX_STATE_HOPS {
            let Some(previous) = current
                .get_field::<serde_json::Value>("unsigned")
                .ok()
                .flatten()
                .and_then(|u| u["replaces_state"].as_str().map(str::to_owned))
                .and_then(|id| ruma::OwnedEventId::try_from(id).ok())
            else {
                break;
            };
            let req = get_room_event::v3::Request::new(room.to_owned(), previous.clone());
            match client.send(req, None).await {
                Ok(resp) => current = resp.event.cast_unchecked(),
                Err(e) => {
                    tracing::warn!(room_id = %room, event_id = %previous, error = %e, "cannot read an earlier state event");
                    break;
                }
            }
            if sent_by(&current, bot) {
                found = Some(current);
                break;
            }
        }
        match found {
            Some(ours) => {
                tracing::warn!(room_id = %room, r#type = %ty, state_key = %key, "Boardroom state written over by someone else: indexing what the bot wrote before");
                out.push(ours);
            }
            None => {
                tracing::warn!(room_id = %room, r#type = %ty, state_key = %key, "ignoring Boardroom state the bot did not write")
            }
        }
    }
    Ok(out)
}

/// A task's thread to read comments from: the room, the board, the task's fields.
pub type Thread = (OwnedRoomId, String, TaskEventContent);

/// Builds the board and task index from rooms' full state (what `boardroom reindex` read),
/// by the same trust rules as the live index: only state `bot` wrote counts, a slug stays
/// with the first space that holds it, upgrades are followed only when the replacement
/// names its predecessor. Returns what it indexed and the task threads whose comments are
/// still to be read.
pub fn rebuild(
    store: &Store,
    bot: &UserId,
    states: &[(OwnedRoomId, Vec<Raw<AnyStateEvent>>)],
) -> Result<(Summary, Vec<Thread>)> {
    let mut summary = Summary { rooms: states.len(), ..Summary::default() };
    let mut threads = Vec::new();
    let mut replaced = Vec::new();
    for (room, state) in states {
        match apply_room_state(store, bot, room, state)? {
            Indexed::Board(_) => summary.boards += 1,
            Indexed::Room(_) => summary.board_rooms += 1,
            Indexed::Replaced { by, record } => replaced.push((room.clone(), by, record)),
            Indexed::Nothing => {}
        }
    }
    // An upgraded board room whose replacement carries no board state of its own (the bot
    // may lack power there): the old room's tombstone says where the board room went.
    // Follow chains of upgrades to the live room: each hop only when the room the
    // tombstone names says it replaced the one before (its `m.room.create` predecessor).
    for (from, by, record) in replaced {
        let Some((_, first)) = states.iter().find(|(r, _)| *r == by) else { continue };
        if !replaces(first, &from) {
            tracing::warn!(room_id = %from, replacement = %by, "not following a tombstone to a room that does not replace it");
            continue;
        }
        let mut by = by;
        let mut hops = 0;
        while let Some((_, state)) = states.iter().find(|(r, _)| *r == by)
            && let Some(next) =
                state.iter().filter_map(|r| r.deserialize().ok()).find_map(|e| tombstone_target(&e))
            && let Some((_, next_state)) = states.iter().find(|(r, _)| *r == next)
            && replaces(next_state, &by)
            && hops < 64
        {
            by = next;
            hops += 1;
        }
        if store.board_by_space(&by)?.is_some() {
            continue;
        }
        let Some((_, state)) = states.iter().find(|(r, _)| *r == by) else { continue };
        if store.room(&by)?.is_none() {
            // Without its own board state, the room still waits for the bot's power, and
            // its tasks are still in the last room that has board state.
            store.put_room(&by, &RoomRecord { pending_move_from: Some(from), ..record })?;
            index_members_from_state(store, &by, state)?;
            summary.board_rooms += 1;
        }
    }
    // Tasks: the `dev.boardroom.task` state of each board's tasks room, and the comments
    // in each task's thread. A tasks room that replaced others (upgrades) is read first,
    // then its predecessors: a task takes its fields from the newest room that has its
    // state, and its comments from its thread in every room.
    for board in store.boards()? {
        for (room, rec) in store.rooms_of(&board.slug)? {
            if rec.kind != RoomKind::Tasks {
                continue;
            }
            for room in predecessors(states, &room) {
                let Some((_, state)) = states.iter().find(|(r, _)| *r == room) else { continue };
                for raw in state {
                    // Only the task state the bot wrote counts.
                    if raw.get_field::<String>("type").ok().flatten().as_deref()
                        != Some(TaskEventContent::TYPE)
                        || !sent_by(raw, bot)
                    {
                        continue;
                    }
                    // The state key names the task, in canonical form.
                    let Some(n) = raw
                        .get_field::<String>("state_key")
                        .ok()
                        .flatten()
                        .and_then(|k| k.parse::<u64>().ok().filter(|n| n.to_string() == k))
                    else {
                        continue;
                    };
                    let Ok(Some(mut fields)) = raw.get_field::<TaskEventContent>("content") else {
                        continue;
                    };
                    fields.number = n;
                    if store.task(&board.slug, n)?.is_none() {
                        store.put_task(&TaskRecord {
                            board: board.slug.clone(),
                            fields: fields.clone(),
                            last_command: None,
                        })?;
                        summary.tasks += 1;
                    } else {
                        // An older root of a task that moved on: it still finds the task.
                        store.map_root(&fields.root_event_id, &board.slug, n)?;
                    }
                    threads.push((room.clone(), board.slug.clone(), fields));
                }
            }
        }
    }
    Ok((summary, threads))
}

/// `room`, then the rooms it replaced (each room's `m.room.create` predecessor, when that
/// room's tombstone names the room after it: an upgrade both sides agree on), as far as
/// the bot is in them.
fn predecessors(
    states: &[(OwnedRoomId, Vec<Raw<AnyStateEvent>>)],
    room: &RoomId,
) -> Vec<OwnedRoomId> {
    let mut chain = vec![room.to_owned()];
    while chain.len() < 64 {
        let Some(last) = chain.last().cloned() else { break };
        let Some((_, state)) = states.iter().find(|(r, _)| *r == last) else { break };
        let predecessor = state.iter().filter_map(|r| r.deserialize().ok()).find_map(|e| match e {
            AnyStateEvent::RoomCreate(StateEvent::Original(ev)) => {
                ev.content.predecessor.map(|p| p.room_id)
            }
            _ => None,
        });
        let Some(p) = predecessor.filter(|p| !chain.contains(p)) else { break };
        let Some((_, before)) = states.iter().find(|(r, _)| *r == p) else { break };
        let tombstone =
            before.iter().filter_map(|r| r.deserialize().ok()).find_map(|e| tombstone_target(&e));
        if tombstone.as_deref() != Some(&*last) {
            break;
        }
        chain.push(p);
    }
    chain
}

async fn reindex_comments(
    settings: &Settings,
    client: &HomeserverClient,
    store: &Store,
    room: &RoomId,
    slug: &str,
    task: &TaskEventContent,
) -> Result<usize> {
    let mut from: Option<String> = None;
    let mut count = 0;
    loop {
        let mut req = get_relating_events_with_rel_type::v1::Request::new(
            room.to_owned(),
            task.root_event_id.clone(),
            RelationType::Thread,
        );
        req.from = from.take();
        req.limit = Some(100u32.into());
        let resp = match client.send(req, None).await {
            Ok(r) => r,
            // The root is not in this room: a deleted task keeps its old root when it moves
            // to an upgraded room, and its thread stays behind.
            Err(e) if e.is_not_found() => return Ok(count),
            Err(e) => return Err(e.into()),
        };
        for raw in &resp.chunk {
            let Ok(AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(ev))) =
                raw.deserialize()
            else {
                continue; // redacted, or not a message
            };
            if ev.sender == settings.bot_user_id
                || command_text(settings, &ev.sender, &ev.content).is_some()
            {
                continue;
            }
            // The latest edit, which the homeserver bundles with the event.
            let edited =
                raw.get_field::<serde_json::Value>("unsigned").ok().flatten().and_then(|u| {
                    u["m.relations"]["m.replace"]["content"]["m.new_content"]["body"]
                        .as_str()
                        .map(str::to_owned)
                });
            let body = edited.unwrap_or_else(|| ev.content.body().to_owned());
            let comment = Comment {
                event_id: ev.event_id.clone(),
                author: ev.sender.clone(),
                body,
                ts: u64::from(ev.origin_server_ts.0),
            };
            store.put_comment(slug, task.number, &comment)?;
            count += 1;
        }
        match resp.next_batch {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use ruma::{room_id, user_id};
    use serde_json::{Value, json};

    use super::*;

    const BOT: &str = "@boardroom:localhost";
    const MALLORY: &str = "@mallory:localhost";

    fn ev(sender: &str, ty: &str, key: &str, content: Value) -> Raw<AnyStateEvent> {
        let v = json!({
            "type": ty, "sender": sender, "state_key": key, "content": content,
            "event_id": format!("${}{}{}", ty.len(), key.len(), sender.len()),
            "origin_server_ts": 1, "room_id": "!x:localhost",
        });
        Raw::from_json(serde_json::value::to_raw_value(&v).expect("raw"))
    }

    fn create(sender: &str, predecessor: Option<&str>) -> Raw<AnyStateEvent> {
        let mut c = json!({"room_version": "11", "creator": sender});
        if let Some(p) = predecessor {
            c["predecessor"] = json!({"room_id": p, "event_id": "$tomb"});
        }
        ev(sender, "m.room.create", "", c)
    }

    fn room(name: &str, kind: &str) -> Value {
        json!({"board": "launch", "name": name, "kind": kind})
    }

    fn task(n: u64, title: &str) -> Value {
        json!({
            "number": n, "title": title, "status": "todo", "root_event_id": format!("$root{n}"),
            "created_by": "@alice:localhost", "created_at": 0,
        })
    }

    fn tombstone(to: &str) -> Raw<AnyStateEvent> {
        ev(
            "@alice:localhost",
            "m.room.tombstone",
            "",
            json!({"body": "up", "replacement_room": to}),
        )
    }

    #[test]
    fn rebuild_from_full_state_ignores_boardroom_state_the_bot_did_not_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let bot = user_id!("@boardroom:localhost");
        let board = |owner: &str| {
            json!({"slug": "launch", "name": "Launch", "created_by": owner,
                   "created_by_event": "$cmd", "columns": ["todo", "done"]})
        };
        let member = |u: &str| ev(u, "m.room.member", u, json!({"membership": "join"}));
        let id = |s: &str| OwnedRoomId::try_from(s).expect("room id");
        let states = vec![
            // Mallory's room, read first: her board, tasks room and task state count for
            // nothing.
            (
                id("!attacker:localhost"),
                vec![
                    create(MALLORY, None),
                    member(MALLORY),
                    ev(MALLORY, "m.room.power_levels", "", json!({"users": {MALLORY: 100}})),
                    ev(MALLORY, "dev.boardroom.board", "", board(MALLORY)),
                    ev(MALLORY, "dev.boardroom.room", "", room("tasks", "tasks")),
                    ev(MALLORY, "dev.boardroom.task", "1", task(1, "Hijacked")),
                ],
            ),
            (
                id("!attacker2:localhost"),
                vec![
                    create(MALLORY, None),
                    ev(MALLORY, "dev.boardroom.room", "", room("tasks", "tasks")),
                ],
            ),
            (
                id("!space:localhost"),
                vec![
                    create(BOT, None),
                    member("@alice:localhost"),
                    member(MALLORY),
                    ev(
                        BOT,
                        "m.room.power_levels",
                        "",
                        json!({"users": {BOT: 100, "@alice:localhost": 100}}),
                    ),
                    ev(BOT, "dev.boardroom.board", "", board("@alice:localhost")),
                ],
            ),
            (
                id("!general:localhost"),
                vec![create(BOT, None), ev(BOT, "dev.boardroom.room", "", room("general", "chat"))],
            ),
            (
                id("!tasks:localhost"),
                vec![
                    create(BOT, Some("!oldtasks:localhost")),
                    ev(BOT, "dev.boardroom.room", "", room("tasks", "tasks")),
                    ev(BOT, "dev.boardroom.task", "1", task(1, "One")),
                    // Ghosts: a task Boardroom never wrote, a non-canonical key.
                    ev(MALLORY, "dev.boardroom.task", "2", task(2, "Ghost")),
                    ev(MALLORY, "dev.boardroom.task", "01", task(1, "Hijacked")),
                    // Emptied ghost state: no task.
                    ev(BOT, "dev.boardroom.task", "7", json!({})),
                ],
            ),
            // The room the tasks room says it replaced never named it in a tombstone: its
            // task state is not read.
            (
                id("!oldtasks:localhost"),
                vec![
                    create(BOT, None),
                    ev(BOT, "dev.boardroom.task", "5", task(5, "Not an upgrade")),
                ],
            ),
            // A board room whose tombstone names a room that does not replace it...
            (
                id("!old:localhost"),
                vec![
                    create(BOT, None),
                    ev(BOT, "dev.boardroom.room", "", room("old", "chat")),
                    tombstone("!evil:localhost"),
                ],
            ),
            (id("!evil:localhost"), vec![create(MALLORY, None), member(MALLORY)]),
            // ...and, the control, one whose replacement names it as its predecessor.
            (
                id("!notes:localhost"),
                vec![
                    create(BOT, None),
                    ev(BOT, "dev.boardroom.room", "", room("notes", "chat")),
                    tombstone("!notes2:localhost"),
                ],
            ),
            (id("!notes2:localhost"), vec![create("@alice:localhost", Some("!notes:localhost"))]),
        ];
        let (summary, threads) = rebuild(&store, bot, &states).expect("rebuild");
        assert_eq!((summary.boards, summary.board_rooms, summary.tasks), (1, 3, 1), "{summary:?}");
        let b = store.board("launch").expect("get").expect("board");
        assert_eq!(b.space_id, "!space:localhost");
        assert_eq!(b.created_by, "@alice:localhost");
        assert_eq!(b.role_of(user_id!("@mallory:localhost")).as_str(), "member");
        assert_eq!(b.role_of(user_id!("@alice:localhost")).as_str(), "owner");
        let mut rooms: Vec<String> = store
            .rooms_of("launch")
            .expect("rooms")
            .into_iter()
            .map(|(r, _)| r.to_string())
            .collect();
        rooms.sort();
        assert_eq!(rooms, ["!general:localhost", "!notes2:localhost", "!tasks:localhost"]);
        assert_eq!(
            store
                .room(room_id!("!notes2:localhost"))
                .expect("get")
                .and_then(|r| r.pending_move_from),
            Some(id("!notes:localhost"))
        );
        let t = store.task("launch", 1).expect("get").expect("task 1");
        assert_eq!(t.fields.title, "One");
        for n in [2, 5, 7] {
            assert!(store.task("launch", n).expect("get").is_none(), "task {n}");
        }
        assert_eq!(threads.len(), 1, "{threads:?}");
        assert!(store.board_by_space(room_id!("!attacker:localhost")).expect("get").is_none());
    }
}
