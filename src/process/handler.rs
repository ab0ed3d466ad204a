//! One inbound entry → the actions it calls for. A bad event is logged and skipped.

use ruma::{
    events::{
        AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
        receipt::ReceiptEvent, room::member::MembershipState,
    },
    serde::Raw,
};

use super::Context;
use crate::{
    commands::{self, Command},
    domain::{
        Action,
        action::derived_txn_id,
        bot::{self, InviteDecision},
    },
    store::inbound::{EntryKind, PendingEntry},
};

/// Handles one entry.
pub fn handle(ctx: &Context, entry: &PendingEntry) -> Vec<Action> {
    match entry.kind {
        EntryKind::Timeline => {
            let raw: Raw<AnyTimelineEvent> = match serde_json::from_slice(&entry.json) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an event that is not JSON");
                    return Vec::new();
                }
            };
            match raw.deserialize() {
                Ok(event) => handle_timeline(ctx, event),
                Err(e) => {
                    let event_id = raw.get_field::<String>("event_id").ok().flatten();
                    tracing::warn!(error = %e, event_id, "skipping an event that does not parse");
                    Vec::new()
                }
            }
        }
        EntryKind::Receipt => {
            match serde_json::from_slice::<ReceiptEvent>(&entry.json) {
                Ok(receipt) => {
                    tracing::debug!(room_id = %receipt.room_id, events = receipt.content.0.len(), "receipt");
                }
                Err(e) => tracing::warn!(error = %e, "skipping a receipt that does not parse"),
            }
            Vec::new()
        }
    }
}

fn handle_timeline(ctx: &Context, event: AnyTimelineEvent) -> Vec<Action> {
    let settings = &ctx.settings;
    match event {
        AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(ev))) => {
            if ev.state_key != settings.bot_user_id
                || ev.content.membership != MembershipState::Invite
            {
                return Vec::new();
            }
            match bot::on_invite(settings, &ev.sender) {
                InviteDecision::Accept => {
                    tracing::info!(room_id = %ev.room_id, inviter = %ev.sender, "accepting invite");
                    vec![Action::JoinRoom { room_id: ev.room_id, as_user: None }]
                }
                InviteDecision::Decline(reason) => {
                    tracing::info!(room_id = %ev.room_id, inviter = %ev.sender, "declining invite");
                    vec![Action::LeaveRoom {
                        room_id: ev.room_id,
                        as_user: None,
                        reason: Some(reason),
                    }]
                }
            }
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
            MessageLikeEvent::Original(ev),
        )) => {
            let Some(text) = bot::command_text(settings, &ev.sender, &ev.content) else {
                return Vec::new();
            };
            let reply = match commands::parse(text) {
                Ok(Command::Help) => commands::help::help(),
                Err(err) => commands::error_reply(&err),
            };
            tracing::info!(event_id = %ev.event_id, sender = %ev.sender, "answering a command");
            let content =
                bot::reply(&ev.event_id, ev.content.relates_to.as_ref(), reply.plain, reply.html);
            vec![Action::SendMessage {
                room_id: ev.room_id,
                as_user: None,
                txn_id: derived_txn_id(ev.event_id.as_str(), 0),
                content: Box::new(content),
            }]
        }
        _ => Vec::new(),
    }
}
