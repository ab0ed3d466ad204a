//! How the operations' results read in a room: plain text and HTML.

use super::{Listing, Reply};
use crate::{
    boards::{create::CreatedBoard, info::BoardInfo, members::MemberChange, rooms::AddedRoom},
    domain::{board::RoomKind, op::Request},
    matrix::html::{alias_link, escape_html},
    tasks::{change::TaskChanged, columns::ColumnsSet, create::TaskCreated, list::TaskList},
};

/// A plain-text reply; its HTML keeps the line breaks.
pub(super) fn text(plain: String) -> Reply {
    Reply { html: escape_html(&plain).replace('\n', "<br>"), plain }
}

pub(super) fn board_created(c: &CreatedBoard, req: &Request<'_>) -> Reply {
    let (name, slug, owner) = (&c.board.name, &c.board.slug, req.actor.user_id());
    let (space, general, tasks) = (&c.space_alias, &c.general, &c.tasks);
    let plain = format!(
        "Board {name} ({slug}) created: the space {space} with the rooms {general} and {tasks}. \
         {owner} is its owner and is invited to all three. Invite others with !board invite @user:server in a board room.",
    );
    let html = format!(
        "Board <b>{}</b> (<code>{slug}</code>) created: the space {} with the rooms {} and {}. \
         {} is its owner and is invited to all three. Invite others with <code>!board invite @user:server</code> in a board room.",
        escape_html(name),
        alias_link(space),
        alias_link(general),
        alias_link(tasks),
        escape_html(owner.as_str())
    );
    Reply { plain, html }
}

pub(super) fn invited(c: &MemberChange) -> Reply {
    text(format!(
        "Invited {} to the board {}. Once they join its space, they can join its rooms.",
        c.user, c.board_name
    ))
}

pub(super) fn removed(c: &MemberChange) -> Reply {
    text(format!("Removed {} from the board {} and its private rooms.", c.user, c.board_name))
}

pub(super) fn room_added(r: &AddedRoom) -> Reply {
    text(if r.private {
        format!(
            "Added the private room {} to the board {}; its members are invited.",
            r.alias, r.board_name
        )
    } else {
        format!(
            "Added the room {} to the board {}; board members can join it from the space.",
            r.alias, r.board_name
        )
    })
}

pub(super) fn board_info(i: &BoardInfo) -> Reply {
    let board = &i.board;
    let mut plain = format!("Board {} ({})\nRooms:\n", board.name, board.slug);
    let mut html = format!(
        "<p>Board <b>{}</b> (<code>{}</code>)</p><p>Rooms:</p><ul>",
        escape_html(&board.name),
        board.slug
    );
    for r in &i.rooms {
        let kind = match (r.kind, r.private) {
            (RoomKind::Tasks, _) => "tasks",
            (RoomKind::Chat, true) => "private chat",
            (RoomKind::Chat, false) => "chat",
        };
        let problem = r.problem.map(|p| format!(" ⚠ {p}")).unwrap_or_default();
        plain.push_str(&format!("  {} ({kind}) {}{problem}\n", r.name, r.alias));
        html.push_str(&format!(
            "<li>{} ({kind}) {}{}</li>",
            escape_html(&r.name),
            alias_link(&r.alias),
            escape_html(&problem)
        ));
    }
    plain.push_str("Members:\n");
    html.push_str("</ul><p>Members:</p><ul>");
    let mut listing = Listing::new(plain, html);
    for m in &i.members {
        let invited = if m.invited { ", invited" } else { "" };
        listing.item(
            &format!("  {} ({}{invited})\n", m.user_id, m.role.as_str()),
            &format!("<li>{} ({}{invited})</li>", escape_html(m.user_id.as_str()), m.role.as_str()),
        );
    }
    if listing.left_out() > 0 {
        let more = format!("  and {} more\n", listing.left_out());
        listing.always(&more, &format!("<li>and {} more</li>", listing.left_out()));
    }
    listing.always("", "</ul>");
    let counts: Vec<String> = i.columns.iter().map(|(c, n)| format!("{c} {n}")).collect();
    listing.always(
        &format!("Tasks: {}\n", counts.join(", ")),
        &format!("<p>Tasks: {}</p>", escape_html(&counts.join(", "))),
    );
    listing.into_reply()
}

pub(super) fn columns_set(s: &ColumnsSet) -> Reply {
    text(format!("The columns of {} are now: {}.", s.board_name, s.columns.join(", ")))
}

pub(super) fn task_created(t: &TaskCreated) -> Reply {
    let (slug, number, title, link) = (&t.slug, t.fields.number, &t.fields.title, &t.link);
    Reply {
        plain: format!("Created {slug}#{number} “{title}”: {link}"),
        html: format!(
            "Created <a href=\"{}\">{slug}#{number}</a> “{}”",
            escape_html(link),
            escape_html(title)
        ),
    }
}

/// `None` when the command was written in the task's thread: the feed entry answers it.
pub(super) fn task_changed(t: &TaskChanged) -> Option<Reply> {
    if t.in_thread {
        return None;
    }
    let link = &t.link;
    Some(Reply {
        plain: format!("{}: {link}", t.feed_text),
        html: format!(
            "{} (<a href=\"{}\">thread</a>)",
            escape_html(&t.feed_text),
            escape_html(link)
        ),
    })
}

pub(super) fn task_list(l: &TaskList, column: Option<&str>) -> Reply {
    let mut listing = Listing::new(
        format!("Tasks of {}:", l.board_name),
        format!("<p>Tasks of <b>{}</b>:</p>", escape_html(&l.board_name)),
    );
    let mut unread = 0;
    for c in &l.columns {
        listing.always(
            &format!("\n{} ({})", c.name, c.count),
            &format!("<p><b>{}</b> ({})</p><ul>", escape_html(&c.name), c.count),
        );
        for t in &c.tasks {
            listing.item(
                &format!("\n  #{} {} {}", t.number, t.title, t.link),
                &format!(
                    "<li><a href=\"{}\">#{}</a> {}</li>",
                    escape_html(&t.link),
                    t.number,
                    escape_html(&t.title)
                ),
            );
        }
        unread += c.count.saturating_sub(c.tasks.len() as u64);
        listing.always("", "</ul>");
    }
    let n = listing.left_out() as u64 + unread;
    if n > 0 {
        let more = match column {
            None => format!("{n} more tasks are not shown; !task list <column> lists one column."),
            Some(c) => format!("{n} more tasks in {c} are not shown: one message holds no more."),
        };
        listing.always(&format!("\n{more}"), &format!("<p>{}</p>", escape_html(&more)));
    }
    listing.into_reply()
}

#[cfg(test)]
mod tests {
    use ruma::events::room::message::RoomMessageEventContent;

    use super::*;
    use crate::{
        commands::{dispatch::refusal_reply, error_reply, parse},
        domain::{
            mention,
            op::Refusal,
            task::{TaskEventContent, tests::task, validate_label, validate_title},
        },
        matrix::html::hostile::{STRINGS, assert_inert},
        tasks::{
            list::{ColumnTasks, TaskLine},
            render::{feed_entry, render_root, root_edit},
        },
    };

    /// Labels need no spaces, commas or invisible characters.
    const LABELS: &[&str] =
        &["<b>x</b>", "javascript:alert(1)", "\"><i>", "&amp;", "<img/src=x/onerror=alert(1)>"];

    fn reply(r: &Reply) -> RoomMessageEventContent {
        RoomMessageEventContent::notice_html(r.plain.clone(), r.html.clone())
    }

    fn hostile_task(title: &str) -> TaskEventContent {
        let mut t = task();
        t.title = title.to_owned();
        t.labels = LABELS.iter().map(|l| (*l).to_owned()).collect();
        t.assignees.push(ruma::owned_user_id!("@bob:x"));
        t
    }

    #[test]
    fn hostile_titles_and_labels_render_as_text_everywhere_a_task_shows() {
        for l in LABELS {
            validate_label(l).expect("a valid label");
        }
        let link = "https://matrix.to/#/!tasks:x/$root?via=x".to_owned();
        for title in STRINGS {
            validate_title(title).expect("a valid title");
            let t = hostile_task(title);
            let (plain, html) = render_root("launch", &t);
            let root = RoomMessageEventContent::notice_html(plain, html);
            let mut wants = vec![*title];
            wants.extend(LABELS);
            assert_inert(&root, &wants);

            let room = ruma::room_id!("!tasks:x");
            let cause = ruma::event_id!("$cause");
            let crate::domain::Action::SendMessage { content, .. } =
                root_edit(room, "launch", &t, cause, 1)
            else {
                panic!("a message")
            };
            assert_inert(&content, &wants);

            let said = format!("@alice:x renamed it to “{title}” and assigned @bob:x");
            let notify = [ruma::owned_user_id!("@bob:x")];
            for notify in [&notify[..], &[]] {
                let crate::domain::Action::SendMessage { content, .. } =
                    feed_entry(room, &t.root_event_id, None, said.clone(), notify, cause, 2)
                else {
                    panic!("a message")
                };
                assert_inert(&content, &[title]);
            }

            let created =
                TaskCreated { slug: "launch".into(), fields: t.clone(), link: link.clone() };
            assert_inert(&reply(&task_created(&created)), &[title]);
            let changed = TaskChanged {
                fields: t.clone(),
                feed_text: said.clone(),
                in_thread: false,
                link: link.clone(),
            };
            assert_inert(&reply(&task_changed(&changed).expect("a reply")), &[title]);

            let list = TaskList {
                board_name: (*title).to_owned(),
                columns: vec![ColumnTasks {
                    name: "todo".into(),
                    count: 1,
                    tasks: vec![TaskLine {
                        number: 1,
                        title: (*title).to_owned(),
                        link: link.clone(),
                    }],
                }],
            };
            assert_inert(&reply(&task_list(&list, None)), &[title]);
        }
    }

    #[test]
    fn hostile_arguments_are_repeated_as_text_in_refusals() {
        for h in STRINGS {
            // Chat splits a command into words: a refusal repeats a word.
            let first = h.split_whitespace().next().unwrap_or_default();
            // Command names are read in lowercase.
            let name = first.to_lowercase();
            for (command, wants) in [
                (format!("!{h}"), vec![name.as_str()]),
                (format!("!board invite {first}"), vec![first]),
                (format!("!task status #1 {h} x"), vec![]),
                (format!("!task label {h}"), vec![]),
            ] {
                let err = parse(&command).expect_err("refused");
                assert_inert(&reply(&error_reply(&err)), &wants);
            }
            let refusal =
                Refusal::invalid(format!("There is no column {h}; the columns are: todo."));
            assert_inert(&reply(&refusal_reply(&refusal, "!task status")), &[h]);
            assert_inert(&reply(&text(format!("The columns of {h} are now: todo."))), &[h]);
        }
    }

    #[test]
    fn hostile_display_names_are_never_shown_as_markup_in_pills() {
        let alice = ruma::owned_user_id!("@alice:x");
        for h in STRINGS {
            let named = [mention::Candidate {
                user_id: alice.clone(),
                display_name: Some((*h).to_owned()),
            }];
            let users = std::collections::BTreeSet::from([alice.clone()]);
            let body = format!("hi @{h} and {h}");
            let html = mention::with_pills(&body, &users, &named);
            let content = RoomMessageEventContent::text_html(body, html.clone());
            assert_inert(&content, &[h]);
            assert!(
                html.contains("<a href=\"https://matrix.to/#/@alice:x\">@alice:x</a>"),
                "{html}"
            );
        }
    }

    #[test]
    fn a_long_argument_is_repeated_in_part_and_the_reply_fits_in_an_event() {
        for long in ["<".repeat(60_000), "\"".repeat(60_000), "é".repeat(30_000)] {
            for command in [
                format!("!{long}"),
                format!("!task label +{long}"),
                format!("!board invite {long}"),
                format!("!task new {long}"),
            ] {
                let r = match parse(&command) {
                    Err(err) => error_reply(&err),
                    Ok(_) => panic!("accepted"),
                };
                let event = serde_json::to_vec(&reply(&r)).expect("serializes");
                assert!(event.len() < 16_000, "{} bytes for {}", event.len(), &command[..20]);
            }
            let refusal = Refusal::invalid(format!("There is no column {long}."));
            let event = serde_json::to_vec(&reply(&refusal_reply(&refusal, "!task status")))
                .expect("serializes");
            assert!(event.len() < 16_000, "{} bytes", event.len());
            // Slugs and room names are checked by the operation: its refusal is short too.
            let why = crate::domain::board::validate_slug(&long).expect_err("refused");
            assert!(why.len() < 500, "{why}");
        }
    }
}
