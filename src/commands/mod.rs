//! Chat commands: declared as data in [`REGISTRY`] (name, usage, summary, who may run it),
//! parsed into [`Command`], with help generated from the registry, and run by [`dispatch`]:
//! parse, call the operation, render its result or refusal. One file per family.

/// Declares a [`CommandSpec`] constant; who may run it is the operation's own
/// [`crate::domain::op::OpSpec`], declared once beside the operation.
macro_rules! spec {
    ($name:ident, [$($w:literal),+], $usage:literal, $summary:literal, $context:literal, $op:path) => {
        #[doc = concat!("`", $usage, "`")]
        pub(crate) const $name: $crate::commands::CommandSpec = $crate::commands::CommandSpec {
            words: &[$($w),+],
            usage: $usage,
            summary: $summary,
            context: $context,
            permission: $op.permission,
        };
    };
}

pub(crate) mod board;
pub(crate) mod dispatch;
pub(crate) mod help;
mod render;
pub(crate) mod task;

use crate::{
    domain::text::{MAX_ECHO_CHARS, excerpt},
    matrix::html::escape_html,
};

/// The longest refusal a reply repeats, in characters: refusals quote what was written,
/// and what was written may be as long as a message. Together with escaping it keeps a
/// reply well within one event.
pub(crate) const MAX_PROBLEM_CHARS: usize = 1_000;

pub(crate) use crate::domain::op::Permission;

/// One command, as data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommandSpec {
    /// The words that name it, `!` excluded: `["help"]`, `["board", "create"]`.
    pub words: &'static [&'static str],
    /// The right form.
    pub usage: &'static str,
    /// What it does, one line.
    pub summary: &'static str,
    /// Where it may be used.
    pub context: &'static str,
    /// Who may run it.
    pub permission: Permission,
}

/// Every command Boardroom understands.
pub(crate) const REGISTRY: &[CommandSpec] = &[
    CommandSpec {
        words: &["help"],
        usage: "!help",
        summary: "list the commands",
        context: "anywhere",
        permission: Permission::Anyone,
    },
    board::CREATE,
    board::INVITE,
    board::REMOVE,
    board::ROOM,
    board::INFO,
    task::COLUMNS,
    task::NEW,
    task::ASSIGN,
    task::UNASSIGN,
    task::STATUS,
    task::RENAME,
    task::LABEL,
    task::DUE,
    task::DELETE,
    task::LIST,
];

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `!help`
    Help,
    /// A `!board …` command.
    Board(board::BoardCommand),
    /// `!board columns a,b,…`
    Columns(Vec<String>),
    /// A `!task …` command.
    Task(task::TaskCommand),
}

/// Why a message that looks like a command is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// No such command.
    Unknown {
        /// What was written after `!`.
        name: String,
    },
    /// A known command written wrongly.
    Malformed {
        /// The right form.
        usage: &'static str,
        /// What was wrong.
        problem: String,
    },
}

/// Parses a command text (it starts with `!`).
pub(crate) fn parse(text: &str) -> Result<Command, ParseError> {
    let mut words = text.trim_start_matches('!').split_whitespace();
    let name = words.next().unwrap_or_default().to_lowercase();
    let rest: Vec<&str> = words.collect();
    match name.as_str() {
        "help" => {
            if rest.is_empty() {
                Ok(Command::Help)
            } else {
                Err(ParseError::Malformed {
                    usage: "!help",
                    problem: "!help takes no arguments".into(),
                })
            }
        }
        "board" if rest.first().is_some_and(|w| w.eq_ignore_ascii_case("columns")) => {
            task::parse_columns(&rest[1..]).map(Command::Columns)
        }
        "board" => board::parse(&rest).map(Command::Board),
        "task" => task::parse(&rest).map(Command::Task),
        _ => Err(ParseError::Unknown { name }),
    }
}

fn malformed(spec: &CommandSpec, problem: impl Into<String>) -> ParseError {
    ParseError::Malformed { usage: spec.usage, problem: problem.into() }
}

/// A user id argument; a pasted pill link works too.
fn user(spec: &CommandSpec, word: &str) -> Result<ruma::OwnedUserId, ParseError> {
    let word = word.trim_start_matches("https://matrix.to/#/");
    ruma::OwnedUserId::try_from(word).map_err(|_| {
        malformed(spec, format!("`{word}` is not a user id such as @alice:example.org"))
    })
}

/// A reply, as plain text and HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// `body`
    pub plain: String,
    /// `formatted_body`
    pub html: String,
}

/// Bytes of `body` and `formatted_body` together that a listing stops adding items at:
/// a Matrix event may have 65,536 bytes in all, and JSON escaping and the rest of the
/// event need room too.
pub(crate) const LISTING_BUDGET: usize = 32_000;

/// A reply that lists items: headings always go in; items go in while the reply stays
/// within [`LISTING_BUDGET`], and the rest are counted, so that a long list still fits
/// in one event.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    plain: String,
    html: String,
    left_out: usize,
}

impl Listing {
    /// Starts with `plain` and `html`.
    pub(crate) fn new(plain: String, html: String) -> Self {
        Self { plain, html, left_out: 0 }
    }

    /// Adds text that always goes in (headings, closing tags).
    pub(crate) fn always(&mut self, plain: &str, html: &str) {
        self.plain.push_str(plain);
        self.html.push_str(html);
    }

    /// Adds an item if it fits; otherwise counts it as left out.
    pub(crate) fn item(&mut self, plain: &str, html: &str) {
        if self.plain.len() + self.html.len() + plain.len() + html.len() <= LISTING_BUDGET {
            self.always(plain, html);
        } else {
            self.left_out += 1;
        }
    }

    /// Items counted but not shown so far.
    pub(crate) fn left_out(&self) -> usize {
        self.left_out
    }

    /// The reply.
    pub(crate) fn into_reply(self) -> Reply {
        Reply { plain: self.plain.trim_end().to_owned(), html: self.html }
    }
}

/// The reply to a message that is not a valid command: what was wrong and the right form.
pub(crate) fn error_reply(err: &ParseError) -> Reply {
    match err {
        ParseError::Unknown { name } => {
            // What was written is repeated only in part: a long word would not fit a reply.
            let name = excerpt(name, MAX_ECHO_CHARS);
            let mut known: Vec<String> =
                REGISTRY.iter().map(|c| format!("!{}", c.words[0])).collect();
            known.dedup();
            Reply {
                plain: format!(
                    "Unknown command !{name}. Known commands: {}. Send !help for details.",
                    known.join(", ")
                ),
                html: format!(
                    "Unknown command <code>!{}</code>. Known commands: {}. Send <code>!help</code> for details.",
                    escape_html(&name),
                    known
                        .iter()
                        .map(|k| format!("<code>{}</code>", escape_html(k)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        ParseError::Malformed { usage, problem } => {
            let problem = excerpt(problem, MAX_PROBLEM_CHARS);
            Reply {
                plain: format!("{problem}. Usage: {usage}"),
                html: format!(
                    "{}. Usage: <code>{}</code>",
                    escape_html(&problem),
                    escape_html(usage)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_keeps_headings_and_stops_items_at_the_budget() {
        let mut l = Listing::new("Items:".into(), "<p>Items:</p>".into());
        let item = "x".repeat(1000);
        for _ in 0..100 {
            l.item(&item, &item);
        }
        l.always("\nend", "<p>end</p>");
        assert_eq!(l.left_out(), 100 - (LISTING_BUDGET - 19) / 2000);
        let reply = l.into_reply();
        assert!(reply.plain.len() + reply.html.len() <= LISTING_BUDGET + 20);
        assert!(reply.plain.ends_with("end") && reply.html.ends_with("<p>end</p>"));
    }

    #[test]
    fn parse_known_unknown_and_malformed() {
        assert_eq!(parse("!help"), Ok(Command::Help));
        assert_eq!(parse("!HELP"), Ok(Command::Help));
        assert_eq!(parse("!nonsense x"), Err(ParseError::Unknown { name: "nonsense".into() }));
        assert!(matches!(parse("!help me"), Err(ParseError::Malformed { usage: "!help", .. })));
    }

    #[test]
    fn unknown_command_reply_names_it_and_the_known_ones() {
        let r = error_reply(&ParseError::Unknown { name: "nonsense<b>".into() });
        assert!(r.plain.contains("!nonsense<b>") && r.plain.contains("!help"), "{}", r.plain);
        assert!(r.html.contains("!nonsense&lt;b&gt;"), "{}", r.html);
    }

    #[test]
    fn every_registry_usage_starts_with_its_words() {
        for c in REGISTRY {
            assert!(c.usage.starts_with(&format!("!{}", c.words.join(" "))), "{}", c.usage);
        }
    }
}

#[cfg(test)]
mod docs_drift {
    /// docs/commands.md names every command in the registry.
    #[test]
    fn the_commands_page_lists_every_command() {
        let page = include_str!("../../docs/commands.md");
        for c in super::REGISTRY {
            assert!(
                page.contains(&format!("`{}`", c.usage)),
                "docs/commands.md misses `{}`",
                c.usage
            );
        }
    }
}
