//! The inbox operations: a user's own entries, newest first; for an API client's virtual
//! user, only the entries of boards within the client's scope (as if the others were
//! absent), even when the virtual user holds entries from elsewhere.

use crate::{
    context::Context,
    domain::{
        inbox::Notification,
        op::{Actor, OpResult, Refusal},
    },
};

/// Entries read at most for one page: a page may come short (with a cursor) when the
/// caller's scope skips many.
pub(crate) const SCAN_BUDGET: usize = 1000;

/// Whether an entry of board `slug` is the actor's to see.
fn sees(actor: &Actor, slug: &str) -> bool {
    actor.in_scope(slug)
}

/// A page of the actor's inbox, newest first, before entry `before`; `limit` is 1 to 100.
/// The cursor is the id to pass as `before` for the next page; `None` on the last.
pub(crate) fn page(
    ctx: &Context,
    actor: &Actor,
    before: Option<u64>,
    limit: usize,
) -> OpResult<(Vec<Notification>, Option<u64>)> {
    if !(1..=100).contains(&limit) {
        return Err(Refusal::invalid("limit is 1 to 100"));
    }
    let (mut entries, stopped_at) =
        ctx.store.notifications_where(&actor.user_id, before, limit + 1, SCAN_BUDGET, |n| {
            sees(actor, &n.board)
        })?;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|n| n.id)
    } else {
        stopped_at
    };
    Ok((entries, next))
}

/// How many of the actor's entries are unread.
pub(crate) fn unread(ctx: &Context, actor: &Actor) -> OpResult<u64> {
    Ok(match &actor.client {
        Some(c) if !c.boards.iter().any(|b| b == "*") => {
            ctx.store.unread_count_in(&actor.user_id, |b| c.may_act_on(b))?
        }
        _ => ctx.store.unread_count(&actor.user_id)?,
    })
}

/// Marks entry `id` read; whether it changed.
pub(crate) fn mark_read(ctx: &Context, actor: &Actor, id: u64) -> OpResult<bool> {
    let not_found = || Refusal::not_found(format!("no notification {id} in your inbox"));
    match ctx.store.notification(&actor.user_id, id)? {
        Some(n) if sees(actor, &n.board) => {}
        _ => return Err(not_found()),
    }
    ctx.store.mark_read(&actor.user_id, id)?.ok_or_else(not_found)
}

/// Marks every entry read; how many changed.
pub(crate) fn mark_all_read(ctx: &Context, actor: &Actor) -> OpResult<u64> {
    Ok(match &actor.client {
        Some(_) => ctx.store.mark_all_read_in(&actor.user_id, |b| sees(actor, b))?,
        None => ctx.store.mark_all_read(&actor.user_id)?,
    })
}
