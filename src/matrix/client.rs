//! A typed homeserver client: ruma request types sent over reqwest.
//!
//! As the appservice, requests carry the `as_token` and, for a virtual user, the
//! `user_id` identity assertion. As a plain user (tests, the demo), they carry that user's
//! access token. Errors are classified: 429 (honouring `retry_after_ms`), 5xx and
//! connection failures are transient and retried with backoff; the rest are permanent.
//!
//! A message whose send failed with its outcome unknown (the connection broke after the
//! request went out, or a gateway answered for the homeserver) may have landed: a homeserver
//! that restarted meanwhile has forgotten its transaction id and would post it again. So it
//! is looked for in the room ([`HomeserverClient::find_sent_message`]: the sender sees its
//! own transaction id in `unsigned.transaction_id`) before it is sent again.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc, time::Duration};

use ruma::{
    OwnedEventId, RoomId, TransactionId, UserId,
    api::{
        AppserviceUserIdentity, IncomingResponseExt, OutgoingRequest, OutgoingRequestAppserviceExt,
        OutgoingRequestExt, SupportedVersions,
        auth_scheme::{AuthScheme, SendAccessToken},
        client::message::{get_message_events, send_message_event},
        error::{ErrorKind, FromHttpResponseError, RetryAfter},
        path_builder::{PathBuilder, SinglePath, VersionHistory},
    },
    events::room::message::RoomMessageEventContent,
};

use super::backoff::Backoff;
pub use super::backoff::RetryPolicy;
use crate::config::Secret;
pub use crate::error::{HsError, RetryKind};

/// Who the requests are sent as.
#[derive(Clone, Debug)]
pub enum Auth {
    /// The appservice: `as_token`, with identity assertion for virtual users.
    Appservice(Secret),
    /// A user's access token.
    User(Secret),
}

/// Pages of a room's messages (of [`FIND_SENT_PAGE`] each) read, newest first, when looking
/// for a message whose send had an unknown outcome.
pub const FIND_SENT_PAGES: usize = 5;
/// Messages per page read when looking for a sent message.
pub const FIND_SENT_PAGE: u32 = 100;
/// How much older than the first attempt a message may look and still be looked at: the
/// homeserver's clock and ours may differ by this much.
const FIND_SENT_CLOCK_SLACK_MS: u64 = 5 * 60 * 1000;

/// The input a path builder needs: the versions we speak.
pub trait PathInput: PathBuilder {
    /// The path builder's input for `versions`.
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Self::Input<'_> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) -> Self::Input<'_> {}
}

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HomeserverClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    auth: Auth,
    versions: Arc<SupportedVersions>,
    retry: RetryPolicy,
    /// The bot's end-to-end encryption device (`[encryption]`): the bot's messages to an
    /// encrypted room go out encrypted ([`send_message`](Self::send_message)).
    device: Option<Arc<tokio::sync::OnceCell<crate::crypto::Crypto>>>,
    /// Told when the homeserver answers again after an outage: every retry waiting on
    /// its backoff (shared by all clones) goes at once.
    back: Arc<tokio::sync::Notify>,
    /// Where each request's latency and failure are counted, by endpoint.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// See [`remote_failures_final`](Self::remote_failures_final).
    remote_failures_final: bool,
}

impl HomeserverClient {
    /// A client for `base_url` with the given credentials.
    pub fn new(base_url: &str, auth: Auth) -> crate::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(90))
            .user_agent(concat!("boardroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Internal(format!("http client: {e}")))?;
        // Boardroom speaks the stable v3 API, in every homeserver since spec v1.1; v1.11 picks
        // the stable path of every endpoint we use.
        let versions = SupportedVersions::from_parts(&["v1.11".to_owned()], &BTreeMap::new());
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').into(),
            auth,
            versions: Arc::new(versions),
            retry: RetryPolicy::SHORT,
            device: None,
            back: Arc::new(tokio::sync::Notify::new()),
            metrics: None,
            remote_failures_final: false,
        })
    }

    /// Where this client counts its requests, if anywhere.
    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// The same client, counting its requests (and those of its clones) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The homeserver answers again after an outage: every retry waiting on its backoff,
    /// through this client or a clone, tries again now instead of at the end of its wait.
    pub fn homeserver_back(&self) {
        self.back.notify_waiters();
    }

    /// Waits `delay`, or less when the homeserver is back from an outage meanwhile.
    pub async fn wait_or_back(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {},
            () = self.back.notified() => {},
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same client, returning at once a server error (5xx) the homeserver itself
    /// answered (with a Matrix error body); connection failures, 429s and a gateway's 5xx
    /// without such a body are retried as its policy says. For a request about a user on
    /// another homeserver: such an answer says that ours could not reach theirs (it keeps
    /// its own backoff for it), and retrying would only keep a room's lane or an API caller
    /// waiting for minutes.
    pub fn remote_failures_final(mut self) -> Self {
        self.remote_failures_final = true;
        self
    }

    /// The same client, encrypting the bot's messages to encrypted rooms with `device`.
    pub fn with_device(
        mut self,
        device: Arc<tokio::sync::OnceCell<crate::crypto::Crypto>>,
    ) -> Self {
        self.device = Some(device);
        self
    }

    /// The bot's message `content` for `room`, encrypted (the `m.room.encrypted` content)
    /// when the room is and the bot has a device; `None` when it goes out as it is.
    pub async fn sealed(
        &self,
        room: &RoomId,
        content: &RoomMessageEventContent,
        as_user: Option<&UserId>,
    ) -> Result<Option<Box<serde_json::value::RawValue>>, HsError> {
        let Some(device) = self.device.clone() else { return Ok(None) };
        if as_user.is_some() {
            return Ok(None);
        }
        let protocol = |e: crate::Error| HsError::Protocol {
            endpoint: "send_message_event",
            message: e.to_string(),
        };
        let crypto = loop {
            if let Some(c) = device.get() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if !crypto.room_encrypted(room.as_str()).await.map_err(protocol)? {
            return Ok(None);
        }
        let clear = serde_json::to_value(content).map_err(|e| HsError::Protocol {
            endpoint: "send_message_event",
            message: e.to_string(),
        })?;
        // In a task of its own: the crypto machine's futures are `Send` only for the
        // lifetimes it owns.
        let room = room.to_string();
        let sealed = tokio::spawn(async move {
            match device.get() {
                Some(c) => c.encrypt(&room, "m.room.message", &clear).await,
                None => Err(crate::Error::Internal("no device".into())),
            }
        })
        .await
        .map_err(|e| HsError::Protocol { endpoint: "send_message_event", message: e.to_string() })?
        .map_err(protocol)?;
        serde_json::value::to_raw_value(&sealed).map(Some).map_err(|e| HsError::Protocol {
            endpoint: "send_message_event",
            message: e.to_string(),
        })
    }

    /// The same client (sharing its connections) with other credentials.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// The homeserver's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `request` (as `as_user` when the appservice acts for a virtual user), retrying
    /// transient failures under this client's policy.
    pub async fn send<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, HsError>
    where
        R: OutgoingRequest,
        R::EndpointError: MatrixErrorInfo,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        self.send_with(request, as_user, self.retry).await
    }

    /// [`send`](Self::send) with an explicit retry policy.
    pub async fn send_with<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
        retry: RetryPolicy,
    ) -> Result<R::IncomingResponse, HsError>
    where
        R: OutgoingRequest,
        R::EndpointError: MatrixErrorInfo,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        let mut backoff = Backoff::new(retry);
        loop {
            match self.send_once(request.clone(), as_user).await {
                Ok(r) => return Ok(r),
                Err(e) => self.wait_to_retry(e, &mut backoff).await?,
            }
        }
    }

    /// After failure `e`: waits before the next attempt, or returns `e` when it is
    /// permanent or `retry` gives up.
    async fn wait_to_retry(&self, e: HsError, backoff: &mut Backoff) -> Result<(), HsError> {
        let kind = match &self.auth {
            // A user's own token refused: retrying will not make it valid.
            Auth::User(_) if e.status() == Some(401) => RetryKind::Permanent,
            _ if self.remote_failures_final && e.is_homeservers_own_server_error() => {
                RetryKind::Permanent
            }
            _ => e.retry_kind(),
        };
        let RetryKind::Transient(asked) = kind else {
            return Err(e);
        };
        let Ok(delay) = backoff.next_delay(asked, e.is_server_error()) else {
            return Err(e);
        };
        tracing::warn!(error = %e, attempt = backoff.attempts(), delay_ms = delay.as_millis() as u64, "retrying");
        self.wait_or_back(delay).await;
        Ok(())
    }

    /// Sends a message under a deterministic transaction id, retrying transient failures
    /// under this client's policy, and never posting it twice: after a failure whose
    /// outcome is unknown ([`HsError::outcome_unknown`]), the message is looked for in the
    /// room ([`find_sent_message`](Self::find_sent_message)) before it is sent again.
    /// `maybe_sent` says an earlier run may have sent it already (work run again after a
    /// crash): then it is looked for before the first attempt too.
    pub async fn send_message(
        &self,
        room: &RoomId,
        txn_id: &TransactionId,
        content: &RoomMessageEventContent,
        as_user: Option<&UserId>,
        maybe_sent: bool,
    ) -> Result<OwnedEventId, HsError> {
        // No bidi control in what Boardroom writes (docs/SECURITY.md, "Hostile content").
        let content = &*crate::matrix::html::without_bidi_controls(content);
        // An earlier run sent it at an unknown time; this run sends it from now on.
        let since = (!maybe_sent).then(|| u64::from(ruma::MilliSecondsSinceUnixEpoch::now().0));
        let mut unknown = maybe_sent;
        let mut backoff = Backoff::new(self.retry);
        loop {
            if unknown {
                match self.find_sent_message(room, txn_id, as_user, since).await {
                    Ok(Some(event_id)) => {
                        tracing::info!(room_id = %room, txn_id = %txn_id, event_id = %event_id, "the message had landed; not sent again");
                        return Ok(event_id);
                    }
                    Ok(None) => {}
                    Err(e) if e.retry_kind() == RetryKind::Permanent => {
                        tracing::warn!(room_id = %room, error = %e, "cannot look for a message that may have landed; sending it");
                    }
                    Err(e) => {
                        self.wait_to_retry(e, &mut backoff).await?;
                        continue;
                    }
                }
            }
            let req = match self.sealed(room, content, as_user).await? {
                Some(sealed) => send_message_event::v3::Request::new_raw(
                    room.to_owned(),
                    txn_id.to_owned(),
                    "m.room.encrypted".into(),
                    ruma::serde::Raw::from_json(sealed),
                ),
                None => send_message_event::v3::Request::new(
                    room.to_owned(),
                    txn_id.to_owned(),
                    content,
                )
                .map_err(|e| HsError::Protocol {
                    endpoint: "send_message_event",
                    message: e.to_string(),
                })?,
            };
            match self.send_once(req, as_user).await {
                Ok(r) => return Ok(r.event_id),
                Err(e) => {
                    unknown = e.outcome_unknown();
                    self.wait_to_retry(e, &mut backoff).await?;
                }
            }
        }
    }

    /// The message sent (by `as_user`, or the appservice's bot) into `room` under
    /// `txn_id`, if it is among the room's latest messages: up to [`FIND_SENT_PAGES`] pages
    /// read newest first, stopping at messages older than `since_ms` (ms since the epoch,
    /// less a slack for clocks). The homeserver shows a sender its own transaction ids
    /// (`unsigned.transaction_id`), also after a restart. Each page gets a few quick retries.
    pub async fn find_sent_message(
        &self,
        room: &RoomId,
        txn_id: &TransactionId,
        as_user: Option<&UserId>,
        since_ms: Option<u64>,
    ) -> Result<Option<OwnedEventId>, HsError> {
        let oldest = since_ms.map(|s| s.saturating_sub(FIND_SENT_CLOCK_SLACK_MS));
        let mut from = None;
        for _ in 0..FIND_SENT_PAGES {
            let mut req = get_message_events::v3::Request::backward(room.to_owned());
            req.from = from.take();
            req.limit = FIND_SENT_PAGE.into();
            req.filter.types = Some(vec!["m.room.message".to_owned()]);
            // A few quick retries of the page itself: a look of several pages that starts
            // over at any page's failure rarely gets through a homeserver failing now
            // and then, and its caller's backoff grows meanwhile.
            let page = self.send_with(req, as_user, RetryPolicy::SHORT).await?;
            for raw in &page.chunk {
                let Ok(event) = raw.deserialize() else { continue };
                if event.transaction_id() == Some(txn_id) {
                    return Ok(Some(event.event_id().to_owned()));
                }
                let ts = u64::from(event.origin_server_ts().get());
                if oldest.is_some_and(|o| ts < o) {
                    return Ok(None);
                }
            }
            match page.end {
                Some(end) if !page.chunk.is_empty() => from = Some(end),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// One attempt, counted in the metrics by endpoint: its latency, and its failure by
    /// kind.
    async fn send_once<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, HsError>
    where
        R: OutgoingRequest,
        R::EndpointError: MatrixErrorInfo,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        let started = std::time::Instant::now();
        let mut timed_out = false;
        let result = self.attempt(request, as_user, &mut timed_out).await;
        if let Some(metrics) = &self.metrics {
            let error = result.as_ref().err().map(|e| match e {
                HsError::Connection { .. } if timed_out => "timeout",
                e => failure_kind(e),
            });
            metrics.homeserver_request(endpoint_name::<R>(), started.elapsed(), error);
        }
        result
    }

    async fn attempt<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
        timed_out: &mut bool,
    ) -> Result<R::IncomingResponse, HsError>
    where
        R: OutgoingRequest,
        R::EndpointError: MatrixErrorInfo,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        let endpoint = endpoint_name::<R>();
        let input = <R::PathBuilder as PathInput>::input(&self.versions);
        let built = match &self.auth {
            Auth::Appservice(token) => {
                let identity = as_user.map(AppserviceUserIdentity::new).unwrap_or_default();
                request.try_into_http_request_with_identity::<Vec<u8>>(
                    &self.base_url,
                    SendAccessToken::Appservice(token.expose()),
                    identity,
                    input,
                )
            }
            Auth::User(token) => request.try_into_http_request::<Vec<u8>>(
                &self.base_url,
                SendAccessToken::IfRequired(token.expose()),
                input,
            ),
        };
        let http_request = built.map_err(|e| HsError::Protocol {
            endpoint,
            message: format!("cannot build the request: {e}"),
        })?;
        let reqwest_request = reqwest::Request::try_from(http_request).map_err(|e| {
            HsError::Protocol { endpoint, message: format!("cannot build the request: {e}") }
        })?;
        let response = self.http.execute(reqwest_request).await.map_err(|e| {
            *timed_out = e.is_timeout();
            // Only a connection that was never made leaves the request surely not sent.
            HsError::Connection { endpoint, message: error_chain(&e), sent: !e.is_connect() }
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        // The homeserver answered: it carried the request out, or refused it.
        let body = response.bytes().await.map_err(|e| {
            *timed_out = e.is_timeout();
            HsError::Connection { endpoint, message: error_chain(&e), sent: true }
        })?;
        let mut builder = http::Response::builder().status(status);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let http_response = builder
            .body(body.as_ref())
            .map_err(|e| HsError::Protocol { endpoint, message: e.to_string() })?;
        R::IncomingResponse::try_from_http_response(http_response).map_err(|e| match e {
            FromHttpResponseError::Server(err) => {
                let (kind, message, retry_after) = match err.matrix_error() {
                    Some(m) => describe(m),
                    None => (None, err.to_string(), None),
                };
                HsError::Status { endpoint, status: status.as_u16(), kind, message, retry_after }
            }
            other => HsError::Protocol {
                endpoint,
                message: format!("cannot read the homeserver's answer ({status}): {other}"),
            },
        })
    }
}

/// The endpoint error types the client reads: the standard error, and the UIAA answer of
/// registration, which wraps one.
pub trait MatrixErrorInfo: std::fmt::Display {
    /// The standard Matrix error inside, if any.
    fn matrix_error(&self) -> Option<&ruma::api::error::Error>;
}

impl MatrixErrorInfo for ruma::api::error::Error {
    fn matrix_error(&self) -> Option<&ruma::api::error::Error> {
        Some(self)
    }
}

impl MatrixErrorInfo for ruma::api::client::uiaa::UiaaResponse {
    fn matrix_error(&self) -> Option<&ruma::api::error::Error> {
        match self {
            ruma::api::client::uiaa::UiaaResponse::MatrixError(e) => Some(e),
            _ => None,
        }
    }
}

fn describe(err: &ruma::api::error::Error) -> (Option<ErrorKind>, String, Option<Duration>) {
    match &err.body {
        ruma::api::error::ErrorBody::Standard(std) => (
            Some(std.kind.clone()),
            std.message.clone(),
            match &std.kind {
                ErrorKind::LimitExceeded(data) => match data.retry_after {
                    Some(RetryAfter::Delay(d)) => Some(d),
                    Some(RetryAfter::DateTime(t)) => {
                        t.duration_since(std::time::SystemTime::now()).ok()
                    }
                    None => None,
                },
                _ => None,
            },
        ),
        other => (None, format!("{other:?}"), None),
    }
}

/// The Matrix error codes of the spec a failure is counted under; any other is `other`.
const ERRCODES: &[&str] = &[
    "M_BAD_ALIAS",
    "M_BAD_JSON",
    "M_BAD_STATE",
    "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM",
    "M_CAPTCHA_INVALID",
    "M_CAPTCHA_NEEDED",
    "M_CONSENT_NOT_GIVEN",
    "M_EXCLUSIVE",
    "M_FORBIDDEN",
    "M_GUEST_ACCESS_FORBIDDEN",
    "M_INCOMPATIBLE_ROOM_VERSION",
    "M_INVALID_PARAM",
    "M_INVALID_ROOM_STATE",
    "M_INVALID_USERNAME",
    "M_LIMIT_EXCEEDED",
    "M_MISSING_PARAM",
    "M_MISSING_TOKEN",
    "M_NOT_FOUND",
    "M_NOT_JSON",
    "M_RESOURCE_LIMIT_EXCEEDED",
    "M_ROOM_IN_USE",
    "M_SERVER_NOT_TRUSTED",
    "M_THREEPID_IN_USE",
    "M_TOO_LARGE",
    "M_UNAUTHORIZED",
    "M_UNKNOWN",
    "M_UNKNOWN_TOKEN",
    "M_UNRECOGNIZED",
    "M_UNSUPPORTED_ROOM_VERSION",
    "M_USER_DEACTIVATED",
    "M_USER_IN_USE",
    "M_USER_LOCKED",
    "M_USER_SUSPENDED",
    "M_WEAK_PASSWORD",
];

/// What failed, as the metrics count it: the Matrix error code (from a fixed set),
/// `none` for an error answer without one, `network` or `protocol`.
fn failure_kind(e: &HsError) -> &'static str {
    match e {
        HsError::Connection { .. } => "network",
        HsError::Protocol { .. } => "protocol",
        HsError::Status { kind: None, .. } => "none",
        HsError::Status { kind: Some(kind), .. } => {
            let code = kind.errcode();
            ERRCODES.iter().find(|c| **c == code.as_str()).copied().unwrap_or("other")
        }
    }
}

fn endpoint_name<R>() -> &'static str {
    // `ruma_client_api::membership::join_room_by_id::v3::Request` → `join_room_by_id`;
    // `ruma_client_api::discovery::get_supported_versions::Request` (no version module) →
    // `get_supported_versions`.
    let full = std::any::type_name::<R>();
    let mut parts = full.rsplit("::").skip(1);
    let is_version = |p: &str| {
        p == "unstable"
            || p.strip_prefix('v').is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    };
    match parts.next() {
        Some(p) if is_version(p) => parts.next().unwrap_or(full),
        Some(p) => p,
        None => full,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_honours_the_server() {
        let p = RetryPolicy::FOREVER;
        assert_eq!(p.delay(0, None), Duration::from_millis(250));
        assert_eq!(p.delay(1, None), Duration::from_millis(500));
        assert_eq!(p.delay(20, None), Duration::from_secs(30));
        assert_eq!(p.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn classification() {
        let status = |status, errcode: &str| HsError::Status {
            endpoint: "x",
            status,
            kind: serde_json::from_value(serde_json::json!({ "errcode": errcode })).ok(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            status(429, "M_LIMIT_EXCEEDED").retry_kind(),
            RetryKind::Transient(Some(Duration::from_secs(1)))
        );
        assert_eq!(
            status(502, "M_UNKNOWN").retry_kind(),
            RetryKind::Transient(Some(Duration::from_secs(1)))
        );
        assert_eq!(status(403, "M_FORBIDDEN").retry_kind(), RetryKind::Permanent);
        let conn = HsError::Connection { endpoint: "x", message: "refused".into(), sent: false };
        assert_eq!(conn.retry_kind(), RetryKind::Transient(None));
        assert!(!conn.outcome_unknown(), "nothing was sent");
        let broken = HsError::Connection { endpoint: "x", message: "reset".into(), sent: true };
        assert_eq!(broken.retry_kind(), RetryKind::Transient(None));
        assert!(broken.outcome_unknown(), "the request went out");
        assert!(status(504, "M_UNKNOWN").outcome_unknown());
        assert!(
            !status(500, "M_UNKNOWN").outcome_unknown()
                && !status(403, "M_FORBIDDEN").outcome_unknown()
        );
    }

    /// Only a 5xx with a Matrix error body is the homeserver's own: a gateway's bare 502
    /// (the homeserver behind it is down) is not, and stays retried for a remote user too.
    #[test]
    fn a_homeservers_own_server_error_has_a_matrix_body() {
        let own = answered(502, serde_json::json!({ "errcode": "M_UNKNOWN", "error": "Failed" }));
        assert!(own.is_homeservers_own_server_error(), "{own:?}");
        let response = http::Response::builder()
            .status(502)
            .body(b"<html>Bad Gateway</html>".as_slice())
            .expect("response");
        let err =
            <ruma::api::error::Error as ruma::api::EndpointError>::from_http_response(response);
        let (kind, message, retry_after) = describe(&err);
        let gateway = HsError::Status { endpoint: "x", status: 502, kind, message, retry_after };
        assert!(!gateway.is_homeservers_own_server_error(), "{gateway:?}");
        let refused = answered(403, serde_json::json!({ "errcode": "M_FORBIDDEN", "error": "no" }));
        assert!(!refused.is_homeservers_own_server_error());
    }

    /// An error as the client reads it from the homeserver's answer.
    fn answered(status: u16, body: serde_json::Value) -> HsError {
        let body = body.to_string();
        let response =
            http::Response::builder().status(status).body(body.as_bytes()).expect("response");
        let err =
            <ruma::api::error::Error as ruma::api::EndpointError>::from_http_response(response);
        let (kind, message, retry_after) = describe(&err);
        HsError::Status { endpoint: "x", status, kind, message, retry_after }
    }

    #[test]
    fn homeserver_errors_keep_rumas_error_kind() {
        let in_use =
            answered(400, serde_json::json!({ "errcode": "M_ROOM_IN_USE", "error": "taken" }));
        assert!(in_use.is_room_in_use() && !in_use.is_user_in_use() && !in_use.is_forbidden());
        assert_eq!(in_use.kind(), Some(&ErrorKind::RoomInUse));
        assert_eq!(in_use.to_string(), "x: homeserver answered 400 M_ROOM_IN_USE: taken");
        assert!(
            answered(400, serde_json::json!({ "errcode": "M_USER_IN_USE", "error": "" }))
                .is_user_in_use()
        );
        let forbidden =
            answered(403, serde_json::json!({ "errcode": "M_FORBIDDEN", "error": "no" }));
        assert!(forbidden.is_forbidden() && !forbidden.is_not_found());
        // Synapse's answer for a profile it has no row for.
        let no_row =
            answered(404, serde_json::json!({ "errcode": "M_UNKNOWN", "error": "No row found" }));
        assert!(no_row.is_not_found() && !no_row.is_forbidden());
        let token =
            answered(401, serde_json::json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "bad" }));
        assert!(token.is_unknown_token() && !token.is_unavailable());
        let gateway = answered(502, serde_json::json!({ "nothing": "standard" }));
        assert_eq!(gateway.kind(), None);
        assert!(gateway.is_unavailable() && !gateway.is_not_found());
        assert!(gateway.to_string().contains("502 (none)"), "{gateway}");
        let conn = HsError::Connection { endpoint: "x", message: "refused".into(), sent: false };
        assert!(conn.is_unavailable() && !conn.is_unknown_token() && conn.kind().is_none());
    }

    #[test]
    fn failures_are_counted_under_a_fixed_set_of_kinds() {
        let forbidden =
            answered(403, serde_json::json!({ "errcode": "M_FORBIDDEN", "error": "no" }));
        assert_eq!(failure_kind(&forbidden), "M_FORBIDDEN");
        let custom =
            answered(400, serde_json::json!({ "errcode": "ORG_EXAMPLE_ANYTHING", "error": "" }));
        assert_eq!(failure_kind(&custom), "other");
        let gateway = answered(502, serde_json::json!({ "nothing": "standard" }));
        assert_eq!(failure_kind(&gateway), "none");
        let conn = HsError::Connection { endpoint: "x", message: "refused".into(), sent: false };
        assert_eq!(failure_kind(&conn), "network");
        let bad = HsError::Protocol { endpoint: "x", message: "bad".into() };
        assert_eq!(failure_kind(&bad), "protocol");
    }

    #[test]
    fn endpoint_names_are_short() {
        assert_eq!(
            endpoint_name::<ruma::api::client::membership::join_room_by_id::v3::Request>(),
            "join_room_by_id"
        );
        assert_eq!(
            endpoint_name::<ruma::api::client::discovery::get_supported_versions::Request>(),
            "get_supported_versions"
        );
    }
}
