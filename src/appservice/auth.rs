//! The `hs_token` check, in constant time: missing → 401 `M_UNAUTHORIZED`, wrong → 403
//! `M_FORBIDDEN`. Accepts `Authorization: Bearer` and the legacy `access_token` query.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use ruma::api::error::{ErrorBody, ErrorKind, StandardErrorBody};

use super::AppState;
use crate::{config::secret_eq, error::matrix_error_response};

/// The bearer token of a request: the `Authorization` header, else `?access_token=`.
pub(crate) fn bearer_token(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    req.uri().query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "access_token").then(|| crate::domain::mention::percent_decode(v))
        })
    })
}

/// Middleware: lets the request through only with the homeserver's token.
pub(crate) async fn require_hs_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let expected = state.ctx.settings.hs_token.expose();
    match bearer_token(&req) {
        None => refuse(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, "missing hs_token"),
        Some(t) if secret_eq(&t, expected) => next.run(req).await,
        Some(_) => {
            tracing::warn!(path = req.uri().path(), "refused a request with a wrong hs_token");
            refuse(StatusCode::FORBIDDEN, ErrorKind::Forbidden, "wrong hs_token")
        }
    }
}

fn refuse(status: StatusCode, kind: ErrorKind, message: &str) -> Response {
    let err = ruma::api::error::Error::new(
        status,
        ErrorBody::Standard(StandardErrorBody::new(kind, message.to_owned())),
    );
    let mut resp = matrix_error_response(&err);
    if resp.status() != status {
        resp = status.into_response();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_percent_decoded() {
        let req = axum::extract::Request::builder()
            .uri("/x?a=1&access_token=ab%2Bc%3D")
            .body(axum::body::Body::empty())
            .expect("request");
        assert_eq!(bearer_token(&req).as_deref(), Some("ab+c="));
    }

    #[test]
    fn secret_comparison() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
        assert!(!secret_eq("", "abc"));
    }
}
