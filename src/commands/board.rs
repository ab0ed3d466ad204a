//! `!board …`: create a board, manage its members and rooms, show it.

use ruma::OwnedUserId;

use super::{ParseError, malformed, user};

spec!(
    CREATE,
    ["board", "create"],
    "!board create <slug> [name…]",
    "create a board: a space with the rooms general and tasks; you become its owner",
    "anywhere",
    crate::boards::create::CREATE
);
spec!(
    INVITE,
    ["board", "invite"],
    "!board invite <@user:server>",
    "invite someone to the board",
    "a board room",
    crate::boards::members::INVITE
);
spec!(
    REMOVE,
    ["board", "remove"],
    "!board remove <@user:server>",
    "remove someone from the board and its private rooms",
    "a board room",
    crate::boards::members::REMOVE
);
spec!(
    ROOM,
    ["board", "room"],
    "!board room <name> [private [@user:server…]]",
    "add a chat room to the board (private: invite-only, with the listed members)",
    "a board room",
    crate::boards::rooms::ADD_ROOM
);
spec!(
    INFO,
    ["board", "info"],
    "!board info",
    "the board's rooms, members and roles",
    "a board room",
    crate::boards::info::INFO
);

/// A parsed `!board` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BoardCommand {
    /// `!board create <slug> [name…]`
    Create {
        /// The slug (validated later, with the reason in the reply).
        slug: String,
        /// The display name; the slug when empty.
        name: String,
    },
    /// `!board invite <@user>`
    Invite(OwnedUserId),
    /// `!board remove <@user>`
    Remove(OwnedUserId),
    /// `!board room <name> [private [@user…]]`
    Room {
        /// Short name.
        name: String,
        /// Invite-only.
        private: bool,
        /// Members of a private room besides the sender.
        members: Vec<OwnedUserId>,
    },
    /// `!board info`
    Info,
}

/// Parses the words after `!board`.
pub(crate) fn parse(words: &[&str]) -> Result<BoardCommand, ParseError> {
    let Some((sub, rest)) = words.split_first() else {
        return Err(ParseError::Malformed {
            usage: "!board create|invite|remove|room|info …",
            problem: "!board needs a subcommand".into(),
        });
    };
    match sub.to_lowercase().as_str() {
        "create" => match rest.split_first() {
            Some((slug, name)) => Ok(BoardCommand::Create {
                slug: (*slug).to_owned(),
                name: if name.is_empty() { (*slug).to_owned() } else { name.join(" ") },
            }),
            None => Err(malformed(&CREATE, "name the board's slug")),
        },
        "invite" => match rest {
            [u] => Ok(BoardCommand::Invite(user(&INVITE, u)?)),
            _ => Err(malformed(&INVITE, "name exactly one user")),
        },
        "remove" => match rest {
            [u] => Ok(BoardCommand::Remove(user(&REMOVE, u)?)),
            _ => Err(malformed(&REMOVE, "name exactly one user")),
        },
        "room" => match rest {
            [name] => {
                Ok(BoardCommand::Room { name: (*name).to_owned(), private: false, members: vec![] })
            }
            [name, flag, users @ ..] if flag.eq_ignore_ascii_case("private") => {
                Ok(BoardCommand::Room {
                    name: (*name).to_owned(),
                    private: true,
                    members: users.iter().map(|u| user(&ROOM, u)).collect::<Result<_, _>>()?,
                })
            }
            [] => Err(malformed(&ROOM, "name the room")),
            [_, other, ..] => Err(malformed(&ROOM, format!("expected `private`, found `{other}`"))),
        },
        "info" if rest.is_empty() => Ok(BoardCommand::Info),
        "info" => Err(malformed(&INFO, "!board info takes no arguments")),
        other => Err(ParseError::Malformed {
            usage: "!board create|invite|remove|room|info …",
            problem: format!("unknown subcommand `{other}`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<BoardCommand, ParseError> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn board_commands() {
        assert_eq!(
            p("create launch Product Launch"),
            Ok(BoardCommand::Create { slug: "launch".into(), name: "Product Launch".into() })
        );
        assert_eq!(p("create x"), Ok(BoardCommand::Create { slug: "x".into(), name: "x".into() }));
        assert!(matches!(p("create"), Err(ParseError::Malformed { .. })));
        assert_eq!(
            p("invite @bob:example.org"),
            Ok(BoardCommand::Invite(ruma::owned_user_id!("@bob:example.org")))
        );
        assert_eq!(
            p("invite https://matrix.to/#/@bob:example.org"),
            Ok(BoardCommand::Invite(ruma::owned_user_id!("@bob:example.org")))
        );
        assert!(
            matches!(p("invite bob"), Err(ParseError::Malformed { usage, .. }) if usage == INVITE.usage)
        );
        assert!(matches!(p("remove"), Err(ParseError::Malformed { .. })));
        assert_eq!(
            p("room design private @a:x"),
            Ok(BoardCommand::Room {
                name: "design".into(),
                private: true,
                members: vec![ruma::owned_user_id!("@a:x")]
            })
        );
        assert!(matches!(p("room design secret"), Err(ParseError::Malformed { .. })));
        assert_eq!(p("info"), Ok(BoardCommand::Info));
        assert!(matches!(p("frobnicate"), Err(ParseError::Malformed { .. })));
        assert!(matches!(p(""), Err(ParseError::Malformed { .. })));
    }
}
