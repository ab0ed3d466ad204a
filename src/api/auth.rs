//! Who is calling: a Matrix user (access token, checked with `whoami`) or an API client
//! (client token) acting as a virtual user.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use ruma::{OwnedUserId, api::client::account::whoami};
use sha2::{Digest, Sha256};

use super::ApiState;
use crate::domain::op::{Actor, ClientScope};
use crate::{
    actors::Owner,
    config::{ApiClient, Secret, secret_eq},
    error::Error,
    matrix::Auth,
};

/// How long a Matrix token's `whoami` answer is trusted.
pub const WHOAMI_TTL: Duration = Duration::from_secs(60);

/// How long after its last successful `whoami` a Matrix token still reads (GET) while the
/// homeserver cannot be reached or answers 5xx. Never when it answers 401.
pub const WHOAMI_GRACE: Duration = Duration::from_secs(60 * 60);

/// How long a token the homeserver refused (401) is refused from memory, without asking.
pub const REFUSAL_TTL: Duration = Duration::from_secs(10);

/// Most tokens remembered, identified or refused (each map); past it the oldest goes.
pub const MAX_CACHED_TOKENS: usize = 10_000;

/// How long a token past its TTL waits for `whoami` before its grace applies.
const STALE_WHOAMI_TIMEOUT: Duration = Duration::from_secs(5);

/// The header that names the virtual user an API client acts as.
pub const USER_HEADER: &str = "x-boardroom-user";

/// Identified Matrix tokens and refused ones, keyed by the token's SHA-256.
#[derive(Debug)]
pub struct AuthCache {
    tokens: Mutex<HashMap<[u8; 32], (OwnedUserId, Instant)>>,
    refused: Mutex<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
    grace: Duration,
    refusal_ttl: Duration,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::with_times(WHOAMI_TTL, WHOAMI_GRACE, REFUSAL_TTL)
    }
}

impl AuthCache {
    /// A cache with other times than [`WHOAMI_TTL`], [`WHOAMI_GRACE`] and
    /// [`REFUSAL_TTL`] (tests shorten them).
    pub fn with_times(ttl: Duration, grace: Duration, refusal_ttl: Duration) -> Self {
        Self { tokens: Mutex::default(), refused: Mutex::default(), ttl, grace, refusal_ttl }
    }

    fn remember(&self, key: [u8; 32], user: OwnedUserId) {
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.retain(|_, (_, at)| at.elapsed() < self.grace);
            }
            evict_oldest(&mut cache, |(_, at)| *at);
            cache.insert(key, (user, Instant::now()));
        }
        if let Ok(mut refused) = self.refused.lock() {
            refused.remove(&key);
        }
    }

    fn refuse(&self, key: [u8; 32]) {
        if let Ok(mut cache) = self.tokens.lock() {
            cache.remove(&key);
        }
        if let Ok(mut refused) = self.refused.lock() {
            if refused.len() >= MAX_CACHED_TOKENS {
                refused.retain(|_, at| at.elapsed() < self.refusal_ttl);
            }
            evict_oldest(&mut refused, |at| *at);
            refused.insert(key, Instant::now());
        }
    }

    fn refused_recently(&self, key: &[u8; 32]) -> bool {
        self.refused
            .lock()
            .map(|r| r.get(key).is_some_and(|at| at.elapsed() < self.refusal_ttl))
            .unwrap_or(false)
    }

    fn known(&self, key: &[u8; 32]) -> Option<(OwnedUserId, Duration)> {
        let cache = self.tokens.lock().ok()?;
        cache.get(key).map(|(user, at)| (user.clone(), at.elapsed()))
    }
}

/// Makes room for one more entry in a map at its bound.
fn evict_oldest<V>(map: &mut HashMap<[u8; 32], V>, at: impl Fn(&V) -> Instant) {
    if map.len() < MAX_CACHED_TOKENS {
        return;
    }
    if let Some(oldest) = map.iter().min_by_key(|(_, v)| at(v)).map(|(k, _)| *k) {
        map.remove(&oldest);
    }
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who they act as.
    pub user_id: OwnedUserId,
    /// The API client, when they came with a client token.
    pub client: Option<ApiClient>,
    /// A Matrix user's access token (never a client token).
    pub token: Option<Secret>,
}

impl Caller {
    /// The caller as the operations' actor.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user_id.clone(),
            client: self.client.as_ref().map(ClientScope::from),
            token: self.token.clone(),
        }
    }
}

/// What a request may carry in its query string instead of headers, for clients that
/// cannot set headers (a browser's `EventSource`): `access_token` (as the Matrix
/// client-server API allows) and `user_id` (as the appservice identity assertion names
/// it). The query string is never logged.
#[derive(Debug, Default, serde::Deserialize)]
struct InQuery {
    access_token: Option<String>,
    user_id: Option<String>,
}

fn in_query(parts: &Parts) -> InQuery {
    axum::extract::Query::<InQuery>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default()
}

/// The bearer token of `Authorization`, else the `access_token` query parameter.
fn bearer(parts: &Parts) -> Option<String> {
    let header = || {
        let v = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    };
    header().or_else(|| in_query(parts).access_token.filter(|t| !t.is_empty()))
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(Error::MissingToken)?;
        let settings = &state.ctx.settings;
        // The appservice's own tokens act as the bot (as_token) or as the homeserver
        // (hs_token) elsewhere; here they are refused, before anything is asked.
        if secret_eq(settings.as_token.expose(), &token)
            || secret_eq(settings.hs_token.expose(), &token)
        {
            return Err(Error::Forbidden(
                "the appservice's tokens are not API tokens: call the API with a client token \
                 or a Matrix access token"
                    .into(),
            ));
        }
        let access = settings.access();
        if let Some(client) =
            access.api_clients.iter().find(|c| secret_eq(c.token.expose(), &token))
        {
            let name = match parts.headers.get(USER_HEADER).and_then(|v| v.to_str().ok()) {
                Some(name) => name.to_owned(),
                None => match in_query(parts).user_id {
                    Some(id) => name_in(settings, &id)?,
                    None => {
                        return Err(Error::MissingParam(
                            "X-Boardroom-User (or the user_id query parameter) names the virtual user a client acts as"
                                .into(),
                        ));
                    }
                },
            };
            state
                .ctx
                .limits
                .api
                .check(&format!("client {}", client.name))
                .map_err(Error::RateLimited)?;
            let user_id = virtual_user(state, client, &name).await?;
            state.ctx.live.touch(&user_id);
            return Ok(Caller { user_id, client: Some(client.clone()), token: None });
        }
        let read = parts.method == http::Method::GET || parts.method == http::Method::HEAD;
        let user_id = whoami(state, &token, read).await?;
        if settings.is_ours(&user_id) {
            // The bot, or a virtual user with a token of its own: acting as it with a Matrix
            // token would skip the client that owns it.
            return Err(Error::Forbidden(format!(
                "{user_id} is Boardroom's own user and cannot call the API with a Matrix token"
            )));
        }
        state.ctx.limits.api.check(user_id.as_str()).map_err(Error::RateLimited)?;
        // What the caller does counts as being online (chat::presence).
        state.ctx.live.touch(&user_id);
        Ok(Caller { user_id, client: None, token: Some(Secret::new(token)) })
    }
}

/// The virtual user's name in a `user_id` query parameter: the name itself, or the whole
/// user id (`@<namespace_prefix><name>:<server_name>`).
fn name_in(settings: &crate::config::Settings, id: &str) -> Result<String, Error> {
    if !id.starts_with('@') {
        return Ok(id.to_owned());
    }
    let user = ruma::UserId::parse(id).map_err(|e| Error::InvalidParam(format!("user_id: {e}")))?;
    let prefix = &settings.raw.appservice.namespace_prefix;
    match user.localpart().strip_prefix(prefix.as_str()) {
        Some(name) if user.server_name() == settings.server_name => Ok(name.to_owned()),
        _ => Err(Error::InvalidParam(format!(
            "user_id: {id} is not one of Boardroom's virtual users (@{prefix}<name>:{})",
            settings.server_name
        ))),
    }
}

/// Who `token` belongs to: from memory for the cache's TTL, else from the homeserver. A
/// read (`read`) by a token identified within the cache's grace is served from memory
/// while the homeserver cannot be reached or fails (5xx); a 401 always refuses.
async fn whoami(state: &ApiState, token: &str, read: bool) -> Result<OwnedUserId, Error> {
    let cache = &state.auth;
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if cache.refused_recently(&key) {
        return Err(Error::UnknownToken);
    }
    let known = cache.known(&key);
    if let Some((user, age)) = &known
        && *age < cache.ttl
    {
        return Ok(user.clone());
    }
    let fallback = known.filter(|(_, age)| read && *age < cache.grace).map(|(user, _)| user);
    let client = state.hs().with_auth(Auth::User(Secret::new(token)));
    let request = whoami::v3::Request::new();
    let answer = if fallback.is_some() {
        // One quick try: the answer is at hand if the homeserver is away.
        tokio::time::timeout(
            STALE_WHOAMI_TIMEOUT,
            client.send_with(request, None, crate::matrix::RetryPolicy::NONE),
        )
        .await
        .ok()
    } else {
        Some(client.send_with(request, None, crate::matrix::RetryPolicy::SHORT).await)
    };
    match answer {
        Some(Ok(resp)) => {
            cache.remember(key, resp.user_id.clone());
            Ok(resp.user_id)
        }
        Some(Err(e)) if e.is_unknown_token() => {
            cache.refuse(key);
            Err(Error::UnknownToken)
        }
        Some(Err(e)) => match fallback {
            Some(user) if e.is_unavailable() => {
                tracing::warn!(error = %e, user_id = %user, "homeserver unavailable: a token identified before reads within its grace");
                Ok(user)
            }
            _ => Err(e.into()),
        },
        None => match fallback {
            Some(user) => {
                tracing::warn!(user_id = %user, "whoami timed out: a token identified before reads within its grace");
                Ok(user)
            }
            None => Err(Error::Internal("whoami timed out".into())),
        },
    }
}

/// The virtual user `name` of `client`: [`crate::actors::virtual_user`], registering with
/// the request path's quick retries.
async fn virtual_user(
    state: &ApiState,
    client: &ApiClient,
    name: &str,
) -> Result<OwnedUserId, Error> {
    let owner = Owner {
        kind: "API client",
        name: &client.name,
        max_virtual_users: client.max_virtual_users,
    };
    crate::actors::virtual_user(&state.request_ctx(), owner, name).await
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Router, body::Body, routing::get, routing::post};
    use http::{HeaderMap, Request, StatusCode};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::{Config, app::App};

    /// A stand-in homeserver that counts `whoami` and `register` requests: the token
    /// `alice-token` is Alice's, `as-token` the bot's; any other is refused (401).
    #[derive(Clone, Default)]
    struct Counts {
        whoami: Arc<AtomicUsize>,
        register: Arc<AtomicUsize>,
    }

    async fn stand_in() -> (String, Counts) {
        let counts = Counts::default();
        let (w, r) = (counts.whoami.clone(), counts.register.clone());
        let hs = Router::new()
            .route(
                "/_matrix/client/v3/account/whoami",
                get(move |headers: HeaderMap| {
                    let w = w.clone();
                    async move {
                        w.fetch_add(1, Ordering::SeqCst);
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        let user = match auth {
                            "Bearer alice-token" => "@alice:localhost",
                            "Bearer as-token" => "@boardroom:localhost",
                            _ => {
                                return (
                                    StatusCode::UNAUTHORIZED,
                                    axum::Json(
                                        json!({"errcode": "M_UNKNOWN_TOKEN", "error": "no"}),
                                    ),
                                );
                            }
                        };
                        (StatusCode::OK, axum::Json(json!({ "user_id": user })))
                    }
                }),
            )
            .route(
                "/_matrix/client/v3/register",
                post(move |body: axum::Json<Value>| {
                    let r = r.clone();
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let name = body["username"].as_str().unwrap_or_default().to_owned();
                        axum::Json(json!({ "user_id": format!("@{name}:localhost") }))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, hs).await });
        (url, counts)
    }

    fn app(dir: &std::path::Path, hs_url: &str) -> (App, Router) {
        let text = format!(
            "[homeserver]\nurl = \"{hs_url}\"\nserver_name = \"localhost\"\n\
             [appservice]\nurl = \"http://127.0.0.1:9\"\nas_token = \"as-token\"\n\
             hs_token = \"hs-token\"\n[database]\npath = {}\n\
             [[api.clients]]\nname = \"tracker\"\ntoken = \"client\"\nboards = [\"*\"]\n\
             max_virtual_users = 2\n",
            toml::Value::String(dir.join("db").display().to_string())
        );
        let config = Config::from_toml_with_env(&text, std::iter::empty()).expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let router = super::super::router(app.ctx.clone());
        (app, router)
    }

    async fn call(router: &Router, token: &str, user: Option<&str>) -> (u16, Value) {
        let mut req = Request::get("/_boardroom/api/v1/notifications/unread_count")
            .header("authorization", format!("Bearer {token}"));
        if let Some(u) = user {
            req = req.header("x-boardroom-user", u);
        }
        let resp = router.clone().oneshot(req.body(Body::empty()).expect("req")).await.expect("ok");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn an_unknown_token_costs_one_whoami_then_is_refused_from_memory() {
        let (url, counts) = stand_in().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (_app, router) = app(dir.path(), &url);
        for _ in 0..3 {
            let (status, body) = call(&router, "bad-token", None).await;
            assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
        }
        assert_eq!(counts.whoami.load(Ordering::SeqCst), 1, "one round trip for three refusals");
        // A good token is asked once, then served from memory within its TTL.
        for _ in 0..2 {
            let (status, body) = call(&router, "alice-token", None).await;
            assert_eq!(status, 200, "{body}");
        }
        assert_eq!(counts.whoami.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_as_token_is_refused_on_the_api_and_does_not_act_as_the_bot() {
        let (url, counts) = stand_in().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (_app, router) = app(dir.path(), &url);
        for token in ["as-token", "hs-token"] {
            let (status, body) = call(&router, token, None).await;
            assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
            let (status, _) = call(&router, token, Some("ci")).await;
            assert_eq!(status, 403);
        }
        assert_eq!(counts.whoami.load(Ordering::SeqCst), 0, "refused before asking");
        assert_eq!(counts.register.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn past_its_cap_a_client_is_refused_and_registers_nothing() {
        let (url, counts) = stand_in().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (app, router) = app(dir.path(), &url);
        for name in ["one", "two", "one", "two"] {
            let (status, body) = call(&router, "client", Some(name)).await;
            assert_eq!(status, 200, "{body}");
        }
        assert_eq!(counts.register.load(Ordering::SeqCst), 2, "each registered once");
        let (status, body) = call(&router, "client", Some("three")).await;
        assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("max_virtual_users")), "{body}");
        assert_eq!(counts.register.load(Ordering::SeqCst), 2, "no registration past the cap");
        let three = ruma::user_id!("@boardroom_three:localhost");
        assert_eq!(app.ctx.store.virtual_user(three).expect("read"), None);
        assert_eq!(app.ctx.store.virtual_users_of("tracker", 100).expect("count"), 2);
    }
}
