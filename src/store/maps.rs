//! Every column family, declared in one table. Names read `key_value`.

use Backup::{Export, Reindex};
use KeyPart::{Bytes as B, Str as S, U64 as U};
use Writes::{Busy, Rare};

/// One column family: its name, what it holds, and what a backup does with it.
#[derive(Debug, Clone, Copy)]
pub struct MapDesc {
    /// The column family's name.
    pub name: &'static str,
    /// Key → value, in words.
    pub doc: &'static str,
    /// Whether `boardroom export` writes it, or `boardroom reindex` rebuilds it.
    pub backup: Backup,
    /// How often it is written: the size of the blocks its write buffer takes.
    pub writes: Writes,
}

/// How often a column family is written (`store::open_db` sizes its write buffer's blocks
/// by it). Every map says, so that a new busy one cannot be left with small blocks, nor a
/// rare one count a mebibyte against the write buffers' budget for a few records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// With every event (ingest's queue and duplicate check) or every board message (the
    /// live log, the inbox, the members and comments): its buffer fills.
    Busy,
    /// Now and then (a board, a task, a webhook delivery, a setting).
    Rare,
}

/// What a backup does with a column family (`store::backup`, docs/operations.md). Every
/// map says, so that a new one cannot be left out of backups unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backup {
    /// Boardroom's own state, found nowhere else (what it was given and acknowledged, what
    /// it keeps of its own): `boardroom export` writes it, with keys made of these parts
    /// (shown readable in the export where the key reads back as them).
    Export(&'static [KeyPart]),
    /// Rebuilt from the homeserver by `boardroom reindex`: left out of exports.
    Reindex,
}

/// One part of a key, as [`codec::KeyBuf`](super::codec::KeyBuf) writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// A string (up to the next separator).
    Str,
    /// A big-endian `u64`.
    U64,
    /// The rest of the key, raw bytes (a digest).
    Bytes,
}

/// Schema version, counters: `name` → value.
pub const GLOBAL: &str = "global";
/// Appservice transactions already stored: `txn_id` → SHA-256 of the body, write time
/// (kept for `inbound::SEEN_RETENTION`).
pub const TXNID_DIGEST: &str = "txnid_digest";
/// Timeline events already accepted (deduplication): `event_id` → inbound seq, write time
/// (kept for `inbound::SEEN_RETENTION`).
pub const EVENTID_SEQ: &str = "eventid_seq";
/// Accepted, not yet processed: `seq` → kind, room id and the raw event.
pub const SEQ_PENDING: &str = "seq_pending";
/// Outbound requests the homeserver has not accepted yet: `seq` → request.
pub const SEQ_OUTBOX: &str = "seq_outbox";
/// Outbound requests the homeserver refused for good: `seq` → request and error.
pub const SEQ_OUTBOXDEAD: &str = "seq_outboxdead";
/// Outbox messages sent at least once: `seq` → when first sent (ms). Such a message may
/// have landed although no answer came back: it is looked for before it is sent again.
pub const SEQ_OUTBOXSENT: &str = "seq_outboxsent";

/// Boards: `slug` → board record (space, name, creators, power levels).
pub const SLUG_BOARD: &str = "slug_board";
/// Reverse of `slug_board`: `space_id` → slug.
pub const SPACEID_SLUG: &str = "spaceid_slug";
/// Board rooms: `room_id` → room record (board, name, kind, private).
pub const ROOMID_BOARDROOM: &str = "roomid_boardroom";
/// Reverse of `roomid_boardroom`: `slug, room_id` → ().
pub const SLUGROOMID: &str = "slugroomid";
/// Membership in board spaces and rooms: `room_id, user_id` → membership.
pub const ROOMUSERID_MEMBERSHIP: &str = "roomuserid_membership";
/// Boards a user belongs to (joined the space): `user_id, slug` → ().
pub const USERID_SLUG: &str = "userid_slug";
/// The names joined members go by in board spaces and rooms, lowercase (localpart and
/// display name): `room_id, name, user_id` → (). Mentions and autocomplete look names up
/// here instead of reading every member.
pub const ROOMNAMEUSER_MEMBER: &str = "roomnameuser_member";

/// The next task number of each board: `slug` → u64.
pub const SLUG_TASKNEXT: &str = "slug_tasknext";
/// Tasks that are not deleted, per column: `slug, status` → u64, kept with every task
/// write, so counts never read the tasks.
pub const SLUGSTATUS_COUNT: &str = "slugstatus_count";
/// Tasks by column, assignee and label, for queries: `slug, facet, value, number` → (),
/// where the facet is `s` (status), `a` (assignee) or `l` (label); deleted tasks have none.
pub const SLUGFACETNUM_TASK: &str = "slugfacetnum_task";
/// Tasks: `slug, number` → task record (canonical fields and the last command applied).
pub const SLUGNUM_TASK: &str = "slugnum_task";
/// Reverse: a task's thread root `event_id` → `slug, number`.
pub const ROOTEVENT_SLUGNUM: &str = "rootevent_slugnum";
/// Tasks by the `!task new` command that created them: command `event_id` → `slug,
/// number`. A command run again after a crash finds its task instead of making another.
pub const CMDEVENT_SLUGNUM: &str = "cmdevent_slugnum";
/// Task numbers taken by `!task new` commands not finished yet: command `event_id` →
/// `slug, number`. Written (with the board's counter moved past the number) before the
/// task's root is sent, so a command run again after a crash keeps its number.
pub const CMDEVENT_RESERVEDNUM: &str = "cmdevent_reservednum";
/// Comments in order: `slug, number, ts, event_id` → comment.
pub const SLUGNUMTS_COMMENT: &str = "slugnumts_comment";
/// Reverse: a comment's `event_id` → its key in `slugnumts_comment`.
pub const EVENTID_COMMENTKEY: &str = "eventid_commentkey";
/// Who commented on a task: `slug, number, author, event_id` → (). A task's commenters
/// are listed with one seek each, however many comments it has.
pub const SLUGNUMUSEREVENT_COMMENT: &str = "slugnumuserevent_comment";
/// Comments per task: `slug, number` → u64, kept with every comment written or removed,
/// so a count reads one key however many comments there are. A task without an entry
/// (none of its comments was written since the map exists, or it has none) has its
/// comments counted; it gets its entry with its next comment.
pub const SLUGNUM_COMMENTCOUNT: &str = "slugnum_commentcount";

/// Inboxes: `user_id, id` → notification.
pub const USERIDID_NOTIFICATION: &str = "useridid_notification";
/// Unread counts: `user_id` → u64, kept with every inbox write (O(1) to read).
pub const USERID_UNREAD: &str = "userid_unread";
/// Unread entries by room, for read receipts: `user_id, room_id, seq, id` → ().
pub const USERROOMSEQID_UNREAD: &str = "userroomseqid_unread";
/// Who an event notified: `event_id, user_id` → id.
pub const EVENTIDUSER_NOTIFICATION: &str = "eventiduser_notification";

/// Virtual users and the API client that owns them (the first to use them):
/// `user_id` → owner record (client name, registered with the homeserver).
pub const USERID_VIRTUALUSER: &str = "userid_virtualuser";
/// Reverse of `userid_virtualuser`: `client, user_id` → (). Counts a client's virtual users.
pub const CLIENTUSERID_VIRTUALUSER: &str = "clientuserid_virtualuser";

/// Signed webhook deliveries applied: `source, delivery id` → write time, then the answer
/// given (JSON). Kept for `inbound::SEEN_RETENTION`: a delivery sent again within it is
/// answered the same and not applied twice.
pub const SOURCEDELIVERY_ANSWER: &str = "sourcedelivery_answer";
/// The signed message of each applied delivery: `source, SHA-256(timestamp . body)` →
/// write time, then its delivery id. A captured delivery replayed under another delivery
/// id (the id is not signed) is found here. Kept for `inbound::SEEN_RETENTION`.
pub const SOURCESIGNED_DELIVERY: &str = "sourcesigned_delivery";

/// Each board's live-stream log: `slug, id` → the event (JSON). Appended in the same
/// write as the change it tells of; trimmed by age and count (`[live]`).
pub const SLUGID_LIVE: &str = "slugid_live";
/// The highest id no longer in a board's log (trimmed, or given up by a reindex): `slug` →
/// u64. A resume from before it is told to refetch.
pub const SLUG_LIVEFLOOR: &str = "slug_livefloor";

/// Matrix events already in their board's log (messages, redactions, which change no
/// index to log them with): `event_id` → write time. A replay after a crash logs nothing
/// twice. Kept for `inbound::SEEN_RETENTION`.
pub const EVENTID_LOGGED: &str = "eventid_logged";

/// What the bot has told a room once about what it cannot do there (an encrypted room it
/// cannot read, a message it could not decrypt): `room_id, kind` → when (ms).
pub const ROOMIDKIND_NOTICE: &str = "roomidkind_notice";

/// The catalog.
pub const MAPS: &[MapDesc] = &[
    MapDesc {
        name: GLOBAL,
        doc: "name → value (schema version)",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: TXNID_DIGEST,
        doc: "appservice txn id → SHA-256 of its body, write time",
        backup: Export(&[S]),
        writes: Busy,
    },
    MapDesc {
        name: EVENTID_SEQ,
        doc: "event id → inbound seq, write time (deduplication)",
        backup: Export(&[S]),
        writes: Busy,
    },
    MapDesc {
        name: SEQ_PENDING,
        doc: "inbound seq → event awaiting processing",
        backup: Export(&[U]),
        writes: Busy,
    },
    MapDesc {
        name: SEQ_OUTBOX,
        doc: "outbound seq → request not yet accepted",
        backup: Export(&[U]),
        writes: Rare,
    },
    MapDesc {
        name: SEQ_OUTBOXDEAD,
        doc: "outbound seq → request refused for good",
        backup: Export(&[U]),
        writes: Rare,
    },
    MapDesc {
        name: SEQ_OUTBOXSENT,
        doc: "outbound seq → when the message was first sent (ms)",
        backup: Export(&[U]),
        writes: Rare,
    },
    MapDesc { name: SLUG_BOARD, doc: "board slug → board record", backup: Reindex, writes: Rare },
    MapDesc {
        name: SPACEID_SLUG,
        doc: "space room id → board slug",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: ROOMID_BOARDROOM,
        doc: "room id → board room record",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc { name: SLUGROOMID, doc: "board slug, room id → ()", backup: Reindex, writes: Rare },
    MapDesc {
        name: ROOMUSERID_MEMBERSHIP,
        doc: "board space or room id, user id → membership",
        backup: Reindex,
        writes: Busy,
    },
    MapDesc {
        name: USERID_SLUG,
        doc: "user id, board slug → () for joined members",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: ROOMNAMEUSER_MEMBER,
        doc: "room id, lowercase localpart or display name, user id → () for joined members",
        backup: Reindex,
        writes: Busy,
    },
    MapDesc {
        name: SLUG_TASKNEXT,
        doc: "board slug → next task number",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: SLUGSTATUS_COUNT,
        doc: "board slug, status → tasks not deleted there",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: SLUGNUM_TASK,
        doc: "board slug, task number → task record",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: SLUGFACETNUM_TASK,
        doc: "board slug, facet (status, assignee, label), value, task number → ()",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: ROOTEVENT_SLUGNUM,
        doc: "thread root event id → board slug, task number",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: SLUGNUMTS_COMMENT,
        doc: "board slug, task number, ts, event id → comment",
        backup: Reindex,
        writes: Busy,
    },
    MapDesc {
        name: EVENTID_COMMENTKEY,
        doc: "comment event id → its comment key",
        backup: Reindex,
        writes: Busy,
    },
    MapDesc {
        name: SLUGNUMUSEREVENT_COMMENT,
        doc: "board slug, task number, author, comment event id → ()",
        backup: Reindex,
        writes: Busy,
    },
    MapDesc {
        name: SLUGNUM_COMMENTCOUNT,
        doc: "board slug, task number → comment count",
        backup: Reindex,
        writes: Rare,
    },
    MapDesc {
        name: CMDEVENT_SLUGNUM,
        doc: "`!task new` event id → board slug, task number",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: CMDEVENT_RESERVEDNUM,
        doc: "unfinished `!task new` event id → board slug, reserved task number",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: USERIDID_NOTIFICATION,
        doc: "user id, notification id → notification",
        backup: Export(&[S, U]),
        writes: Busy,
    },
    MapDesc {
        name: USERID_UNREAD,
        doc: "user id → unread count",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: USERROOMSEQID_UNREAD,
        doc: "user id, room id, seq, notification id → ()",
        backup: Export(&[S, S, U, U]),
        writes: Busy,
    },
    MapDesc {
        name: EVENTIDUSER_NOTIFICATION,
        doc: "event id, user id → notification id",
        backup: Export(&[S, S]),
        writes: Busy,
    },
    MapDesc {
        name: USERID_VIRTUALUSER,
        doc: "virtual user id → owning API client, registered with the homeserver",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: CLIENTUSERID_VIRTUALUSER,
        doc: "API client name, virtual user id → ()",
        backup: Export(&[S, S]),
        writes: Rare,
    },
    MapDesc {
        name: SOURCEDELIVERY_ANSWER,
        doc: "webhook source, delivery id → write time, answer (deduplication)",
        backup: Export(&[S, S]),
        writes: Rare,
    },
    MapDesc {
        name: SOURCESIGNED_DELIVERY,
        doc: "webhook source, SHA-256 of the signed message → write time, delivery id",
        backup: Export(&[S, B]),
        writes: Rare,
    },
    MapDesc {
        name: SLUGID_LIVE,
        doc: "board slug, event id → live-stream event",
        backup: Export(&[S, U]),
        writes: Busy,
    },
    MapDesc {
        name: SLUG_LIVEFLOOR,
        doc: "board slug → highest event id no longer logged",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: EVENTID_LOGGED,
        doc: "Matrix event id → write time, once in its board's log",
        backup: Export(&[S]),
        writes: Rare,
    },
    MapDesc {
        name: ROOMIDKIND_NOTICE,
        doc: "room id, kind → when the bot told the room what it cannot do there",
        backup: Export(&[S, S]),
        writes: Rare,
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::MAPS;

    /// The column families `docs/ARCHITECTURE.md` lists in its table (rows starting with a
    /// backquoted name, under "### Column families").
    fn documented() -> Vec<String> {
        let doc = include_str!("../../docs/ARCHITECTURE.md");
        let Some((_, section)) = doc.split_once("### Column families") else {
            return Vec::new();
        };
        section
            .lines()
            .skip_while(|l| !l.starts_with("| column family"))
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .filter_map(|l| l.trim_start_matches("| `").split_once('`').map(|(n, _)| n.into()))
            .collect()
    }

    #[test]
    fn the_documented_column_families_are_the_catalog() {
        let documented = documented();
        let in_code: BTreeSet<&str> = MAPS.iter().map(|m| m.name).collect();
        let in_docs: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
        assert_eq!(in_code.len(), MAPS.len(), "a column family is declared twice");
        assert_eq!(in_docs.len(), documented.len(), "a column family is documented twice");
        let missing: Vec<_> = in_code.difference(&in_docs).collect();
        let extra: Vec<_> = in_docs.difference(&in_code).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "docs/ARCHITECTURE.md's column-family table differs from store::maps::MAPS: \
             not documented {missing:?}, documented but not in the catalog {extra:?}"
        );
    }
}
