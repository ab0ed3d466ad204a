//! How a task looks in the room: its root message, edits of it, the feed entries in its
//! thread, and links to the thread.

use ruma::{
    EventId, OwnedUserId, RoomId,
    events::{
        Mentions,
        relation::{Replacement, Thread},
        room::message::{
            Relation, RoomMessageEventContent, RoomMessageEventContentWithoutRelation,
        },
    },
};

use crate::{
    context::Context,
    domain::{Action, action::derived_txn_id, task::TaskEventContent},
    matrix::html::{escape_html, event_uri, user_pill},
};

/// The root message's text: number, title, status, assignees, labels, due.
pub(crate) fn render_root(slug: &str, t: &TaskEventContent) -> (String, String) {
    let mut plain = format!("{slug}#{} {}", t.number, t.title);
    let mut html = format!("<b>{slug}#{}</b> {}", t.number, escape_html(&t.title));
    if t.deleted {
        plain = format!("{plain} (deleted)");
        html = format!("<del>{html}</del> (deleted)");
        return (plain, html);
    }
    plain.push_str(&format!("\nStatus: {}", t.status));
    html.push_str(&format!("<br>Status: <b>{}</b>", escape_html(&t.status)));
    if !t.assignees.is_empty() {
        plain.push_str(&format!(
            "\nAssigned: {}",
            t.assignees.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
        ));
        html.push_str(&format!(
            "<br>Assigned: {}",
            t.assignees.iter().map(|u| user_pill(u)).collect::<Vec<_>>().join(", ")
        ));
    }
    if !t.labels.is_empty() {
        plain.push_str(&format!("\nLabels: {}", t.labels.join(", ")));
        html.push_str(&format!("<br>Labels: {}", escape_html(&t.labels.join(", "))));
    }
    if let Some(due) = &t.due {
        plain.push_str(&format!("\nDue: {due}"));
        html.push_str(&format!("<br>Due: {}", escape_html(due)));
    }
    (plain, html)
}

/// A link to a task's thread.
pub(crate) fn thread_link(ctx: &Context, room: &RoomId, root: &EventId) -> String {
    event_uri(room, root, &ctx.settings.server_name)
}

/// A reply in the task's thread saying who changed what. Quiet (`m.notice`) unless it
/// names people to notify: then `m.text` with `m.mentions` and pills.
pub(crate) fn feed_entry(
    room: &RoomId,
    root: &EventId,
    reply_to: Option<&EventId>,
    plain: String,
    notify: &[OwnedUserId],
    cause: &EventId,
    index: usize,
) -> Action {
    let mut content = if notify.is_empty() {
        RoomMessageEventContent::notice_html(plain.clone(), escape_html(&plain))
    } else {
        let mut html = escape_html(&plain);
        for u in notify {
            html = html.replace(&escape_html(u.as_str()), &user_pill(u));
        }
        RoomMessageEventContent::text_html(plain, html)
    };
    content.relates_to = Some(Relation::Thread(match reply_to {
        Some(r) => Thread::reply(root.to_owned(), r.to_owned()),
        None => Thread::plain(root.to_owned(), root.to_owned()),
    }));
    content.mentions = Some(Mentions::with_user_ids(notify.iter().cloned()));
    Action::SendMessage {
        room_id: room.to_owned(),
        as_user: None,
        txn_id: derived_txn_id(cause.as_str(), index),
        content: Box::new(content),
    }
}

/// An edit of the task's root that shows its current fields.
pub(crate) fn root_edit(
    room: &RoomId,
    slug: &str,
    fields: &TaskEventContent,
    cause: &EventId,
    index: usize,
) -> Action {
    let (plain, html) = render_root(slug, fields);
    let mut new = RoomMessageEventContentWithoutRelation::notice_html(plain.clone(), html.clone());
    new.mentions = Some(Mentions::new());
    let mut edit = RoomMessageEventContent::notice_html(format!("* {plain}"), format!("* {html}"));
    edit.relates_to =
        Some(Relation::Replacement(Replacement::new(fields.root_event_id.clone(), new)));
    edit.mentions = Some(Mentions::new());
    Action::SendMessage {
        room_id: room.to_owned(),
        as_user: None,
        txn_id: derived_txn_id(cause.as_str(), index),
        content: Box::new(edit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::tests::task;

    #[test]
    fn root_shows_the_current_state() {
        let mut t = task();
        t.assignees.push(ruma::owned_user_id!("@bob:x"));
        t.labels.push("bug".into());
        let (plain, html) = render_root("launch", &t);
        assert_eq!(plain, "launch#3 Fix login\nStatus: todo\nAssigned: @bob:x\nLabels: bug");
        assert!(html.contains("https://matrix.to/#/@bob:x"), "{html}");
    }
}
