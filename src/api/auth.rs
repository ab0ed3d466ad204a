//! Who is calling: a Matrix user (access token, checked with `whoami`) or an API client
//! (client token) acting as a virtual user.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use ruma::{OwnedUserId, UserId, api::client::account::whoami};
use sha2::{Digest, Sha256};

use super::ApiState;
use crate::{
    appservice::auth::secret_eq,
    config::{ApiClient, Secret},
    error::Error,
    homeserver::{Auth, startup::register_user},
};

/// How long a Matrix token's `whoami` answer is trusted.
pub const WHOAMI_TTL: Duration = Duration::from_secs(60);

/// The header that names the virtual user an API client acts as.
pub const USER_HEADER: &str = "x-boardroom-user";

/// Identified Matrix tokens and registered virtual users.
#[derive(Debug, Default)]
pub struct AuthCache {
    tokens: Mutex<HashMap<[u8; 32], (OwnedUserId, Instant)>>,
    registered: Mutex<HashSet<OwnedUserId>>,
}

impl AuthCache {
    /// Records a virtual user as registered with the homeserver already.
    pub fn mark_registered(&self, user: OwnedUserId) {
        if let Ok(mut r) = self.registered.lock() {
            r.insert(user);
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who they act as.
    pub user_id: OwnedUserId,
    /// The API client, when they came with a client token.
    pub client: Option<ApiClient>,
}

impl Caller {
    /// Whether the caller may see board `slug`: a Matrix user who has joined it, or a
    /// client whose scope includes it.
    pub fn may_see(&self, state: &ApiState, slug: &str) -> Result<bool, Error> {
        match &self.client {
            Some(c) => Ok(c.may_act_on(slug)),
            None => state.ctx.store.is_board_member(slug, &self.user_id),
        }
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    let v = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(Error::MissingToken)?;
        let settings = &state.ctx.settings;
        if let Some(client) =
            settings.api_clients.iter().find(|c| secret_eq(c.token.expose(), &token))
        {
            let name =
                parts.headers.get(USER_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                    Error::MissingParam(
                        "X-Boardroom-User names the virtual user a client acts as".into(),
                    )
                })?;
            let user_id = virtual_user(state, name).await?;
            return Ok(Caller { user_id, client: Some(client.clone()) });
        }
        let user_id = whoami(state, &token).await?;
        Ok(Caller { user_id, client: None })
    }
}

async fn whoami(state: &ApiState, token: &str) -> Result<OwnedUserId, Error> {
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if let Ok(cache) = state.auth.tokens.lock()
        && let Some((user, at)) = cache.get(&key)
        && at.elapsed() < WHOAMI_TTL
    {
        return Ok(user.clone());
    }
    let client = state.hs().with_auth(Auth::User(Secret::new(token)));
    let resp = match client
        .send_with(whoami::v3::Request::new(), None, crate::homeserver::RetryPolicy::SHORT)
        .await
    {
        Ok(r) => r,
        Err(e) if e.status() == Some(401) => return Err(Error::UnknownToken),
        Err(e) => return Err(e.into()),
    };
    if let Ok(mut cache) = state.auth.tokens.lock() {
        cache.retain(|_, (_, at)| at.elapsed() < WHOAMI_TTL);
        cache.insert(key, (resp.user_id.clone(), Instant::now()));
    }
    Ok(resp.user_id)
}

/// `@<prefix><name>:<server>`, registered with the homeserver the first time it is used.
async fn virtual_user(state: &ApiState, name: &str) -> Result<OwnedUserId, Error> {
    let settings = &state.ctx.settings;
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-'))
    {
        return Err(Error::InvalidParam(format!(
            "`{name}` is not a virtual user name: 1 to 64 of a-z 0-9 . _ = -"
        )));
    }
    let localpart = format!("{}{name}", settings.raw.appservice.namespace_prefix);
    let user_id = UserId::parse(format!("@{localpart}:{}", settings.server_name))
        .map_err(|e| Error::InvalidParam(e.to_string()))?;
    let known = state.auth.registered.lock().map(|r| r.contains(&user_id)).unwrap_or(false);
    if !known {
        register_user(&state.hs(), &localpart).await?;
        if let Ok(mut r) = state.auth.registered.lock() {
            r.insert(user_id.clone());
        }
    }
    Ok(user_id)
}
