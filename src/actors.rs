//! Virtual users: the Matrix users Boardroom's API clients and webhook sources act as.
//!
//! A virtual user `@<namespace_prefix><name>:<server_name>` belongs to the first owner
//! that names it, by the owner's name: an `[[api.clients]]` entry or a
//! `[[webhooks.sources]]` entry. A client and a source with the same name are the same
//! owner and share their virtual users. It is claimed in the store (a synced write, within
//! the owner's `max_virtual_users`) before it is registered with the homeserver, so a
//! refused name never reaches the homeserver and a registration is never lost.

use ruma::{OwnedUserId, UserId};

use crate::{context::Context, error::Error, matrix::Intent, store::virtual_users::Claim};

/// Who owns virtual users: an API client or a webhook source, by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner<'a> {
    /// What it is, for refusals: "API client" or "webhook source".
    pub kind: &'static str,
    /// The client's or source's name.
    pub name: &'a str,
    /// The most virtual users it may own.
    pub max_virtual_users: u64,
}

/// The user id of the virtual user `name`; refused (400) unless `name` is 1 to 64 of
/// a-z 0-9 . _ = -
pub(crate) fn user_id_of(ctx: &Context, name: &str) -> Result<OwnedUserId, Error> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-'))
    {
        return Err(Error::InvalidParam(format!(
            "`{name}` is not a virtual user name: 1 to 64 of a-z 0-9 . _ = -"
        )));
    }
    let settings = &ctx.settings;
    let localpart = format!("{}{name}", settings.raw.appservice.namespace_prefix);
    UserId::parse(format!("@{localpart}:{}", settings.server_name))
        .map_err(|e| Error::InvalidParam(e.to_string()))
}

/// The virtual user `name` of `owner`: owned by the first owner that names it, and
/// registered with the homeserver the first time it is used. Another owner naming it is
/// refused (403), as is a new name past the owner's `max_virtual_users`, before the
/// homeserver is asked. `ctx`'s homeserver client decides how long registration retries.
pub(crate) async fn virtual_user(
    ctx: &Context,
    owner: Owner<'_>,
    name: &str,
) -> Result<OwnedUserId, Error> {
    let user_id = user_id_of(ctx, name)?;
    let store = &ctx.store;
    let owned = match store.virtual_user(&user_id)? {
        Some(v) if v.client == owner.name => v,
        Some(_) => return Err(another_owners(name)),
        None => match store.claim_virtual_user(&user_id, owner.name, owner.max_virtual_users)? {
            Claim::Owned(v) => {
                tracing::info!(owner = %owner.name, %user_id, "virtual user claimed");
                v
            }
            Claim::OwnedByAnother => return Err(another_owners(name)),
            Claim::CapReached { max } => {
                tracing::warn!(owner = %owner.name, max, "virtual user refused: the owner's cap is reached");
                return Err(Error::Forbidden(format!(
                    "the {} {} has {max} virtual users, its max_virtual_users; `{name}` would \
                     be one more",
                    owner.kind, owner.name
                )));
            }
        },
    };
    if !owned.registered {
        // M_USER_IN_USE counts as done: it was registered before it was recorded.
        Intent::register(&ctx.client, user_id.localpart()).await?;
        store.set_virtual_user_registered(&user_id, owner.name)?;
    }
    Ok(user_id)
}

fn another_owners(name: &str) -> Error {
    Error::Forbidden(format!(
        "the virtual user `{name}` belongs to another API client or webhook source: a virtual \
         user acts for the client or source that used it first"
    ))
}
