//! Tasks: a thread root in the board's `tasks` room plus a `dev.boardroom.task` state
//! event (state key: the task number) holding the canonical fields. Every change edits the
//! root so that it always shows the current state, and adds a reply to the thread saying
//! who changed what: the task's activity feed.

use ruma::{OwnedEventId, OwnedUserId};
use serde::{Deserialize, Serialize};

/// `dev.boardroom.task` (state key: the task number) in the board's `tasks` room.
#[derive(
    Clone, Debug, Deserialize, Serialize, ruma::events::macros::EventContent, PartialEq, Eq,
)]
#[ruma_event(type = "dev.boardroom.task", kind = State, state_key_type = String)]
pub struct TaskEventContent {
    /// The task's number in its board.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Column.
    pub status: String,
    /// Assignees.
    #[serde(default)]
    pub assignees: Vec<OwnedUserId>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Due date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The thread root.
    pub root_event_id: OwnedEventId,
    /// Who created it.
    pub created_by: OwnedUserId,
    /// When (milliseconds since the epoch).
    pub created_at: u64,
    /// Deleted tasks keep their number.
    #[serde(default)]
    pub deleted: bool,
}

/// A task as the index holds it. Its watchers (creator, assignees, commenters) are
/// derived: see `Store::watchers`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TaskRecord {
    /// The board.
    pub board: String,
    /// The canonical fields.
    pub fields: TaskEventContent,
    /// The last command that changed the task: the same command run again after a crash
    /// answers as it did the first time instead of changing the task twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<AppliedCommand>,
}

impl TaskRecord {
    /// A task for tests and benchmarks: `todo`, created by `@creator:localhost` at time 0,
    /// a title of a usual length, nothing else set.
    #[doc(hidden)]
    pub fn example(board: &str, number: u64, root: OwnedEventId) -> Self {
        Self {
            board: board.to_owned(),
            fields: TaskEventContent {
                number,
                title: format!("Task number {number} with a title of a usual, longish length"),
                status: "todo".into(),
                assignees: Vec::new(),
                labels: Vec::new(),
                due: None,
                root_event_id: root,
                created_by: ruma::owned_user_id!("@creator:localhost"),
                created_at: 0,
                deleted: false,
            },
            last_command: None,
        }
    }
}

/// A command applied to a task, as its answer needs it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct AppliedCommand {
    /// The command's event.
    pub event_id: OwnedEventId,
    /// What the feed says it did ("moved it from todo to doing").
    pub said: String,
    /// Who it notified (the newly assigned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<OwnedUserId>,
}

/// A comment in a task's thread.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Comment {
    /// The reply's event id.
    pub event_id: OwnedEventId,
    /// Who wrote it.
    pub author: OwnedUserId,
    /// Its text, as last edited.
    pub body: String,
    /// When it was sent (milliseconds since the epoch).
    pub ts: u64,
}

/// A change to a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add assignees.
    Assign(Vec<OwnedUserId>),
    /// Remove an assignee.
    Unassign(OwnedUserId),
    /// Move to a column.
    Status(String),
    /// New title.
    Rename(String),
    /// Add (`true`) or remove labels.
    Label(Vec<(bool, String)>),
    /// Set or clear the due date.
    Due(Option<String>),
    /// Delete.
    Delete,
}

/// Applies `change`; returns what the feed says (after "`<who> `") or why nothing changed.
pub fn apply(task: &mut TaskEventContent, change: &Change) -> Result<String, String> {
    match change {
        Change::Assign(users) => {
            let new: Vec<&OwnedUserId> =
                users.iter().filter(|u| !task.assignees.contains(u)).collect();
            if new.is_empty() {
                return Err("already assigned".into());
            }
            let names = new.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ");
            task.assignees.extend(new.into_iter().cloned());
            Ok(format!("assigned {names}"))
        }
        Change::Unassign(user) => {
            let before = task.assignees.len();
            task.assignees.retain(|u| u != user);
            if task.assignees.len() == before {
                return Err(format!("{user} is not assigned"));
            }
            Ok(format!("unassigned {user}"))
        }
        Change::Status(column) => {
            if &task.status == column {
                return Err(format!("the task is already in {column}"));
            }
            let from = std::mem::replace(&mut task.status, column.clone());
            Ok(format!("moved it from {from} to {column}"))
        }
        Change::Rename(title) => {
            if &task.title == title {
                return Err("the title is the same".into());
            }
            task.title = title.clone();
            Ok(format!("renamed it to “{title}”"))
        }
        Change::Label(ops) => {
            let mut said = Vec::new();
            for (add, label) in ops {
                let has = task.labels.contains(label);
                if *add && !has {
                    task.labels.push(label.clone());
                    said.push(format!("+{label}"));
                } else if !*add && has {
                    task.labels.retain(|l| l != label);
                    said.push(format!("-{label}"));
                }
            }
            if said.is_empty() {
                return Err("the labels are unchanged".into());
            }
            Ok(format!("changed the labels: {}", said.join(" ")))
        }
        Change::Due(due) => {
            if &task.due == due {
                return Err("the due date is the same".into());
            }
            task.due.clone_from(due);
            Ok(match due {
                Some(d) => format!("set the due date to {d}"),
                None => "cleared the due date".to_owned(),
            })
        }
        Change::Delete => {
            if task.deleted {
                return Err("the task is already deleted".into());
            }
            task.deleted = true;
            Ok("deleted it".to_owned())
        }
    }
}

/// The longest title a task may have, in characters: the root message, the state event
/// and every list that shows it stay small.
pub const MAX_TITLE_CHARS: usize = 256;

/// Checks a title: it shows something (not only spaces and invisible characters), has at
/// most [`MAX_TITLE_CHARS`] characters and no control characters (one line).
pub fn validate_title(t: &str) -> Result<(), String> {
    super::text::validate_line(t, "a title", MAX_TITLE_CHARS)
}

/// Checks a due date: `YYYY-MM-DD`, a real day.
pub fn validate_due(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not a date such as 2026-12-31");
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    if y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        return Err(bad());
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return Err(bad());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// The longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 32;

/// The most labels a task may have: its root message, which shows them all, stays small.
pub const MAX_LABELS: usize = 32;

/// Checks a label: 1 to [`MAX_LABEL_CHARS`] characters, no spaces, commas, control or
/// invisible characters (a label is a name to type: `bu\u{200B}g` would look like `bug`
/// and be another label).
pub fn validate_label(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if s.is_empty()
        || n > MAX_LABEL_CHARS
        || s.chars().any(|c| {
            c.is_whitespace() || c == ',' || c.is_control() || super::text::is_invisible(c)
        })
    {
        return Err(format!(
            "`{}` is not a label: 1 to {MAX_LABEL_CHARS} characters, no spaces, commas or invisible characters",
            super::text::excerpt(s, MAX_LABEL_CHARS)
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A task, for tests.
    pub(crate) fn task() -> TaskEventContent {
        TaskEventContent {
            number: 3,
            title: "Fix login".into(),
            status: "todo".into(),
            assignees: vec![],
            labels: vec![],
            due: None,
            root_event_id: ruma::owned_event_id!("$root"),
            created_by: ruma::owned_user_id!("@alice:x"),
            created_at: 1,
            deleted: false,
        }
    }

    #[test]
    fn changes_say_what_changed_or_why_not() {
        let mut t = task();
        let bob = ruma::owned_user_id!("@bob:x");
        assert_eq!(apply(&mut t, &Change::Assign(vec![bob.clone()])), Ok("assigned @bob:x".into()));
        assert!(apply(&mut t, &Change::Assign(vec![bob.clone()])).is_err());
        assert_eq!(
            apply(&mut t, &Change::Status("doing".into())),
            Ok("moved it from todo to doing".into())
        );
        assert!(
            apply(&mut t, &Change::Label(vec![(true, "bug".into()), (false, "ui".into())])).is_ok()
        );
        assert_eq!(t.labels, vec!["bug"]);
        assert!(apply(&mut t, &Change::Label(vec![(false, "ui".into())])).is_err());
        assert!(apply(&mut t, &Change::Due(Some("2026-12-01".into()))).is_ok());
        assert!(apply(&mut t, &Change::Unassign(bob)).is_ok());
        assert!(apply(&mut t, &Change::Delete).is_ok());
        assert!(t.deleted);
    }

    #[test]
    fn titles_are_one_visible_line_and_labels_have_no_invisible_characters() {
        // A line break would forge a line of the root's plain body.
        assert!(validate_title("Fix it\nStatus: done").is_err());
        assert!(validate_title("tab\t").is_err());
        // Only invisible characters: nothing to see.
        assert!(validate_title("\u{200B}\u{2060}\u{FEFF}").is_err());
        assert!(validate_title("\u{202E}").is_err());
        // Zero-width joiners within text are text (emoji, scripts that join).
        assert!(validate_title("Ship 👩\u{200D}💻 \u{200B}!task delete #1").is_ok());
        assert!(validate_label("bug").is_ok());
        for hidden in ["bu\u{200B}g", "bug\u{FEFF}", "\u{202E}gub", "bug\u{0007}", "\u{E0062}ug"] {
            let err = validate_label(hidden).expect_err("an invisible character");
            assert!(err.contains("invisible"), "{err}");
        }
        let long = "x".repeat(10_000);
        let err = validate_label(&long).expect_err("too long");
        assert!(err.len() < 200, "the refusal repeats the label in part: {err}");
    }

    #[test]
    fn dates() {
        assert!(validate_due("2026-12-31").is_ok());
        assert!(validate_due("2028-02-29").is_ok());
        assert!(validate_due("2026-02-29").is_err());
        assert!(validate_due("2026-13-01").is_err());
        assert!(validate_due("26-1-1").is_err());
        assert!(validate_due("tomorrow").is_err());
    }

    /// Found by the `commands` fuzz target (`!task due #2 2028-+2-29`): a sign before a
    /// number passed for a digit, and due dates are compared as text (`due_before`).
    #[test]
    fn a_date_is_digits_only() {
        for bad in ["2028-+2-29", "+202-01-01", "2026-12-+1"] {
            assert!(validate_due(bad).is_err(), "{bad}");
        }
    }
}
