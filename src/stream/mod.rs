//! A board's live stream for one subscriber: what it is sent, in order, exactly once.
//!
//! The subscriber follows the board's live tail from before it reads the log, and keeps a
//! cursor: the last logged id it has dealt with (sent, or not its to see). Ids of a board's
//! log grow by one, so an entry from the tail that is not the next id means the subscriber
//! missed some (it subscribed while they were written, or a publication failed): it reads
//! them from the log, where every published entry already is. Entries at or below the
//! cursor are skipped. So the seam between replay and live has no gap and no duplicate.
//!
//! [`events`] builds the events of what the homeserver sends (messages, typing,
//! presence); the store logs the rest with the changes they tell of.

pub(crate) mod events;

use std::{collections::VecDeque, sync::Arc};

use ruma::{OwnedUserId, events::room::member::MembershipState};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{
    boards::access,
    chat::presence,
    context::Context,
    domain::{
        op::{BoardRef, OpResult, OpSpec, Permission, Request},
        stream::{PresenceEvent, StreamData, StreamEvent, TypingEvent},
    },
    store::live::{LiveEntry, Resume},
};

/// Following a board's live stream.
pub(crate) const FOLLOW: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "follow its live stream" };

/// Log entries read at once while catching up.
const PAGE: usize = 256;

/// What a subscriber is sent next.
#[derive(Debug)]
pub(crate) enum Next {
    /// An event it may see.
    Entry(Arc<LiveEntry>),
    /// Events it would have been sent are gone (trimmed, or the index was rebuilt), or
    /// the id it resumed from was never handed out: refetch, then carry on from `id`.
    Reset {
        /// The id to carry on from.
        id: u64,
    },
    /// The replay is over; what follows is live. The id is where a resume would start.
    Ready {
        /// The last logged id dealt with.
        id: u64,
    },
    /// The stream ends: the subscriber left the board, or fell too far behind.
    End(Ended),
}

/// Why a stream ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The subscriber is no longer a member of the board.
    Removed,
    /// It fell behind by more than the board's buffer; it resumes from its last id.
    Behind,
}

/// One subscriber's place in a board's stream.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The board.
    pub slug: String,
    user: OwnedUserId,
    tail: broadcast::Receiver<Arc<LiveEntry>>,
    cursor: u64,
    /// Reading the log up to its end before following the tail.
    catching_up: bool,
    /// Entries read from the log, or the snapshot, to send before anything else.
    queued: VecDeque<Next>,
    /// The replay is over and `ready` was sent.
    ready: bool,
    /// The last entry sent removed the subscriber: the stream ends after it.
    ending: bool,
}

/// Opens `at`'s stream for the actor of `req`, resuming after `last_event_id` when given
/// (else from now). The actor must be a member of the board (a client's virtual user:
/// within its client's boards).
pub(crate) fn subscribe(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    last_event_id: Option<u64>,
) -> OpResult<Subscription> {
    let board = access::board(ctx, req.actor, at, &FOLLOW)?;
    let slug = board.slug;
    // The tail first: whatever is written from here on reaches it.
    let tail = ctx.store.live_subscribe(&slug)?;
    let head = ctx.store.live_head(&slug)?;
    let mut queued = VecDeque::new();
    let cursor = match last_event_id {
        None => head,
        Some(after) => match ctx.store.live_resume(&slug, after)? {
            Resume::FromLog => after,
            Resume::Reset => {
                queued.push_back(Next::Reset { id: head });
                head
            }
        },
    };
    let sub = Subscription {
        slug,
        user: req.actor.user_id.clone(),
        tail,
        cursor,
        catching_up: true,
        queued,
        ready: false,
        ending: false,
    };
    Ok(sub)
}

impl Subscription {
    /// The last logged id dealt with: where a resume would start.
    pub(crate) fn cursor(&self) -> u64 {
        self.cursor
    }

    /// What to send next. Cancel-safe: it waits only on the board's tail.
    pub(crate) async fn next(&mut self, ctx: &Context, req: &Request<'_>) -> Next {
        loop {
            if self.ending {
                return Next::End(Ended::Removed);
            }
            if let Some(next) = self.queued.pop_front() {
                if let Next::Entry(e) = &next
                    && e.event.is_logged()
                {
                    self.note_removal(ctx, e);
                }
                return next;
            }
            if self.catching_up {
                match self.read_log(ctx) {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.catching_up = false;
                        if !self.ready {
                            self.ready = true;
                            self.snapshot(ctx, req);
                            self.queued.push_back(Next::Ready { id: self.cursor });
                        }
                        continue;
                    }
                    Err(e) => {
                        // The log cannot be read now: the subscriber resumes later.
                        tracing::warn!(error = %e, board = %self.slug, "cannot read the live log");
                        return Next::End(Ended::Behind);
                    }
                }
            }
            let entry = match self.tail.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {
                    return Next::End(Ended::Behind);
                }
            };
            if !entry.event.is_logged() {
                if entry.visible_to(&self.user) {
                    return Next::Entry(entry);
                }
                continue;
            }
            if entry.id <= self.cursor {
                continue;
            }
            if entry.id > self.cursor + 1 {
                // Some were missed: they are in the log, this one with them.
                self.catching_up = true;
                continue;
            }
            self.cursor = entry.id;
            if entry.visible_to(&self.user) {
                self.note_removal(ctx, &entry);
                return Next::Entry(entry);
            }
        }
    }

    /// Ends the stream after `entry` if it took the subscriber out of the board and they
    /// are still out (a replayed removal of someone who came back does not end it).
    fn note_removal(&mut self, ctx: &Context, entry: &LiveEntry) {
        if let StreamData::Membership(m) = &entry.event.data
            && m.removes(&self.user)
        {
            let back = ctx
                .store
                .board(&self.slug)
                .ok()
                .flatten()
                .and_then(|b| ctx.store.membership(&b.space_id, &self.user).ok().flatten());
            self.ending = back != Some(MembershipState::Join);
        }
    }

    /// Reads the next page of the log after the cursor into the queue. `false` once the
    /// log has nothing more.
    fn read_log(&mut self, ctx: &Context) -> crate::Result<bool> {
        let page = ctx.store.live_read(&self.slug, self.cursor, PAGE)?;
        let Some((first, _)) = page.first() else { return Ok(false) };
        if *first != self.cursor + 1 {
            // Trimmed while the subscriber was away (or between its checks).
            let head = ctx.store.live_head(&self.slug)?;
            self.cursor = head;
            self.queued.push_back(Next::Reset { id: head });
            return Ok(true);
        }
        let mut private = std::collections::HashMap::new();
        for (id, event) in page {
            self.cursor = id;
            if !self.may_see_logged(ctx, &event, &mut private)? {
                continue;
            }
            self.queued.push_back(Next::Entry(Arc::new(LiveEntry::new(id, event))));
        }
        Ok(true)
    }

    /// Whether the subscriber may see a logged event read back from the log: its own
    /// notifications whose new entry is still in its inbox, and a private room's events
    /// while it is joined there now.
    fn may_see_logged(
        &self,
        ctx: &Context,
        event: &StreamEvent,
        private: &mut std::collections::HashMap<ruma::OwnedRoomId, bool>,
    ) -> crate::Result<bool> {
        if event.only.as_ref().is_some_and(|o| *o != self.user) {
            return Ok(false);
        }
        // A new inbox entry removed since it was logged (its message redacted).
        if let StreamData::Notification(n) = &event.data
            && n.entry.is_some()
        {
            return Ok(false);
        }
        let Some(room) = &event.private_room else { return Ok(true) };
        if let Some(seen) = private.get(room) {
            return Ok(*seen);
        }
        let joined = matches!(ctx.store.membership(room, &self.user)?, Some(MembershipState::Join));
        private.insert(room.clone(), joined);
        Ok(joined)
    }

    /// Who types where and who is online, as of now, with the cursor's id: sent on every
    /// (re)connect, since neither is logged.
    fn snapshot(&mut self, ctx: &Context, req: &Request<'_>) {
        let found = match presence::board(ctx, req, BoardRef::Slug(&self.slug)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = ?e, board = %self.slug, "no presence snapshot");
                return;
            }
        };
        let rooms = ctx.store.rooms_of(&self.slug).unwrap_or_default();
        for t in found.typing {
            let Some((room_id, record)) = rooms.iter().find(|(_, r)| r.name == t.room) else {
                continue;
            };
            // A private room's typing, as its messages, only while the subscriber has
            // joined it (the presence answer lists it to those invited too).
            if record.private
                && !matches!(
                    ctx.store.membership(room_id, &self.user),
                    Ok(Some(MembershipState::Join))
                )
            {
                continue;
            }
            let event = StreamEvent::public(StreamData::Typing(TypingEvent {
                room: t.room,
                room_id: room_id.clone(),
                user_ids: t.users,
            }));
            self.queued.push_back(Next::Entry(Arc::new(LiveEntry::new(self.cursor, event))));
        }
        for m in found.members {
            let event = StreamEvent::public(StreamData::Presence(PresenceEvent {
                user_id: m.user_id,
                presence: m.presence,
            }));
            self.queued.push_back(Next::Entry(Arc::new(LiveEntry::new(self.cursor, event))));
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{RoomId, owned_user_id};

    use super::*;
    use crate::{
        Config,
        app::App,
        domain::{board::BoardRecord, op::Actor, task::TaskRecord},
    };

    /// A board `launch` with Alice as its member, and a `[live]` buffer of 4 events.
    fn board(dir: &std::path::Path) -> App {
        let config =
            Config::offline(&dir.join("db"), "[live]\nbuffer_events = 4\n").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let space = RoomId::parse("!space:localhost").expect("room id");
        let store = &app.ctx.store;
        store
            .put_board(&BoardRecord::example("launch", &space, &owned_user_id!("@alice:localhost")))
            .expect("board");
        let alice = owned_user_id!("@alice:localhost");
        store
            .set_membership(&space, &alice, &MembershipState::Join, None, Some("launch"))
            .expect("member");
        app
    }

    /// Everything up to `ready`, the logged entries' task numbers in order.
    async fn until_ready(sub: &mut Subscription, ctx: &Context, req: &Request<'_>) -> Vec<u64> {
        let mut tasks = Vec::new();
        loop {
            match sub.next(ctx, req).await {
                Next::Ready { .. } => return tasks,
                Next::Entry(e) => {
                    if let StreamData::Task(t) = &e.event.data {
                        tasks.push(t.task.fields.number);
                    }
                }
                other => panic!("before ready: {other:?}"),
            }
        }
    }

    /// A subscriber reading its notifications back from the log gets each new entry whole
    /// (the log holds it by id), and not one whose message was redacted since.
    #[tokio::test]
    async fn a_replay_shows_notifications_whole_and_not_one_taken_away_since() {
        use crate::domain::inbox::{Kind, Notification};
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board(dir.path());
        let ctx = &app.ctx;
        let alice = owned_user_id!("@alice:localhost");
        let room = ruma::owned_room_id!("!general:localhost");
        let entry = |event: &str| Notification {
            id: 0,
            user_id: alice.clone(),
            kind: Kind::Mention,
            board: "launch".into(),
            room_id: room.clone(),
            thread_root: None,
            event_id: event.try_into().expect("event id"),
            sender: owned_user_id!("@bob:localhost"),
            excerpt: format!("look at {event}"),
            ts: 1,
            read: false,
            seq: 1,
        };
        let from = ctx.store.live_head("launch").expect("head");
        let added = ctx.store.add_notifications(vec![entry("$kept"), entry("$redacted")]);
        assert_eq!(added.expect("added").len(), 2);
        let removed = ctx.store.remove_notifications_of(&room, ruma::event_id!("$redacted"));
        assert_eq!(removed.expect("removed"), 1);

        let actor = Actor { user_id: alice.clone(), client: None, token: None };
        let cause = ruma::event_id!("$replay");
        let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
        let mut sub =
            subscribe(ctx, &req, BoardRef::Slug("launch"), Some(from)).expect("subscribe");
        let mut shown = Vec::new();
        loop {
            match sub.next(ctx, &req).await {
                Next::Ready { .. } => break,
                Next::Entry(e) => match &e.event.data {
                    StreamData::Notification(n) => shown.push((
                        e.id,
                        n.notification.as_ref().map(|n| n.excerpt.clone()),
                        n.unread_count,
                    )),
                    other => panic!("only notifications were logged: {other:?}"),
                },
                other => panic!("before ready: {other:?}"),
            }
        }
        assert_eq!(shown, [(from + 1, Some("look at $kept".to_owned()), 1)]);

        // Another member replaying the same log sees neither: an entry is looked up only
        // in the inbox of the event's owner, and shown only to them.
        let bob = owned_user_id!("@bob:localhost");
        let space = RoomId::parse("!space:localhost").expect("room id");
        ctx.store
            .set_membership(&space, &bob, &MembershipState::Join, None, Some("launch"))
            .expect("member");
        let actor = Actor { user_id: bob, client: None, token: None };
        let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
        let mut sub =
            subscribe(ctx, &req, BoardRef::Slug("launch"), Some(from)).expect("subscribe");
        loop {
            match sub.next(ctx, &req).await {
                Next::Ready { .. } => break,
                Next::Entry(e) => {
                    assert!(!matches!(e.event.data, StreamData::Notification(_)), "{e:?}")
                }
                other => panic!("before ready: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_is_ended_and_resumes_from_the_log_losing_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board(dir.path());
        let ctx = &app.ctx;
        let actor =
            Actor { user_id: owned_user_id!("@alice:localhost"), client: None, token: None };
        let cause = ruma::event_id!("$stream");
        let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
        let mut slow = subscribe(ctx, &req, BoardRef::Slug("launch"), None).expect("subscribe");
        let mut quick = subscribe(ctx, &req, BoardRef::Slug("launch"), None).expect("subscribe");
        assert!(until_ready(&mut slow, ctx, &req).await.is_empty());
        assert!(until_ready(&mut quick, ctx, &req).await.is_empty());
        let from = slow.cursor();
        // Ten changes while the slow one reads nothing: past its buffer of four.
        for n in 1..=10 {
            let root = ruma::OwnedEventId::try_from(format!("$root{n}")).expect("event id");
            ctx.store.put_task(&TaskRecord::example("launch", n, root)).expect("task");
            // The quick one keeps up: it gets each as it comes.
            match quick.next(ctx, &req).await {
                Next::Entry(e) => assert!(
                    matches!(&e.event.data, StreamData::Task(t) if t.task.fields.number == n)
                ),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(slow.next(ctx, &req).await, Next::End(Ended::Behind)));
        // It comes back with its last id and gets the ten, in order, once.
        let mut again =
            subscribe(ctx, &req, BoardRef::Slug("launch"), Some(from)).expect("subscribe");
        assert_eq!(until_ready(&mut again, ctx, &req).await, (1..=10).collect::<Vec<_>>());
    }
}
