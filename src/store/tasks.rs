//! Tasks and their comments. Maps: `slug_tasknext`, `slugnum_task`, `rootevent_slugnum`,
//! `slugnumts_comment`, `eventid_commentkey`. Derived from Matrix (the `dev.boardroom.task`
//! state events and the task threads); `boardroom reindex` rebuilds it. Also
//! `cmdevent_slugnum` and `cmdevent_reservednum`: which `!task new` command made or is
//! making which task, so that a command run again after a crash keeps its number.

use rocksdb::WriteBatch;
use ruma::EventId;

use super::{
    Store,
    codec::{self, KeyBuf, KeyReader, decode_u64},
    decode, encode,
    live::LogAppend,
    maps, scan,
};
use crate::{
    domain::{
        board::{RoomKind, RoomRecord},
        stream::{CommentChange, CommentEvent, StreamData, StreamEvent, TaskChange, TaskEvent},
        task::{Comment, TaskRecord},
    },
    error::{Error, Result},
};

/// What a task is found by in `slugfacetnum_task`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Facet {
    /// Its column.
    Status(String),
    /// One of its assignees.
    Assignee(String),
    /// One of its labels.
    Label(String),
}

impl Facet {
    fn tag_and_value(&self) -> (&'static str, &str) {
        match self {
            Facet::Status(v) => ("s", v),
            Facet::Assignee(v) => ("a", v),
            Facet::Label(v) => ("l", v),
        }
    }
}

/// A task's facets; none when it is deleted.
fn facets(task: &TaskRecord) -> std::collections::BTreeSet<Facet> {
    let f = &task.fields;
    if f.deleted {
        return Default::default();
    }
    std::iter::once(Facet::Status(f.status.clone()))
        .chain(f.assignees.iter().map(|u| Facet::Assignee(u.to_string())))
        .chain(f.labels.iter().map(|l| Facet::Label(l.clone())))
        .collect()
}

fn facet_prefix(slug: &str, facet: &Facet) -> Vec<u8> {
    let (tag, value) = facet.tag_and_value();
    KeyBuf::new().str(slug).str(tag).str(value).prefix()
}

fn facet_key(slug: &str, facet: &Facet, n: u64) -> Vec<u8> {
    let (tag, value) = facet.tag_and_value();
    KeyBuf::new().str(slug).str(tag).str(value).u64(n).build()
}

impl Store {
    /// The number the board's next task gets.
    pub fn next_task_number(&self, slug: &str) -> Result<u64> {
        let db = self.db()?;
        Ok(db
            .get_pinned_cf(super::cf(&db, maps::SLUG_TASKNEXT)?, slug.as_bytes())?
            .map(|v| decode_u64(&v))
            .transpose()?
            .unwrap_or(1))
    }

    /// The number of the task the `!task new` command `command` makes on board `slug`:
    /// the number it reserved when it ran before (it was interrupted), or the board's next
    /// number, reserved now in one synced write that also moves the board's counter past
    /// it. The second value says whether the number was reserved before. Runs under the
    /// board's lock.
    pub fn reserve_task_number(&self, slug: &str, command: &EventId) -> Result<(u64, bool)> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::CMDEVENT_RESERVEDNUM)?;
        if let Some(v) = db.get_pinned_cf(cf, command.as_bytes())? {
            let mut r = KeyReader::new(&v);
            if r.str()? == slug {
                return Ok((r.u64()?, true));
            }
        }
        let n = self.next_task_number(slug)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, command.as_bytes(), KeyBuf::new().str(slug).u64(n).build());
        batch.put_cf(super::cf(&db, maps::SLUG_TASKNEXT)?, slug.as_bytes(), (n + 1).to_be_bytes());
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.checked(db.write_opt(batch, &wo))?;
        Ok((n, false))
    }

    /// The `!task new` command `command` failed for good after reserving number `n` of
    /// board `slug`: the number is handed back if no later one was handed out (under the
    /// board's lock none was), so that numbers stay gap-free.
    pub fn release_task_number(&self, slug: &str, command: &EventId, n: u64) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(super::cf(&db, maps::CMDEVENT_RESERVEDNUM)?, command.as_bytes());
        if self.next_task_number(slug)? == n + 1 && self.task(slug, n)?.is_none() {
            batch.put_cf(super::cf(&db, maps::SLUG_TASKNEXT)?, slug.as_bytes(), n.to_be_bytes());
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.checked(db.write_opt(batch, &wo))?;
        Ok(())
    }

    /// Records a task (new or changed). The board's counter moves past its number, in the
    /// same write, so numbers are never handed out twice.
    pub fn put_task(&self, task: &TaskRecord) -> Result<()> {
        self.write_task(task, None)
    }

    /// Records a task created by the `!task new` command `command`, with the command; its
    /// reservation ([`reserve_task_number`](Self::reserve_task_number)) ends.
    pub fn put_created_task(&self, task: &TaskRecord, command: &EventId) -> Result<()> {
        self.write_task(task, Some(command))
    }

    /// The task the `!task new` command `command` created, if it got that far.
    pub fn task_created_by(&self, command: &EventId) -> Result<Option<TaskRecord>> {
        self.task_by_event(maps::CMDEVENT_SLUGNUM, command)
    }

    /// The task that `event` points at in `cf`, a map from event id to (slug, number).
    fn task_by_event(&self, cf: &str, event: &EventId) -> Result<Option<TaskRecord>> {
        let db = self.db()?;
        let Some(key) = db.get_pinned_cf(super::cf(&db, cf)?, event.as_bytes())? else {
            return Ok(None);
        };
        let mut r = KeyReader::new(&key);
        let slug = r.str()?.to_owned();
        let n = r.u64()?;
        self.task(&slug, n)
    }

    fn write_task(&self, task: &TaskRecord, command: Option<&EventId>) -> Result<()> {
        let db = self.db()?;
        let n = task.fields.number;
        let mut batch = WriteBatch::default();
        // The column counts move with the task: out of where it was, into where it is.
        // Writers of one board's tasks hold its lock (or run alone, as reindex does).
        let before = self.task(&task.board, n)?;
        let counted = |t: &TaskRecord| (!t.fields.deleted).then(|| t.fields.status.clone());
        let (was, is) = (before.as_ref().and_then(counted), counted(task));
        if was != is {
            let counts = super::cf(&db, maps::SLUGSTATUS_COUNT)?;
            if let Some(status) = &was {
                let left = self.column_count(&task.board, status)?.saturating_sub(1);
                let key = count_key(&task.board, status);
                if left == 0 {
                    batch.delete_cf(counts, key);
                } else {
                    batch.put_cf(counts, key, left.to_be_bytes());
                }
            }
            if let Some(status) = &is {
                let now = self.column_count(&task.board, status)? + 1;
                batch.put_cf(counts, count_key(&task.board, status), now.to_be_bytes());
            }
        }
        // The facets move with the task too: the ones it lost out, the ones it got in.
        let (was, is) = (before.as_ref().map(facets).unwrap_or_default(), facets(task));
        if was != is {
            let cf = super::cf(&db, maps::SLUGFACETNUM_TASK)?;
            for f in was.difference(&is) {
                batch.delete_cf(cf, facet_key(&task.board, f, n));
            }
            for f in is.difference(&was) {
                batch.put_cf(cf, facet_key(&task.board, f, n), []);
            }
        }
        if let Some(command) = command {
            batch.put_cf(
                super::cf(&db, maps::CMDEVENT_SLUGNUM)?,
                command.as_bytes(),
                KeyBuf::new().str(&task.board).u64(n).build(),
            );
            batch.delete_cf(super::cf(&db, maps::CMDEVENT_RESERVEDNUM)?, command.as_bytes());
        }
        batch.put_cf(
            super::cf(&db, maps::SLUGNUM_TASK)?,
            KeyBuf::new().str(&task.board).u64(n).build(),
            encode(task)?,
        );
        batch.put_cf(
            super::cf(&db, maps::ROOTEVENT_SLUGNUM)?,
            task.fields.root_event_id.as_bytes(),
            KeyBuf::new().str(&task.board).u64(n).build(),
        );
        if self.next_task_number(&task.board)? <= n {
            batch.put_cf(
                super::cf(&db, maps::SLUG_TASKNEXT)?,
                task.board.as_bytes(),
                (n + 1).to_be_bytes(),
            );
        }
        let change = match &before {
            None => TaskChange::Created,
            Some(b) if task.fields.deleted && !b.fields.deleted => TaskChange::Deleted,
            Some(_) => TaskChange::Changed,
        };
        let log = vec![(
            task.board.clone(),
            StreamEvent::public(StreamData::Task(TaskEvent { change, task: task.clone() })),
        )];
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.commit(&db, batch, &wo, &[], log)
    }

    /// A comment's event for the live stream, with its author's display name in the
    /// board's tasks room.
    fn comment_event(
        &self,
        slug: &str,
        n: u64,
        change: CommentChange,
        comment: &Comment,
    ) -> Result<LogAppend> {
        let display_name = match self.tasks_room_of(slug)? {
            Some((room, _)) => self.member(&room, &comment.author)?.and_then(|(_, name)| name),
            None => None,
        };
        Ok(vec![(
            slug.to_owned(),
            StreamEvent::public(StreamData::Comment(CommentEvent {
                task: n,
                change,
                comment: comment.clone(),
                display_name,
            })),
        )])
    }

    /// How many tasks of board `slug` that are not deleted have status `status`.
    pub fn column_count(&self, slug: &str, status: &str) -> Result<u64> {
        let db = self.db()?;
        db.get_pinned_cf(super::cf(&db, maps::SLUGSTATUS_COUNT)?, count_key(slug, status))?
            .map_or(Ok(0), |v| decode_u64(&v))
    }

    /// Every status of board `slug` that holds tasks not deleted, with how many.
    pub fn column_counts(&self, slug: &str) -> Result<Vec<(String, u64)>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).prefix();
        let mut out = Vec::new();
        for item in scan(&db, super::cf(&db, maps::SLUGSTATUS_COUNT)?, &prefix) {
            let (k, v) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            out.push((r.str()?.to_owned(), decode_u64(&v)?));
        }
        Ok(out)
    }

    /// Records `root` as a thread root of task `n` of board `slug` (a root from before the
    /// task moved to an upgraded room).
    pub fn map_root(&self, root: &EventId, slug: &str, n: u64) -> Result<()> {
        let db = self.db()?;
        self.checked(db.put_cf(
            super::cf(&db, maps::ROOTEVENT_SLUGNUM)?,
            root.as_bytes(),
            KeyBuf::new().str(slug).u64(n).build(),
        ))?;
        Ok(())
    }

    /// Task `n` of board `slug`.
    pub fn task(&self, slug: &str, n: u64) -> Result<Option<TaskRecord>> {
        let db = self.db()?;
        db.get_pinned_cf(
            super::cf(&db, maps::SLUGNUM_TASK)?,
            KeyBuf::new().str(slug).u64(n).build(),
        )?
        .map(|v| decode(&v))
        .transpose()
    }

    /// The task whose thread root is `root`.
    pub fn task_by_root(&self, root: &EventId) -> Result<Option<TaskRecord>> {
        self.task_by_event(maps::ROOTEVENT_SLUGNUM, root)
    }

    /// The task a reply in `root`'s thread, sent in the board room recorded as `room`,
    /// comments on: only a reply in that task's own board's tasks room is a comment. The
    /// relation names any event id its sender likes, so a reply from another room (a room
    /// that is no board's, another board's, a board's chat room) never reaches a task.
    pub fn task_of_thread(&self, room: &RoomRecord, root: &EventId) -> Result<Option<TaskRecord>> {
        if room.kind != RoomKind::Tasks {
            return Ok(None);
        }
        Ok(self.task_by_root(root)?.filter(|task| task.board == room.board))
    }

    /// Every task of a board, by number.
    pub fn tasks_of(&self, slug: &str) -> Result<Vec<TaskRecord>> {
        let mut out = Vec::new();
        self.tasks_while(slug, |t| {
            out.push(t);
            true
        })?;
        Ok(out)
    }

    /// Hands a board's tasks to `f` by number, reading each only when `f` asks for more
    /// (it returns `false` to stop).
    pub fn tasks_while(&self, slug: &str, mut f: impl FnMut(TaskRecord) -> bool) -> Result<()> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).prefix();
        let cf = super::cf(&db, maps::SLUGNUM_TASK)?;
        for item in scan(&db, cf, &prefix) {
            let (_, v) = item?;
            if !f(decode(&v)?) {
                break;
            }
        }
        Ok(())
    }

    /// [`Self::tasks_page`] over the tasks with `facet` only, from the facet index: the
    /// tasks of a column, an assignee or a label, by number.
    pub fn tasks_page_by(
        &self,
        slug: &str,
        facet: &Facet,
        after: u64,
        limit: usize,
        budget: usize,
        keep: impl FnMut(&TaskRecord) -> bool,
    ) -> Result<(Vec<TaskRecord>, Option<u64>)> {
        let db = self.db()?;
        let prefix = facet_prefix(slug, facet);
        let start = facet_key(slug, facet, after.saturating_add(1));
        let cf = super::cf(&db, maps::SLUGFACETNUM_TASK)?;
        let iter =
            db.iterator_cf(cf, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        let tasks = iter
            .map(|item| item.map_err(Error::from))
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .filter_map(|item| {
                let found = item.and_then(|(k, _)| {
                    let n = decode_u64(&k[prefix.len()..])?;
                    self.task(slug, n)
                });
                found.transpose()
            });
        page(tasks, limit, budget, keep)
    }

    /// The tasks of board `slug` in any of `columns`, by number: at most `limit`. Found in
    /// the facet index, one iterator per column merged by number, so only the tasks
    /// returned are decoded (deleted tasks and tasks of other columns have no entry there),
    /// however many others the board has.
    pub fn tasks_in_columns(
        &self,
        slug: &str,
        columns: &[String],
        limit: usize,
    ) -> Result<Vec<TaskRecord>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SLUGFACETNUM_TASK)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut lanes = Vec::new();
        for c in columns.iter().filter(|c| seen.insert(c.as_str())) {
            let prefix = facet_prefix(slug, &Facet::Status(c.clone()));
            let mut it = db.raw_iterator_cf(cf);
            it.seek(&prefix);
            lanes.push((prefix, it));
        }
        // The records are read with one iterator, forward: by steps where the tasks listed
        // are close together (most of a board in the columns shown), by seeks elsewhere.
        let mut records = db.raw_iterator_cf(super::cf(&db, maps::SLUGNUM_TASK)?);
        let mut out = Vec::new();
        while out.len() < limit {
            // The lane whose next task has the lowest number.
            let mut lowest: Option<(usize, u64)> = None;
            for (i, (prefix, it)) in lanes.iter().enumerate() {
                let Some(key) = it.key().filter(|k| k.starts_with(prefix)) else {
                    it.status()?;
                    continue;
                };
                let n = decode_u64(&key[prefix.len()..])?;
                if lowest.is_none_or(|(_, low)| n < low) {
                    lowest = Some((i, n));
                }
            }
            let Some((i, n)) = lowest else { break };
            if let Some((_, it)) = lanes.get_mut(i) {
                it.next();
            }
            let key = KeyBuf::new().str(slug).u64(n).build();
            let behind = |it: &rocksdb::DBRawIterator<'_>| it.key().is_some_and(|k| k < &key[..]);
            for _ in 0..RECORD_STEPS {
                if !behind(&records) {
                    break;
                }
                records.next();
            }
            if !records.valid() || behind(&records) {
                records.seek(&key);
            }
            records.status()?;
            if records.key() == Some(&key[..])
                && let Some(v) = records.value()
            {
                out.push(decode(v)?);
                records.next();
            }
        }
        Ok(out)
    }

    /// Fills `slugfacetnum_task` from the tasks already recorded (migration 13).
    pub(crate) fn index_task_facets(&self) -> Result<()> {
        let db = self.db()?;
        self.clear_maps(&[maps::SLUGFACETNUM_TASK])?;
        let cf = super::cf(&db, maps::SLUGFACETNUM_TASK)?;
        let mut batch = WriteBatch::default();
        for item in
            db.iterator_cf(super::cf(&db, maps::SLUGNUM_TASK)?, rocksdb::IteratorMode::Start)
        {
            let (_, v) = item?;
            let task: TaskRecord = decode(&v)?;
            for f in facets(&task) {
                batch.put_cf(cf, facet_key(&task.board, &f, task.fields.number), []);
            }
        }
        self.checked(db.write(batch))?;
        Ok(())
    }

    /// Tasks of board `slug` numbered above `after`, by number, that `keep` accepts: at
    /// most `limit`, reading at most `budget` records. The second value is the number read
    /// last when the budget ran out first (resume after it), `None` when the board's tasks
    /// were read to the end or `limit` was reached.
    pub fn tasks_page(
        &self,
        slug: &str,
        after: u64,
        limit: usize,
        budget: usize,
        keep: impl FnMut(&TaskRecord) -> bool,
    ) -> Result<(Vec<TaskRecord>, Option<u64>)> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).prefix();
        let start = KeyBuf::new().str(slug).u64(after.saturating_add(1)).build();
        let cf = super::cf(&db, maps::SLUGNUM_TASK)?;
        let iter =
            db.iterator_cf(cf, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        let tasks = iter
            .map(|item| item.map_err(Error::from))
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|item| item.and_then(|(_, v)| decode::<TaskRecord>(&v)));
        page(tasks, limit, budget, keep)
    }

    /// A task's comments, oldest first: `limit` of them after the first `skip`.
    pub fn comments_page(
        &self,
        slug: &str,
        n: u64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<Comment>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).u64(n).prefix();
        let cf = super::cf(&db, maps::SLUGNUMTS_COMMENT)?;
        let mut out = Vec::with_capacity(limit);
        for item in scan(&db, cf, &prefix).skip(skip).take(limit) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// How many comments a task has: its kept count (one read), or, for a task none of
    /// whose comments was written since counts are kept, its comments counted.
    pub fn comment_count(&self, slug: &str, n: u64) -> Result<u64> {
        let db = self.db()?;
        let kept = db.get_pinned_cf(
            super::cf(&db, maps::SLUGNUM_COMMENTCOUNT)?,
            comment_count_key(slug, n),
        )?;
        match kept {
            Some(v) => decode_u64(&v),
            None => self.count_comments(slug, n),
        }
    }

    /// A task's comments, counted one by one.
    fn count_comments(&self, slug: &str, n: u64) -> Result<u64> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).u64(n).prefix();
        let cf = super::cf(&db, maps::SLUGNUMTS_COMMENT)?;
        let mut count = 0;
        for item in db.prefix_iterator_cf(cf, &prefix) {
            let (k, _) = item.map_err(Error::from)?;
            if !k.starts_with(&prefix) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// Records a comment (or its edit).
    pub fn put_comment(&self, slug: &str, n: u64, comment: &Comment) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let known = db.get_pinned_cf(
            super::cf(&db, maps::EVENTID_COMMENTKEY)?,
            comment.event_id.as_bytes(),
        )?;
        let change = if known.is_some() { CommentChange::Edited } else { CommentChange::New };
        let key = match known {
            Some(k) => k.to_vec(),
            None => {
                batch.put_cf(
                    super::cf(&db, maps::SLUGNUMUSEREVENT_COMMENT)?,
                    commenter_key(slug, n, comment),
                    [],
                );
                // Writers of one task's comments run one at a time (the lane its room's
                // entries are in, or reindex alone), as for the column counts.
                let now = self.comment_count(slug, n)? + 1;
                batch.put_cf(
                    super::cf(&db, maps::SLUGNUM_COMMENTCOUNT)?,
                    comment_count_key(slug, n),
                    now.to_be_bytes(),
                );
                KeyBuf::new()
                    .str(slug)
                    .u64(n)
                    .u64(comment.ts)
                    .str(comment.event_id.as_str())
                    .build()
            }
        };
        batch.put_cf(super::cf(&db, maps::SLUGNUMTS_COMMENT)?, &key, encode(comment)?);
        batch.put_cf(super::cf(&db, maps::EVENTID_COMMENTKEY)?, comment.event_id.as_bytes(), &key);
        if change == CommentChange::Edited
            && self.comment(&comment.event_id)?.as_ref() == Some(comment)
        {
            // Indexed again as it is (a replay): nothing new to tell.
            return Ok(());
        }
        let log = self.comment_event(slug, n, change, comment)?;
        self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log)
    }

    /// Replaces a known comment's record (an edit). Returns whether it was known.
    pub fn update_comment(&self, comment: &Comment) -> Result<bool> {
        let db = self.db()?;
        let Some(key) = db.get_pinned_cf(
            super::cf(&db, maps::EVENTID_COMMENTKEY)?,
            comment.event_id.as_bytes(),
        )?
        else {
            return Ok(false);
        };
        if self.comment(&comment.event_id)?.as_ref() == Some(comment) {
            return Ok(true);
        }
        let mut r = KeyReader::new(&key);
        let slug = r.str()?.to_owned();
        let n = r.u64()?;
        let log = self.comment_event(&slug, n, CommentChange::Edited, comment)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(super::cf(&db, maps::SLUGNUMTS_COMMENT)?, &key, encode(comment)?);
        self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log)?;
        Ok(true)
    }

    /// A comment by its event id.
    pub fn comment(&self, event_id: &EventId) -> Result<Option<Comment>> {
        let db = self.db()?;
        let Some(key) =
            db.get_pinned_cf(super::cf(&db, maps::EVENTID_COMMENTKEY)?, event_id.as_bytes())?
        else {
            return Ok(None);
        };
        db.get_pinned_cf(super::cf(&db, maps::SLUGNUMTS_COMMENT)?, &key)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The task a comment belongs to.
    pub fn task_of_comment(&self, event_id: &EventId) -> Result<Option<TaskRecord>> {
        let db = self.db()?;
        let Some(key) =
            db.get_pinned_cf(super::cf(&db, maps::EVENTID_COMMENTKEY)?, event_id.as_bytes())?
        else {
            return Ok(None);
        };
        let mut r = KeyReader::new(&key);
        let slug = r.str()?.to_owned();
        let n = r.u64()?;
        self.task(&slug, n)
    }

    /// Removes a comment (redacted). Returns whether there was one.
    pub fn remove_comment(&self, event_id: &EventId) -> Result<bool> {
        let db = self.db()?;
        let Some(key) =
            db.get_pinned_cf(super::cf(&db, maps::EVENTID_COMMENTKEY)?, event_id.as_bytes())?
        else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        let mut log = LogAppend::new();
        if let Some(v) = db.get_pinned_cf(super::cf(&db, maps::SLUGNUMTS_COMMENT)?, &key)? {
            let mut r = KeyReader::new(&key);
            let slug = r.str()?.to_owned();
            let n = r.u64()?;
            let comment: Comment = decode(&v)?;
            batch.delete_cf(
                super::cf(&db, maps::SLUGNUMUSEREVENT_COMMENT)?,
                commenter_key(&slug, n, &comment),
            );
            let counts = super::cf(&db, maps::SLUGNUM_COMMENTCOUNT)?;
            match self.comment_count(&slug, n)?.saturating_sub(1) {
                0 => batch.delete_cf(counts, comment_count_key(&slug, n)),
                left => batch.put_cf(counts, comment_count_key(&slug, n), left.to_be_bytes()),
            }
            log = self.comment_event(&slug, n, CommentChange::Removed, &comment)?;
        }
        batch.delete_cf(super::cf(&db, maps::SLUGNUMTS_COMMENT)?, &key);
        batch.delete_cf(super::cf(&db, maps::EVENTID_COMMENTKEY)?, event_id.as_bytes());
        self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log)?;
        Ok(true)
    }

    /// A task's comments, oldest first.
    pub fn comments(&self, slug: &str, n: u64) -> Result<Vec<Comment>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).u64(n).prefix();
        let cf = super::cf(&db, maps::SLUGNUMTS_COMMENT)?;
        let mut out = Vec::new();
        for item in scan(&db, cf, &prefix) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Everyone who has a comment on a task, each once: one seek per commenter, however
    /// many comments there are.
    pub fn commenters(&self, slug: &str, n: u64) -> Result<Vec<ruma::OwnedUserId>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).u64(n).prefix();
        let mut it = db.raw_iterator_cf(super::cf(&db, maps::SLUGNUMUSEREVENT_COMMENT)?);
        it.seek(&prefix);
        let mut out = Vec::new();
        while let Some(key) = it.key().filter(|k| k.starts_with(&prefix)) {
            let mut r = KeyReader::new(key);
            r.str()?;
            r.u64()?;
            let author = r.str()?;
            out.push(author.try_into().map_err(|_| Error::Store("bad user id in index".into()))?);
            // Past every key of this author: ids never hold the separator byte, so
            // `author, SEP, SEP` sorts after all of theirs and before anyone else's.
            let mut next = KeyBuf::new().str(slug).u64(n).str(author).prefix();
            next.push(codec::SEP);
            it.seek(&next);
        }
        it.status()?;
        Ok(out)
    }

    /// Who watches a task: its creator, its assignees and everyone who commented, in that
    /// order, each once.
    pub fn watchers(&self, slug: &str, n: u64) -> Result<Vec<ruma::OwnedUserId>> {
        let Some(task) = self.task(slug, n)? else { return Ok(Vec::new()) };
        let mut out = vec![task.fields.created_by.clone()];
        let more = task.fields.assignees.iter().cloned().chain(self.commenters(slug, n)?);
        for u in more {
            if !out.contains(&u) {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Empties the task index (before a rebuild). Boards with numbers reserved by unfinished
    /// `!task new` commands keep their counters past them.
    pub fn clear_task_index(&self) -> Result<()> {
        let db = self.db()?;
        self.clear_maps(&TASK_MAPS)?;
        // Numbers reserved by unfinished `!task new` commands stay taken: they run again
        // with them, so the counters start past them.
        let mut next: std::collections::BTreeMap<String, u64> = Default::default();
        let reserved = super::cf(&db, maps::CMDEVENT_RESERVEDNUM)?;
        for item in db.iterator_cf(reserved, rocksdb::IteratorMode::Start) {
            let (_, v) = item?;
            let mut r = KeyReader::new(&v);
            let slug = r.str()?.to_owned();
            let n = r.u64()?;
            let past = next.entry(slug).or_default();
            *past = (*past).max(n + 1);
        }
        let mut batch = WriteBatch::default();
        for (slug, n) in next {
            batch.put_cf(super::cf(&db, maps::SLUG_TASKNEXT)?, slug.as_bytes(), n.to_be_bytes());
        }
        self.checked(db.write(batch))?;
        Ok(())
    }

    /// The task index as readable lines, for comparing two indexes.
    /// A task's `last_command` is left out: it is crash-replay bookkeeping of this
    /// process, not something the homeserver's rooms hold or `reindex` restores.
    pub fn dump_task_index(&self) -> Result<Vec<String>> {
        let prefix = format!("{}: ", maps::SLUGNUM_TASK);
        self.dump_maps(&TASK_MAPS)?
            .into_iter()
            .map(|line| {
                let Some((key, value)) =
                    line.strip_prefix(&prefix).and_then(|rest| rest.split_once(" = "))
                else {
                    return Ok(line);
                };
                let mut record: TaskRecord = serde_json::from_str(value)
                    .map_err(|e| crate::Error::Store(format!("task record {key}: {e}")))?;
                record.last_command = None;
                Ok(format!("{prefix}{key} = {}", String::from_utf8_lossy(&encode(&record)?)))
            })
            .collect()
    }
}

pub(super) const TASK_MAPS: [&str; 9] = [
    maps::SLUG_TASKNEXT,
    maps::SLUGSTATUS_COUNT,
    maps::SLUGFACETNUM_TASK,
    maps::SLUGNUM_TASK,
    maps::ROOTEVENT_SLUGNUM,
    maps::SLUGNUMTS_COMMENT,
    maps::EVENTID_COMMENTKEY,
    maps::SLUGNUMUSEREVENT_COMMENT,
    maps::SLUGNUM_COMMENTCOUNT,
];

/// Records [`Store::tasks_in_columns`] steps over, at most, before it seeks to the next
/// task it lists instead.
const RECORD_STEPS: usize = 8;

/// A page of `tasks` (in number order) that `keep` accepts: at most `limit`, reading at
/// most `budget` records; with the number read last when the budget ran out first.
fn page(
    tasks: impl Iterator<Item = Result<TaskRecord>>,
    limit: usize,
    budget: usize,
    mut keep: impl FnMut(&TaskRecord) -> bool,
) -> Result<(Vec<TaskRecord>, Option<u64>)> {
    let mut out = Vec::new();
    for (read, task) in tasks.enumerate() {
        let task = task?;
        if keep(&task) {
            out.push(task);
            if out.len() == limit {
                return Ok((out, None));
            }
        } else if read + 1 >= budget {
            return Ok((out, Some(task.fields.number)));
        }
    }
    Ok((out, None))
}

fn count_key(slug: &str, status: &str) -> Vec<u8> {
    KeyBuf::new().str(slug).str(status).build()
}

/// A task's key in `slugnum_commentcount`.
fn comment_count_key(slug: &str, n: u64) -> Vec<u8> {
    KeyBuf::new().str(slug).u64(n).build()
}

/// A comment's key in `slugnumuserevent_comment`.
fn commenter_key(slug: &str, n: u64, comment: &Comment) -> Vec<u8> {
    KeyBuf::new()
        .str(slug)
        .u64(n)
        .str(comment.author.as_str())
        .str(comment.event_id.as_str())
        .build()
}

impl Store {
    /// Writes tasks and comments straight into the task index, for benchmarks and tests of
    /// large boards: the keys [`Self::put_task`] and [`Self::put_comment`] write (task,
    /// root, facets, column counts, counter; comment, its event id, its commenter, the
    /// task's comment count), in one batch without the write-ahead log and without the
    /// live-stream log. The tasks and comments must be new: nothing already there is read
    /// or taken out, but the counts and the counter add to what is there. `comments` are
    /// `(task number, comment)` on `slug`, for tasks of `tasks` or already written.
    /// Call [`Self::seed_done`] after the last batch.
    #[doc(hidden)]
    pub fn seed_task_index(
        &self,
        slug: &str,
        tasks: &[TaskRecord],
        comments: &[(u64, Comment)],
    ) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let (task_cf, root_cf, facet_cf) = (
            super::cf(&db, maps::SLUGNUM_TASK)?,
            super::cf(&db, maps::ROOTEVENT_SLUGNUM)?,
            super::cf(&db, maps::SLUGFACETNUM_TASK)?,
        );
        let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
        let mut next = self.next_task_number(slug)?;
        for task in tasks {
            if task.board != slug {
                return Err(Error::Store(format!("task of board {} seeded on {slug}", task.board)));
            }
            let n = task.fields.number;
            let key = KeyBuf::new().str(slug).u64(n).build();
            batch.put_cf(task_cf, &key, encode(task)?);
            batch.put_cf(root_cf, task.fields.root_event_id.as_bytes(), &key);
            for f in facets(task) {
                batch.put_cf(facet_cf, facet_key(slug, &f, n), []);
            }
            if !task.fields.deleted {
                *counts.entry(&task.fields.status).or_default() += 1;
            }
            next = next.max(n + 1);
        }
        let counts_cf = super::cf(&db, maps::SLUGSTATUS_COUNT)?;
        for (status, more) in counts {
            let now = self.column_count(slug, status)? + more;
            batch.put_cf(counts_cf, count_key(slug, status), now.to_be_bytes());
        }
        batch.put_cf(super::cf(&db, maps::SLUG_TASKNEXT)?, slug.as_bytes(), next.to_be_bytes());
        let (comment_cf, event_cf, commenter_cf) = (
            super::cf(&db, maps::SLUGNUMTS_COMMENT)?,
            super::cf(&db, maps::EVENTID_COMMENTKEY)?,
            super::cf(&db, maps::SLUGNUMUSEREVENT_COMMENT)?,
        );
        let mut added: std::collections::BTreeMap<u64, u64> = Default::default();
        for (n, comment) in comments {
            *added.entry(*n).or_default() += 1;
            let key = KeyBuf::new()
                .str(slug)
                .u64(*n)
                .u64(comment.ts)
                .str(comment.event_id.as_str())
                .build();
            batch.put_cf(comment_cf, &key, encode(comment)?);
            batch.put_cf(event_cf, comment.event_id.as_bytes(), &key);
            batch.put_cf(commenter_cf, commenter_key(slug, *n, comment), []);
        }
        let comment_counts = super::cf(&db, maps::SLUGNUM_COMMENTCOUNT)?;
        for (n, more) in added {
            let now = self.comment_count(slug, n)? + more;
            batch.put_cf(comment_counts, comment_count_key(slug, n), now.to_be_bytes());
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.disable_wal(true);
        self.checked(db.write_opt(batch, &wo))?;
        Ok(())
    }

    /// After seeding ([`Self::seed_task_index`]): writes what is in memory to tables (the
    /// seeded writes skipped the write-ahead log) and, with `compact`, compacts every
    /// column family, as a database that has lived long is.
    #[doc(hidden)]
    pub fn seed_done(&self, compact: bool) -> Result<()> {
        let db = self.db()?;
        for m in maps::MAPS {
            let cf = super::cf(&db, m.name)?;
            self.checked(db.flush_cf(cf))?;
            if compact {
                db.compact_range_cf::<&[u8], &[u8]>(cf, None, None);
            }
        }
        Ok(())
    }
}

impl Store {
    /// Fills `slugstatus_count` from the tasks already indexed (migration 9).
    pub(crate) fn count_columns(&self) -> Result<()> {
        let db = self.db()?;
        let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for item in
            db.iterator_cf(super::cf(&db, maps::SLUGNUM_TASK)?, rocksdb::IteratorMode::Start)
        {
            let (_, v) = item?;
            let task: TaskRecord = decode(&v)?;
            if !task.fields.deleted {
                *counts.entry((task.board, task.fields.status)).or_default() += 1;
            }
        }
        self.clear_maps(&[maps::SLUGSTATUS_COUNT])?;
        let cf = super::cf(&db, maps::SLUGSTATUS_COUNT)?;
        let mut batch = WriteBatch::default();
        for ((slug, status), n) in counts {
            batch.put_cf(cf, count_key(&slug, &status), n.to_be_bytes());
        }
        self.checked(db.write(batch))?;
        Ok(())
    }

    /// Fills `slugnumuserevent_comment` from the comments already indexed (migration 7).
    pub(crate) fn index_commenters(&self) -> Result<()> {
        let db = self.db()?;
        let comments = super::cf(&db, maps::SLUGNUMTS_COMMENT)?;
        let commenters = super::cf(&db, maps::SLUGNUMUSEREVENT_COMMENT)?;
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(comments, rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            let mut r = KeyReader::new(&key);
            let slug = r.str()?;
            let n = r.u64()?;
            let comment: Comment = decode(&value)?;
            batch.put_cf(commenters, commenter_key(slug, n, &comment), []);
            if batch.len() >= 10_000 {
                self.checked(db.write(std::mem::take(&mut batch)))?;
            }
        }
        self.checked(db.write(batch))?;
        Ok(())
    }

    /// Migration: keeps every task's comment count (`slugnum_commentcount`), counted in
    /// one pass over the comments (sorted by board and task).
    pub(crate) fn keep_comment_counts(&self) -> Result<()> {
        let db = self.db()?;
        let comments = super::cf(&db, maps::SLUGNUMTS_COMMENT)?;
        let counts = super::cf(&db, maps::SLUGNUM_COMMENTCOUNT)?;
        let mut batch = WriteBatch::default();
        let mut current: Option<(String, u64, u64)> = None;
        let put = |batch: &mut WriteBatch, (slug, n, count): (String, u64, u64)| {
            batch.put_cf(counts, comment_count_key(&slug, n), count.to_be_bytes());
        };
        for item in db.iterator_cf(comments, rocksdb::IteratorMode::Start) {
            let (key, _) = item?;
            let mut r = KeyReader::new(&key);
            let (slug, n) = (r.str()?, r.u64()?);
            match &mut current {
                Some((s, m, count)) if s == slug && *m == n => *count += 1,
                _ => {
                    if let Some(done) = current.replace((slug.to_owned(), n, 1)) {
                        put(&mut batch, done);
                    }
                }
            }
            if batch.len() >= 10_000 {
                self.checked(db.write(std::mem::take(&mut batch)))?;
            }
        }
        if let Some(done) = current {
            put(&mut batch, done);
        }
        self.checked(db.write(batch))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u64, root: &str) -> TaskRecord {
        let mut t = TaskRecord::example("launch", n, root.try_into().expect("event id"));
        t.fields.created_by = ruma::owned_user_id!("@a:x");
        t
    }

    #[test]
    fn tasks_numbers_and_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.next_task_number("launch").expect("n"), 1);
        store.put_task(&task(1, "$r1")).expect("put");
        store.put_task(&task(2, "$r2")).expect("put");
        assert_eq!(store.next_task_number("launch").expect("n"), 3);
        let cmd: ruma::OwnedEventId = "$cmd".try_into().expect("event id");
        assert_eq!(store.task_created_by(&cmd).expect("read"), None);
        store.put_created_task(&task(3, "$r3"), &cmd).expect("put");
        assert_eq!(store.task_created_by(&cmd).expect("read"), Some(task(3, "$r3")));
        assert_eq!(store.next_task_number("launch").expect("n"), 4);
        store.put_task(&task(1, "$r1")).expect("update");
        assert_eq!(
            store.next_task_number("launch").expect("n"),
            4,
            "an update never moves the counter back"
        );
        assert_eq!(
            store.task_by_root(ruma::event_id!("$r2")).expect("get").map(|t| t.fields.number),
            Some(2)
        );
        assert_eq!(store.tasks_of("launch").expect("list").len(), 3);

        let c = |id: &str, ts: u64, body: &str| Comment {
            event_id: id.try_into().expect("id"),
            author: ruma::owned_user_id!("@b:x"),
            body: body.into(),
            ts,
        };
        store.put_comment("launch", 1, &c("$c2", 20, "second")).expect("c");
        store.put_comment("launch", 1, &c("$c1", 10, "first")).expect("c");
        store.put_comment("launch", 1, &c("$c2", 20, "second, edited")).expect("edit");
        let bodies: Vec<String> =
            store.comments("launch", 1).expect("c").into_iter().map(|c| c.body).collect();
        assert_eq!(bodies, ["first", "second, edited"]);
        assert!(store.remove_comment(ruma::event_id!("$c1")).expect("rm"));
        assert_eq!(store.comments("launch", 1).expect("c").len(), 1);
        assert!(store.comments("launch", 2).expect("c").is_empty());
    }

    #[test]
    fn a_reserved_number_is_kept_by_its_command_and_skipped_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (a, b) = (ruma::event_id!("$a"), ruma::event_id!("$b"));
        assert_eq!(store.reserve_task_number("launch", a).expect("reserve"), (1, false));
        // Another command gets the next number; the first, run again, its own.
        assert_eq!(store.reserve_task_number("launch", b).expect("reserve"), (2, false));
        assert_eq!(store.reserve_task_number("launch", a).expect("again"), (1, true));
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.reserve_task_number("launch", a).expect("after a crash"), (1, true));
        assert_eq!(store.next_task_number("launch").expect("n"), 3);
        // Recording the task ends the reservation; the command then finds its task.
        store.put_created_task(&task(1, "$r1"), a).expect("put");
        assert_eq!(store.reserve_task_number("launch", a).expect("n"), (3, false), "ended");
        // A command that fails for good hands its number back while it is the last one.
        store.release_task_number("launch", a, 3).expect("release");
        assert_eq!(store.next_task_number("launch").expect("n"), 3);
        store.release_task_number("launch", b, 2).expect("release");
        assert_eq!(store.next_task_number("launch").expect("n"), 2, "handed back, newest first");
        let c = ruma::event_id!("$c");
        assert_eq!(store.reserve_task_number("launch", c).expect("reserve"), (2, false));
        store.put_created_task(&task(2, "$r2"), c).expect("put");
        store.release_task_number("launch", c, 2).expect("release");
        assert_eq!(store.next_task_number("launch").expect("n"), 3, "2 exists: not handed back");
        // An index cleared for `reindex` keeps reserved numbers taken.
        let d = ruma::event_id!("$d");
        assert_eq!(store.reserve_task_number("launch", d).expect("reserve"), (3, false));
        store.clear_task_index().expect("clear");
        assert_eq!(store.next_task_number("launch").expect("n"), 4, "3 is still reserved");
    }

    #[test]
    fn commenters_each_once_and_gone_with_their_last_comment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.put_task(&task(1, "$r1")).expect("put");
        let c = |id: &str, author: &str| Comment {
            event_id: id.try_into().expect("id"),
            author: author.try_into().expect("user"),
            body: "hi".into(),
            ts: 1,
        };
        // One author's id is a prefix of another's: the seek past one must not skip the other.
        for (id, author) in
            [("$1", "@a:x"), ("$2", "@a:xy"), ("$3", "@a:x"), ("$4", "@b:x"), ("$5", "@a:xy")]
        {
            store.put_comment("launch", 1, &c(id, author)).expect("put");
        }
        store.put_comment("launch", 1, &c("$1", "@a:x")).expect("an edit");
        store.put_comment("launch", 2, &c("$6", "@c:x")).expect("another task");
        let mut who = store.commenters("launch", 1).expect("commenters");
        who.sort();
        assert_eq!(who, ["@a:x", "@a:xy", "@b:x"]);
        store.remove_comment(ruma::event_id!("$4")).expect("rm");
        store.remove_comment(ruma::event_id!("$1")).expect("rm");
        let mut who = store.commenters("launch", 1).expect("commenters");
        who.sort();
        assert_eq!(who, ["@a:x", "@a:xy"], "@a:x still has $3; @b:x has none left");
        // The creator (@a:x, also a commenter) once, then the other commenter.
        assert_eq!(store.watchers("launch", 1).expect("watchers"), ["@a:x", "@a:xy"]);
    }

    #[test]
    fn migration_7_indexes_the_commenters_of_existing_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_task(&task(1, "$r1")).expect("put");
            let comment = Comment {
                event_id: "$c".try_into().expect("id"),
                author: "@old:x".try_into().expect("user"),
                body: "from before".into(),
                ts: 1,
            };
            store.put_comment("launch", 1, &comment).expect("put");
            // As a schema-6 database: comments without the commenter index.
            store.clear_maps(&[maps::SLUGNUMUSEREVENT_COMMENT]).expect("clear");
            store.set_schema_version_for_test(6).expect("version");
            assert!(store.commenters("launch", 1).expect("commenters").is_empty());
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.commenters("launch", 1).expect("commenters"), ["@old:x"]);
    }

    #[test]
    fn column_counts_follow_every_task_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let counts = || store.column_counts("launch").expect("counts");
        for n in 1..=3 {
            store.put_task(&task(n, &format!("$r{n}"))).expect("put");
        }
        assert_eq!(counts(), [("todo".to_owned(), 3)]);
        let mut moved = task(2, "$r2");
        moved.fields.status = "doing".into();
        store.put_task(&moved).expect("move");
        store.put_task(&moved).expect("the same write again changes nothing");
        assert_eq!(counts(), [("doing".to_owned(), 1), ("todo".to_owned(), 2)]);
        moved.fields.deleted = true;
        store.put_task(&moved).expect("delete");
        assert_eq!(counts(), [("todo".to_owned(), 2)], "an emptied column leaves no count");
        assert_eq!(store.column_count("launch", "doing").expect("count"), 0);
        assert_eq!(store.column_count("launch", "todo").expect("count"), 2);
        assert!(store.column_counts("other").expect("counts").is_empty());
    }

    #[test]
    fn the_facet_index_follows_every_task_write_and_pages_by_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let numbers = |facet: &Facet, after: u64, limit: usize| {
            let (page, next) =
                store.tasks_page_by("launch", facet, after, limit, 1000, |_| true).expect("page");
            (page.iter().map(|t| t.fields.number).collect::<Vec<_>>(), next)
        };
        for n in 1..=5 {
            let mut t = task(n, &format!("$r{n}"));
            if n % 2 == 0 {
                t.fields.status = "doing".into();
                t.fields.labels = vec!["bug".into()];
            }
            store.put_task(&t).expect("put");
        }
        let doing = Facet::Status("doing".into());
        let bug = Facet::Label("bug".into());
        let bob = Facet::Assignee("@bob:x".into());
        assert_eq!(numbers(&doing, 0, 10), (vec![2, 4], None));
        assert_eq!(numbers(&Facet::Status("todo".into()), 1, 10), (vec![3, 5], None));
        assert_eq!(numbers(&Facet::Status("todo".into()), 0, 2).0, [1, 3]);
        // A change moves its facets: out of the old column, into the new; labels and
        // assignees as full sets.
        let mut t = task(4, "$r4");
        t.fields.status = "done".into();
        t.fields.assignees = vec![ruma::owned_user_id!("@bob:x")];
        store.put_task(&t).expect("change");
        assert_eq!(numbers(&doing, 0, 10).0, [2]);
        assert_eq!(numbers(&bug, 0, 10).0, [2], "#4 lost its label");
        assert_eq!(numbers(&bob, 0, 10).0, [4]);
        // A deleted task has none.
        t.fields.deleted = true;
        store.put_task(&t).expect("delete");
        assert!(numbers(&bob, 0, 10).0.is_empty());
        assert!(numbers(&Facet::Status("done".into()), 0, 10).0.is_empty());
        // Another board's tasks are not found.
        let mut other = task(1, "$o1");
        other.board = "other".into();
        other.fields.status = "doing".into();
        store.put_task(&other).expect("put");
        assert_eq!(numbers(&doing, 0, 10).0, [2]);
        // Migration 13 rebuilds the same index from the records.
        store.index_task_facets().expect("reindex");
        assert_eq!(numbers(&doing, 0, 10).0, [2]);
        assert_eq!(numbers(&bug, 0, 10).0, [2]);
        // `reindex` clears the facets with the records: a task recorded again in another
        // column is listed there only.
        store.clear_task_index().expect("clear");
        store.put_task(&task(2, "$r2")).expect("put");
        assert!(numbers(&doing, 0, 10).0.is_empty(), "a facet from before the rebuild");
        assert!(numbers(&bug, 0, 10).0.is_empty(), "a label from before the rebuild");
        assert_eq!(numbers(&Facet::Status("todo".into()), 0, 10).0, [2]);
    }

    /// A comment by `@b:x`.
    fn comment(id: &str, ts: u64) -> Comment {
        Comment {
            event_id: id.try_into().expect("id"),
            author: ruma::owned_user_id!("@b:x"),
            body: "hi".into(),
            ts,
        }
    }

    #[test]
    fn the_migration_keeps_the_comment_count_of_every_task() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let c = comment;
        for (slug, n, ids) in [
            ("launch", 1, vec!["$a", "$b", "$c"]),
            ("launch", 2, vec!["$d"]),
            ("zeta", 1, vec!["$e", "$f"]),
        ] {
            for (i, id) in ids.into_iter().enumerate() {
                store.put_comment(slug, n, &c(id, i as u64)).expect("comment");
            }
        }
        // As a database from before counts were kept.
        store.clear_maps(&[maps::SLUGNUM_COMMENTCOUNT]).expect("clear");
        store.keep_comment_counts().expect("migration");
        let db = store.db().expect("db");
        let kept = super::super::cf(&db, maps::SLUGNUM_COMMENTCOUNT).expect("cf");
        let read = |slug, n| {
            db.get_cf(kept, comment_count_key(slug, n))
                .expect("read")
                .map(|v| decode_u64(&v).expect("u64"))
        };
        assert_eq!(
            (read("launch", 1), read("launch", 2), read("zeta", 1), read("launch", 3)),
            (Some(3), Some(1), Some(2), None)
        );
    }

    #[test]
    fn comment_counts_are_kept_and_comments_from_before_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let c = comment;
        let count = |n| store.comment_count("launch", n).expect("count");
        for n in 1..=2 {
            store.put_task(&task(n, &format!("$r{n}"))).expect("put");
        }
        for (id, ts) in [("$a", 1), ("$b", 2), ("$c", 3)] {
            store.put_comment("launch", 1, &c(id, ts)).expect("comment");
        }
        store.put_comment("launch", 1, &c("$a", 1)).expect("an edit is not a comment more");
        store.remove_comment(ruma::event_id!("$b")).expect("rm");
        assert_eq!(count(1), 2);
        // Comments written before the counts were kept (no count for task 2): counted.
        store.put_comment("launch", 2, &c("$d", 4)).expect("comment");
        store.put_comment("launch", 2, &c("$e", 5)).expect("comment");
        store.clear_maps(&[maps::SLUGNUM_COMMENTCOUNT]).expect("clear");
        assert_eq!(count(2), 2, "counted");
        // The next comment writes the count, from the comments there; so does a removal.
        store.put_comment("launch", 2, &c("$f", 6)).expect("comment");
        store.put_comment("launch", 1, &c("$g", 7)).expect("comment");
        // Read from the count alone: with the comments themselves gone, they stay.
        let db = store.db().expect("db");
        let comments = super::super::cf(&db, maps::SLUGNUMTS_COMMENT).expect("cf");
        for (n, ts, id) in [(1, 1, "$a"), (2, 4, "$d")] {
            let key = KeyBuf::new().str("launch").u64(n).u64(ts).str(id).build();
            db.delete_cf(comments, key).expect("delete");
        }
        assert_eq!((count(1), count(2)), (3, 3), "kept, not counted");
        // A task's last comment removed: no count left, and none to count.
        store.remove_comment(ruma::event_id!("$e")).expect("rm");
        store.remove_comment(ruma::event_id!("$f")).expect("rm");
        assert_eq!(count(2), 1, "one less each, from the kept count");
        assert_eq!(count(3), 0);
    }

    #[test]
    fn a_list_of_columns_decodes_only_the_tasks_it_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for (n, status) in [(1, "todo"), (2, "done"), (3, "doing"), (4, "todo"), (5, "todo")] {
            let mut t = task(n, &format!("$r{n}"));
            t.fields.status = status.into();
            t.fields.deleted = n == 4;
            store.put_task(&t).expect("put");
        }
        // Task 6 is in `done` and its record cannot be read: a list of other columns that
        // went through the board's tasks by number would fail on it.
        let mut six = task(6, "$r6");
        six.fields.status = "done".into();
        store.put_task(&six).expect("put");
        let db = store.db().expect("db");
        let records = super::super::cf(&db, maps::SLUGNUM_TASK).expect("cf");
        db.put_cf(records, KeyBuf::new().str("launch").u64(6).build(), b"not json").expect("spoil");
        let numbers = |columns: &[&str], limit| {
            let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
            let found = store.tasks_in_columns("launch", &columns, limit).expect("list");
            found.iter().map(|t| t.fields.number).collect::<Vec<_>>()
        };
        assert_eq!(numbers(&["todo", "doing"], 10), [1, 3, 5], "merged by number, not #4");
        assert_eq!(numbers(&["doing", "todo", "todo"], 10), [1, 3, 5], "each column once");
        assert_eq!(numbers(&["todo", "doing"], 2), [1, 3]);
        assert_eq!(numbers(&["review"], 10), Vec::<u64>::new());
        assert!(store.tasks_in_columns("launch", &["done".into()], 10).is_err(), "#6 is read");
    }

    #[test]
    fn migration_9_counts_the_tasks_already_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_task(&task(1, "$r1")).expect("put");
            let mut gone = task(2, "$r2");
            gone.fields.deleted = true;
            store.put_task(&gone).expect("put");
            store.clear_maps(&[maps::SLUGSTATUS_COUNT]).expect("clear");
            store.set_schema_version_for_test(8).expect("version");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.column_counts("launch").expect("counts"), [("todo".to_owned(), 1)]);
    }
}
