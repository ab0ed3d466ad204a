//! Moving a board's tasks into its upgraded `tasks` room.

use ruma::events::{Mentions, StaticEventContent, room::message::RoomMessageEventContent};

use super::{
    render::{feed_entry, render_root, thread_link},
    send_state,
};
use crate::{
    boards::upgrade::TasksMove,
    context::Context,
    domain::{Action, action::derived_txn_id, board::RoomRecord, task::TaskEventContent},
};

/// A board's `tasks` room `old` was replaced by `new` ([`TasksMove`]): every task whose state is not in
/// `new` yet gets it there. A task that is not deleted also gets a new root in `new` (its
/// thread continues there), a feed entry in the new thread linking the old one, and one
/// in the old thread linking the new. Its comments stay indexed under its number, and its
/// old root still finds it. Safe to run again: tasks already in `new` are skipped.
pub(crate) async fn move_tasks(
    ctx: &Context,
    tasks_move: &TasksMove,
) -> crate::Result<Vec<Action>> {
    let TasksMove { board, from: old, to: new, record: room_record } = tasks_move;
    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    let present: std::collections::HashSet<String> =
        crate::boards::index::fetch_state(&ctx.client, new)
            .await?
            .iter()
            .filter(|r| {
                r.get_field::<String>("type").ok().flatten().as_deref()
                    == Some(TaskEventContent::TYPE)
            })
            .filter_map(|r| r.get_field::<String>("state_key").ok().flatten())
            .collect();
    let mut actions = Vec::new();
    let mut moved = 0usize;
    for mut record in ctx.store.tasks_of(&board.slug)? {
        let n = record.fields.number;
        if present.contains(&n.to_string()) {
            continue;
        }
        if !record.fields.deleted {
            let old_root = record.fields.root_event_id.clone();
            let (plain, html) = render_root(&board.slug, &record.fields);
            let mut root = RoomMessageEventContent::notice_html(plain, html);
            root.mentions = Some(Mentions::new());
            let txn_id = derived_txn_id(&format!("move/{new}/{n}"), 0);
            let new_root = ctx.client.send_message(new, &txn_id, &root, None, false).await?;
            record.fields.root_event_id = new_root.clone();
            let slug = &board.slug;
            actions.push(feed_entry(
                new,
                &new_root,
                None,
                format!("{slug}#{n} continues here from {}", thread_link(ctx, old, &old_root)),
                &[],
                &new_root,
                1,
            ));
            actions.push(feed_entry(
                old,
                &old_root,
                None,
                format!("{slug}#{n} moved to {}", thread_link(ctx, new, &new_root)),
                &[],
                &new_root,
                2,
            ));
        }
        send_state(ctx, new, &record.fields).await?;
        ctx.store.put_task(&record)?;
        moved += 1;
    }
    tracing::info!(board = %board.slug, old = %old, new = %new, moved, "tasks moved to the upgraded tasks room");
    if room_record.pending_move_from.is_some() {
        ctx.store.put_room(new, &RoomRecord { pending_move_from: None, ..room_record.clone() })?;
    }
    Ok(actions)
}
