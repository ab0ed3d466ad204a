//! How a task looks in the room: its root message.

use ruma::UserId;

use crate::{domain::task::TaskEventContent, matrix::html::escape_html};

fn pill(user: &UserId) -> String {
    format!("<a href=\"https://matrix.to/#/{user}\">{}</a>", escape_html(user.as_str()))
}

/// The root message's text: number, title, status, assignees, labels, due.
pub fn render_root(slug: &str, t: &TaskEventContent) -> (String, String) {
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
            t.assignees.iter().map(|u| pill(u)).collect::<Vec<_>>().join(", ")
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
