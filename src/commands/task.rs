//! `!task …` and `!board columns`: tasks in the board's `tasks` room.

use super::{CommandSpec, ParseError, malformed, user};
#[cfg(test)]
use crate::domain::task::MAX_TITLE_CHARS;
use crate::domain::task::{Change, validate_due, validate_label, validate_title};

spec!(
    NEW,
    ["task", "new"],
    "!task new <title…>",
    "create a task; its thread appears in the tasks room",
    "a board room",
    crate::tasks::create::NEW
);
spec!(
    ASSIGN,
    ["task", "assign"],
    "!task assign [#n] <@user:server…>",
    "assign the task (the assignees are notified)",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    UNASSIGN,
    ["task", "unassign"],
    "!task unassign [#n] <@user:server>",
    "remove an assignee",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    STATUS,
    ["task", "status"],
    "!task status [#n] <column>",
    "move the task to a column",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    RENAME,
    ["task", "rename"],
    "!task rename [#n] <title…>",
    "change the title",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    LABEL,
    ["task", "label"],
    "!task label [#n] <+label|-label…>",
    "add or remove labels",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    DUE,
    ["task", "due"],
    "!task due [#n] <YYYY-MM-DD|none>",
    "set or clear the due date",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    DELETE,
    ["task", "delete"],
    "!task delete [#n]",
    "delete the task (its creator or a board admin)",
    "the task's thread, or #n in a board room",
    crate::tasks::change::CHANGE
);
spec!(
    LIST,
    ["task", "list"],
    "!task list [column]",
    "the board's tasks by column, with links to their threads",
    "a board room",
    crate::tasks::list::LIST
);
spec!(
    COLUMNS,
    ["board", "columns"],
    "!board columns <a,b,…>",
    "set the board's ordered columns",
    "a board room",
    crate::tasks::columns::COLUMNS
);

/// A parsed `!task` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskCommand {
    /// `!task new <title…>`
    New(String),
    /// A change to a task: `#n` or the thread's task.
    Change {
        /// `#n`, when given.
        number: Option<u64>,
        /// What changes.
        change: Change,
        /// The form, for refusals.
        usage: &'static str,
    },
    /// `!task list [column]`
    List(Option<String>),
}

fn title(spec: &CommandSpec, words: &[&str]) -> Result<String, ParseError> {
    let t = words.join(" ");
    validate_title(&t).map_err(|why| malformed(spec, why))?;
    Ok(t)
}

/// Parses the words after `!task`.
pub(crate) fn parse(words: &[&str]) -> Result<TaskCommand, ParseError> {
    let Some((sub, rest)) = words.split_first() else {
        return Err(ParseError::Malformed {
            usage: "!task new|assign|unassign|status|rename|label|due|delete|list …",
            problem: "!task needs a subcommand".into(),
        });
    };
    let sub = sub.to_lowercase();
    if sub == "new" {
        return if rest.is_empty() {
            Err(malformed(&NEW, "give the task a title"))
        } else {
            Ok(TaskCommand::New(title(&NEW, rest)?))
        };
    }
    if sub == "list" {
        return match rest {
            [] => Ok(TaskCommand::List(None)),
            [c] => Ok(TaskCommand::List(Some(c.to_lowercase()))),
            _ => Err(malformed(&LIST, "name at most one column")),
        };
    }
    let spec = match sub.as_str() {
        "assign" => &ASSIGN,
        "unassign" => &UNASSIGN,
        "status" => &STATUS,
        "rename" => &RENAME,
        "label" => &LABEL,
        "due" => &DUE,
        "delete" => &DELETE,
        other => {
            return Err(ParseError::Malformed {
                usage: "!task new|assign|unassign|status|rename|label|due|delete|list …",
                problem: format!("unknown subcommand `{other}`"),
            });
        }
    };
    let (number, args) = match rest.split_first() {
        Some((first, tail)) if first.starts_with('#') => {
            let n = first[1..].parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                malformed(spec, format!("`{first}` is not a task number such as #3"))
            })?;
            (Some(n), tail)
        }
        _ => (None, rest),
    };
    let change = match sub.as_str() {
        "assign" if !args.is_empty() => {
            Change::Assign(args.iter().map(|u| user(spec, u)).collect::<Result<_, _>>()?)
        }
        "assign" => return Err(malformed(spec, "name who to assign")),
        "unassign" => match args {
            [u] => Change::Unassign(user(spec, u)?),
            _ => return Err(malformed(spec, "name exactly one user")),
        },
        "status" => match args {
            [c] => Change::Status(c.to_lowercase()),
            _ => return Err(malformed(spec, "name exactly one column")),
        },
        "rename" if !args.is_empty() => Change::Rename(title(spec, args)?),
        "rename" => return Err(malformed(spec, "give the new title")),
        "label" if !args.is_empty() => {
            let mut ops = Vec::new();
            for a in args {
                let (add, name) = match a.split_at_checked(1) {
                    Some(("+", n)) => (true, n),
                    Some(("-", n)) => (false, n),
                    _ => return Err(malformed(spec, format!("`{a}` must start with + or -"))),
                };
                validate_label(name).map_err(|e| malformed(spec, e))?;
                ops.push((add, name.to_owned()));
            }
            Change::Label(ops)
        }
        "label" => return Err(malformed(spec, "name labels to add (+x) or remove (-x)")),
        "due" => match args {
            [d] if d.eq_ignore_ascii_case("none") => Change::Due(None),
            [d] => Change::Due(Some(validate_due(d).map_err(|e| malformed(spec, e))?)),
            _ => return Err(malformed(spec, "give one date or none")),
        },
        _ => {
            if !args.is_empty() {
                return Err(malformed(spec, "!task delete takes no arguments besides #n"));
            }
            Change::Delete
        }
    };
    Ok(TaskCommand::Change { number, change, usage: spec.usage })
}

/// Parses `!board columns a,b,c` (the words after `columns`).
pub(crate) fn parse_columns(words: &[&str]) -> Result<Vec<String>, ParseError> {
    crate::domain::board::columns_from(&words.join("")).map_err(|why| malformed(&COLUMNS, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<TaskCommand, ParseError> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn task_commands() {
        assert_eq!(p("new Fix the login page"), Ok(TaskCommand::New("Fix the login page".into())));
        assert!(p("new").is_err());
        // Titles are bounded in characters, not bytes.
        let long = "é".repeat(MAX_TITLE_CHARS);
        assert_eq!(p(&format!("new {long}")), Ok(TaskCommand::New(long.clone())));
        let err = p(&format!("new {long}x")).expect_err("too long");
        assert!(format!("{err:?}").contains("at most 256 characters"), "{err:?}");
        assert!(p(&format!("rename #1 {long}x")).is_err());
        assert_eq!(
            p("status #3 Doing"),
            Ok(TaskCommand::Change {
                number: Some(3),
                change: Change::Status("doing".into()),
                usage: STATUS.usage
            })
        );
        assert_eq!(
            p("assign @a:x @b:x"),
            Ok(TaskCommand::Change {
                number: None,
                change: Change::Assign(vec![
                    ruma::owned_user_id!("@a:x"),
                    ruma::owned_user_id!("@b:x")
                ]),
                usage: ASSIGN.usage
            })
        );
        assert!(p("status #x doing").is_err());
        assert!(p("status #0 doing").is_err());
        assert!(p("label bug").is_err());
        assert!(
            matches!(p("label +bug -ui"), Ok(TaskCommand::Change { change: Change::Label(ops), .. }) if ops.len() == 2)
        );
        assert!(p("due 2026-02-30").is_err());
        assert!(matches!(p("due none"), Ok(TaskCommand::Change { change: Change::Due(None), .. })));
        assert!(matches!(
            p("delete #2"),
            Ok(TaskCommand::Change { number: Some(2), change: Change::Delete, .. })
        ));
        assert!(p("delete now").is_err());
        assert_eq!(p("list"), Ok(TaskCommand::List(None)));
        assert!(p("frob").is_err());
    }

    #[test]
    fn columns() {
        assert_eq!(
            parse_columns(&["todo,", "doing,", "done"]),
            Ok(vec!["todo".into(), "doing".into(), "done".into()])
        );
        assert!(parse_columns(&["a,a"]).is_err());
        assert!(parse_columns(&[""]).is_err());
        assert!(parse_columns(&["To Do"]).is_err());
    }
}
