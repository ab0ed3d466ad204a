//! What the bot does with what it sees: whose invites it accepts, which messages are
//! commands for it, and how its replies are threaded.

use ruma::{
    EventId, UserId,
    events::{
        Mentions,
        relation::{InReplyTo, Thread},
        room::message::{MessageType, Relation, RoomMessageEventContent},
    },
};

use crate::config::Settings;

/// What to do with an invite of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteDecision {
    /// Join.
    Accept,
    /// Decline, saying why.
    Decline(String),
}

/// The bot accepts invites from users allowed to create boards and from members of a
/// board.
pub fn on_invite(settings: &Settings, inviter: &UserId, member_of_a_board: bool) -> InviteDecision {
    if settings.is_board_creator(inviter) || member_of_a_board {
        InviteDecision::Accept
    } else {
        InviteDecision::Decline(format!(
            "{inviter} may not invite Boardroom: only board members and users listed in permissions.board_creators can"
        ))
    }
}

/// The command text of a message, if it is one for the bot: an `m.text` message from a
/// user who is not the bot or a virtual user, whose body (after any reply fallback) starts
/// with `!` and a letter. Everything else is never answered.
pub fn command_text<'a>(
    settings: &Settings,
    sender: &UserId,
    content: &'a RoomMessageEventContent,
) -> Option<&'a str> {
    if settings.is_ours(sender) {
        return None;
    }
    let MessageType::Text(text) = &content.msgtype else {
        return None;
    };
    let body = strip_reply_fallback(&text.body).trim();
    let mut chars = body.chars();
    (chars.next() == Some('!') && chars.next().is_some_and(|c| c.is_alphabetic())).then_some(body)
}

/// Removes the `> <@user> quoted` lines that older clients put before a reply's text.
fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while let Some(line_end) = rest.find('\n') {
        if rest.starts_with('>') {
            rest = &rest[line_end + 1..];
        } else {
            break;
        }
    }
    if rest.starts_with('>') { "" } else { rest }
}

/// A reply to `event_id`: in the same thread when the command was in one, otherwise a
/// plain reply. Bot replies are `m.notice` with an explicit empty `m.mentions`, so they
/// never notify anyone by accident.
pub fn reply(
    event_id: &EventId,
    command_relation: Option<
        &Relation<ruma::events::room::message::RoomMessageEventContentWithoutRelation>,
    >,
    plain: String,
    html: String,
) -> RoomMessageEventContent {
    let mut content = RoomMessageEventContent::notice_html(plain, html);
    content.relates_to = Some(match command_relation {
        Some(Relation::Thread(thread)) => {
            Relation::Thread(Thread::reply(thread.event_id.clone(), event_id.to_owned()))
        }
        _ => {
            Relation::Reply(ruma::events::relation::Reply::new(InReplyTo::new(event_id.to_owned())))
        }
    });
    content.mentions = Some(Mentions::new());
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn settings() -> Settings {
        Config::from_toml_with_env(
            r#"
            [homeserver]
            url = "http://127.0.0.1:8008"
            server_name = "example.org"
            [appservice]
            url = "http://127.0.0.1:9009"
            as_token = "a"
            hs_token = "h"
            [database]
            path = "/tmp/x"
            [permissions]
            board_creators = ["@*:example.org"]
            "#,
            std::iter::empty(),
        )
        .and_then(|c| c.validate())
        .expect("settings")
    }

    #[test]
    fn commands_are_recognised_only_from_people_in_text_messages() {
        let s = settings();
        let alice = ruma::user_id!("@alice:example.org");
        let text = |b: &str| RoomMessageEventContent::text_plain(b);
        assert_eq!(command_text(&s, alice, &text("!help")), Some("!help"));
        assert_eq!(command_text(&s, alice, &text("  !help  ")), Some("!help"));
        assert_eq!(command_text(&s, alice, &text("hello !help")), None);
        assert_eq!(command_text(&s, alice, &text("!")), None);
        assert_eq!(command_text(&s, alice, &text("!!!")), None);
        assert_eq!(command_text(&s, alice, &RoomMessageEventContent::notice_plain("!help")), None);
        assert_eq!(
            command_text(&s, ruma::user_id!("@boardroom:example.org"), &text("!help")),
            None
        );
        assert_eq!(
            command_text(&s, ruma::user_id!("@boardroom_x:example.org"), &text("!help")),
            None
        );
        assert_eq!(
            command_text(&s, alice, &text("> <@bob:example.org> hi\n> there\n\n!help")),
            Some("!help")
        );
    }

    #[test]
    fn invites_from_board_creators_only() {
        let s = settings();
        assert_eq!(
            on_invite(&s, ruma::user_id!("@alice:example.org"), false),
            InviteDecision::Accept
        );
        assert_eq!(
            on_invite(&s, ruma::user_id!("@bob:elsewhere.org"), true),
            InviteDecision::Accept
        );
        assert!(matches!(
            on_invite(&s, ruma::user_id!("@mallory:elsewhere.org"), false),
            InviteDecision::Decline(_)
        ));
    }

    #[test]
    fn replies_stay_in_the_thread() {
        let root = ruma::owned_event_id!("$root");
        let cmd = ruma::event_id!("$cmd");
        let thread = Relation::Thread(Thread::plain(root.clone(), cmd.to_owned()));
        let r = reply(cmd, Some(&thread), "x".into(), "x".into());
        match r.relates_to {
            Some(Relation::Thread(t)) => {
                assert_eq!(t.event_id, root);
                assert_eq!(t.in_reply_to.map(|r| r.event_id), Some(cmd.to_owned()));
                assert!(!t.is_falling_back);
            }
            other => panic!("not a thread reply: {other:?}"),
        }
        let r = reply(cmd, None, "x".into(), "x".into());
        assert!(matches!(r.relates_to, Some(Relation::Reply(_))));
        let m = r.mentions.expect("explicit m.mentions");
        assert!(m.user_ids.is_empty() && !m.room);
    }
}
