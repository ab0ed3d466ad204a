//! Catching up on events the homeserver never pushed.
//!
//! Synapse keeps the events it has not yet put in a transaction for an appservice in
//! memory, and loses them when it stops (its issue 11637): a command or a mention sent
//! just before a homeserver restart would never reach Boardroom. So after anything that
//! may hide such a loss, Boardroom reads the latest events of every board room as the bot
//! (`/messages`, newest first) back to a little before it last heard from the homeserver,
//! and stores those it has not seen through the same durable ingest as a transaction, in
//! the order they happened; events it has seen are skipped by id, as a redelivered
//! transaction's are. What starts a catch-up:
//! - the first transaction after Boardroom starts (the homeserver may have restarted
//!   meanwhile): it reads back to a little before the last transaction stored before the
//!   start;
//! - a transaction id below the last one (Synapse may number anew after a restart);
//! - the homeserver answering again after it could not be reached: Boardroom asks it for
//!   its versions every [`PROBE`] (every second once it fails), and a failed probe
//!   followed by an answer is an outage. Every retry waiting on its backoff then goes at
//!   once, too.

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use ruma::{
    OwnedRoomId, RoomId, api::client::message::get_message_events, events::AnyTimelineEvent,
    serde::Raw,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    context::Context,
    domain::now_ms,
    error::{Error, Result},
    matrix::HomeserverClient,
    store::inbound::{EntryKind, NewEntry},
};

/// How far before the last transaction the catch-up looks: events reach Boardroom a
/// little after they are sent, and clocks differ.
const MARGIN_MS: u64 = 2 * 60 * 1000;
/// How far back the catch-up at start-up looks when no transaction was ever stored.
const AT_START_MS: u64 = 15 * 60 * 1000;
/// The most events read back in one room.
const MAX_EVENTS: usize = 1000;
/// Events a page.
const PAGE: u32 = 100;

/// How often the homeserver is asked whether it is there.
pub const PROBE: Duration = Duration::from_secs(10);

/// Watches for a homeserver restart, and wakes the catch-up.
#[derive(Debug)]
pub struct Restarts {
    /// The last numeric transaction id; `u64::MAX` until the first.
    last_txn: AtomicU64,
    /// When the transaction before the restart arrived (ms since the epoch; 0: none yet).
    last_at: AtomicU64,
    /// From when the next catch-up reads (ms since the epoch).
    since: AtomicU64,
    /// When the last transaction before Boardroom started was stored (0: never).
    stored_before: u64,
    wake: Notify,
}

impl Default for Restarts {
    fn default() -> Self {
        Self::after(None)
    }
}

impl Restarts {
    /// A watcher for a Boardroom whose last stored transaction, before it started, was
    /// stored at `last_stored` (ms since the epoch): the catch-up at the first
    /// transaction reads back to a little before it.
    pub fn after(last_stored: Option<u64>) -> Self {
        Self {
            last_txn: AtomicU64::new(u64::MAX),
            last_at: AtomicU64::new(0),
            since: AtomicU64::new(0),
            stored_before: last_stored.unwrap_or(0),
            wake: Notify::new(),
        }
    }

    /// Notes a transaction's id, once it is stored. An id below the last (the homeserver
    /// numbers anew after a restart), or the first one, starts a catch-up.
    pub(crate) fn saw(&self, txn_id: &str) {
        let Ok(n) = txn_id.parse::<u64>() else { return };
        let now = now_ms();
        let before = self.last_at.swap(now, Ordering::SeqCst);
        let last = self.last_txn.swap(n, Ordering::SeqCst);
        if n >= last {
            return;
        }
        let since = if before == 0 {
            match self.stored_before {
                0 => now.saturating_sub(AT_START_MS),
                t => t.saturating_sub(MARGIN_MS),
            }
        } else {
            tracing::info!(txn_id = n, last_txn = last, "the homeserver restarted: catching up");
            before.saturating_sub(MARGIN_MS)
        };
        self.catch_up_from(since);
    }

    /// The homeserver answered again after it could not be reached; `last_answer` is when
    /// it last answered before (ms since the epoch).
    pub(crate) fn back(&self, last_answer: u64) {
        tracing::info!(
            down_ms = now_ms().saturating_sub(last_answer),
            "the homeserver is back: catching up"
        );
        self.catch_up_from(last_answer.saturating_sub(MARGIN_MS));
    }

    /// Wakes the catch-up, to read from `since` (or from earlier, when a catch-up from
    /// earlier is still waiting).
    fn catch_up_from(&self, since: u64) {
        let waiting = self.since.load(Ordering::SeqCst);
        let since = if waiting != 0 { since.min(waiting) } else { since };
        self.since.store(since, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Asks the homeserver for its versions every [`PROBE`], until `shutdown`; an answer after
/// a failure is an outage over: every retry waiting on its backoff goes at once
/// ([`HomeserverClient::homeserver_back`]) and a catch-up starts ([`Restarts::back`]).
pub(crate) async fn probe(
    client: HomeserverClient,
    restarts: std::sync::Arc<Restarts>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let client = client.with_retry(crate::matrix::RetryPolicy::NONE);
    let mut last_answer = now_ms();
    let mut failing = false;
    // The first time at once (readiness waits for it), then every `PROBE`.
    let mut next = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(next) => {},
            () = shutdown.cancelled() => return,
        }
        let req = ruma::api::client::discovery::get_supported_versions::Request::new();
        let answered = client.send(req, None).await;
        // Once it fails, every second: the outage's end is seen soon.
        next = if answered.is_err() { Duration::from_secs(1) } else { PROBE };
        match answered {
            Ok(_) => {
                metrics.homeserver_last_answer.set(now_ms() / 1000);
                if failing {
                    client.homeserver_back();
                    restarts.back(last_answer);
                }
                failing = false;
                last_answer = now_ms();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "the homeserver does not answer");
                }
                failing = true;
            }
        }
    }
}

/// What a catch-up did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// Board rooms read.
    pub rooms: usize,
    /// Events read back.
    pub read: usize,
    /// Events Boardroom had not seen, now stored for processing.
    pub stored: usize,
}

/// Runs a catch-up each time [`Restarts`] wakes it, until `shutdown`.
pub(crate) async fn run(
    ctx: std::sync::Arc<Context>,
    client: HomeserverClient,
    restarts: std::sync::Arc<Restarts>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = restarts.wake.notified() => {},
            () = shutdown.cancelled() => return,
        }
        // The homeserver's own redelivery first: what it still has is not read twice.
        tokio::time::sleep(SETTLE).await;
        let since = restarts.since.swap(0, Ordering::SeqCst);
        let span = tracing::info_span!("catch_up", since_ms = since);
        let work = tracing::Instrument::instrument(catch_up(&ctx, &client, since), span);
        tokio::select! {
            r = work => match r {
                Ok(c) => tracing::info!(rooms = c.rooms, read = c.read, stored = c.stored, "caught up"),
                Err(e) => tracing::warn!(error = %e, "catching up failed; the next restart tries again"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Reads every board room back to `since` and stores what Boardroom has not seen.
pub async fn catch_up(ctx: &Context, client: &HomeserverClient, since: u64) -> Result<CaughtUp> {
    let mut rooms: BTreeSet<OwnedRoomId> = BTreeSet::new();
    for board in ctx.store.boards()? {
        rooms.insert(board.space_id.clone());
        rooms.extend(ctx.store.rooms_of(&board.slug)?.into_iter().map(|(id, _)| id));
    }
    let mut done = CaughtUp::default();
    for room in &rooms {
        let events = read_back(client, room, since).await?;
        done.rooms += 1;
        done.read += events.len();
        done.stored += store(ctx, room, &events).await?;
    }
    if done.stored > 0 {
        ctx.inbound_notify.notify_one();
    }
    Ok(done)
}

/// `room`'s events back to `since` (at most [`MAX_EVENTS`]), oldest first.
async fn read_back(
    client: &HomeserverClient,
    room: &RoomId,
    since: u64,
) -> Result<Vec<Raw<AnyTimelineEvent>>> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    'pages: loop {
        let mut req = get_message_events::v3::Request::backward(room.to_owned());
        req.limit = PAGE.into();
        req.from.clone_from(&from);
        let resp = client.send(req, None).await.map_err(Error::from)?;
        for raw in resp.chunk {
            let ts: Option<u64> = raw.get_field("origin_server_ts").ok().flatten();
            if ts.is_some_and(|t| t < since) || out.len() >= MAX_EVENTS {
                break 'pages;
            }
            out.push(raw);
        }
        match resp.end {
            Some(end) if from.as_ref() != Some(&end) => from = Some(end),
            _ => break,
        }
    }
    out.reverse();
    Ok(out)
}

/// Stores the events of `room` Boardroom has not seen, as one transaction; how many.
async fn store(ctx: &Context, room: &RoomId, events: &[Raw<AnyTimelineEvent>]) -> Result<usize> {
    let mut owned = Vec::with_capacity(events.len());
    for raw in events {
        let Some(id) = raw.get_field::<String>("event_id").ok().flatten() else { continue };
        // The room id is the one asked for, whatever the event says.
        let json = raw.json().get().as_bytes().to_vec();
        let may_change_rooms = crate::inbound::peek::may_change_rooms(&json, &ctx.settings);
        owned.push((id, json, may_change_rooms));
    }
    if owned.is_empty() {
        return Ok(0);
    }
    let mut digest = Sha256::new();
    for (id, ..) in &owned {
        digest.update(id.as_bytes());
    }
    let digest: [u8; 32] = digest.finalize().into();
    let txn_id = format!("catch-up.{room}.{}", now_ms());
    // Counted before they are stored, as a transaction's.
    let changing =
        ctx.backlog.changing_rooms(owned.iter().filter(|(.., changing)| *changing).count() as u64);
    let room_id = room.to_string();
    let store = ctx.store.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let entries: Vec<NewEntry<'_>> = owned
            .iter()
            .map(|(id, json, may_change_rooms)| NewEntry {
                kind: EntryKind::Timeline,
                room_id: &room_id,
                event_id: Some(id),
                json,
                may_change_rooms: *may_change_rooms,
                // The room is the one asked for, not read from the event: processing reads
                // the event in full.
                plain: false,
            })
            .collect();
        store.ingest(&txn_id, digest, &entries)
    })
    .await
    .map_err(|e| Error::Internal(format!("catch-up ingest: {e}")))??;
    changing.stored(outcome.may_change_rooms as u64);
    ctx.metrics.events_accepted.inc_by(outcome.accepted as u64);
    ctx.backlog.stored(outcome.accepted as u64);
    if outcome.accepted > 0 {
        tracing::info!(room_id = %room, stored = outcome.accepted, "events the homeserver never pushed");
    }
    Ok(outcome.accepted)
}

/// How long to wait before a catch-up, so that the homeserver's own redelivery comes first.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    async fn woken(r: &Restarts) -> bool {
        tokio::time::timeout(Duration::from_millis(20), r.wake.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn the_first_transaction_and_an_id_that_goes_back_start_a_catch_up() {
        let r = Restarts::default();
        let before = now_ms();
        r.saw("5");
        assert!(woken(&r).await, "the first transaction after start-up");
        let since = r.since.load(Ordering::SeqCst);
        assert!(since <= before - AT_START_MS + 1000 && since + AT_START_MS + 1000 >= before);
        r.since.store(0, Ordering::SeqCst); // the catch-up took it
        r.saw("6");
        r.saw("7");
        r.saw("7");
        assert!(!woken(&r).await, "ids that go on, or repeat (a retry), are no restart");
        r.saw("not-a-number");
        assert!(!woken(&r).await);
        let last_at = r.last_at.load(Ordering::SeqCst);
        r.saw("1");
        assert!(woken(&r).await, "numbered anew: the homeserver restarted");
        assert_eq!(r.since.load(Ordering::SeqCst), last_at - MARGIN_MS);
        r.saw("2");
        assert!(!woken(&r).await);
    }

    #[tokio::test]
    async fn at_start_up_it_reads_back_to_before_the_last_stored_transaction() {
        let r = Restarts::after(Some(50_000_000));
        r.saw("9");
        assert!(woken(&r).await);
        assert_eq!(r.since.load(Ordering::SeqCst), 50_000_000 - MARGIN_MS);
    }

    #[tokio::test]
    async fn an_answer_after_an_outage_catches_up_from_before_it_and_waiting_ones_merge() {
        let r = Restarts::default();
        r.back(10_000_000);
        assert!(woken(&r).await);
        assert_eq!(r.since.load(Ordering::SeqCst), 10_000_000 - MARGIN_MS);
        // Another before the catch-up ran: it reads from the earlier of the two.
        r.back(20_000_000);
        assert_eq!(r.since.load(Ordering::SeqCst), 10_000_000 - MARGIN_MS);
    }
}
