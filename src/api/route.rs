//! One API route, declared once: method, path, handler and what the OpenAPI document says
//! about it. The router ([`super::router_with`]) and the document ([`super::openapi`]) are
//! both built from [`super::routes`]; what the handler takes and answers (its query type,
//! its body type, whether it identifies a [`Caller`], its JSON answer) is read from the
//! handler's own signature, so a route cannot be documented with types it does not use.

use std::future::Future;

use axum::{
    Json,
    extract::{Path, State},
    handler::Handler,
    http::{HeaderMap, Method},
    routing::{MethodFilter, MethodRouter, on},
};
use serde::Serialize;
use serde_json::Value;
use utoipa::{
    IntoParams, ToSchema,
    openapi::{RefOr, schema::Schema},
};

use super::{ApiBody, ApiQuery, ApiState, auth::Caller};
use crate::error::Error;

/// A type of the API's JSON, with examples the document shows and a test checks against
/// its schema.
pub(crate) trait Documented: ToSchema {
    /// Examples of this type as it travels: real serializations for an answer, bodies the
    /// type accepts for a request. Between them they show every property.
    fn examples() -> Vec<Value>;
}

/// Serializes answers for [`Documented::examples`].
pub(crate) fn serialized<T: Serialize>(values: &[T]) -> Vec<Value> {
    values.iter().map(to_json).collect()
}

/// `value` as JSON; these types always serialize (`null` would fail the document's test).
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Whether the handler's parser takes an input; `Err` says why not.
pub(crate) type Accepts<T> = fn(&T) -> Result<(), String>;

/// A JSON type of the document: its component name, its schema and the components it
/// refers to.
#[derive(Clone, Debug)]
pub(crate) struct TypeDoc {
    /// The component's name (`#/components/schemas/<name>`).
    pub(crate) name: String,
    /// The type's schema and those of the types it refers to, by name.
    pub(crate) schemas: Vec<(String, Value)>,
    /// See [`Documented::examples`].
    pub(crate) examples: Vec<Value>,
    /// For a request body: whether a JSON value is accepted by the type (`Err` says why
    /// not), through the same parser as the handler.
    pub(crate) accepts: Option<Accepts<Value>>,
}

impl TypeDoc {
    pub(crate) fn of<T: Documented>() -> Self {
        let mut schemas: Vec<(String, RefOr<Schema>)> = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut schemas);
        let schemas = schemas.into_iter().map(|(name, schema)| (name, to_json(&schema))).collect();
        TypeDoc { name: T::name().into_owned(), schemas, examples: T::examples(), accepts: None }
    }
}

/// What a handler's signature tells about its route.
#[derive(Clone, Debug)]
pub(crate) struct Signature {
    /// It identifies a [`Caller`]: a token is needed, and the authentication errors apply.
    pub(crate) caller: bool,
    /// Its query parameters (OpenAPI parameter objects).
    pub(crate) query: Vec<Value>,
    /// Whether a query string is accepted by its query type (`Err` says why not), through
    /// the same parser as the handler.
    pub(crate) query_accepts: Option<Accepts<str>>,
    /// Its JSON request body.
    pub(crate) body: Option<TypeDoc>,
    /// Its JSON answer; `None` for a free-form JSON value.
    pub(crate) response: Option<TypeDoc>,
    /// Its success status: 200, or 201 for a handler answering [`Created`].
    pub(crate) success: u16,
    /// It answers a stream of Server-Sent Events, not JSON.
    pub(crate) event_stream: bool,
}

impl Default for Signature {
    fn default() -> Self {
        Self {
            caller: false,
            query: Vec::new(),
            query_accepts: None,
            body: None,
            response: None,
            success: 200,
            event_stream: false,
        }
    }
}

/// A JSON answer with status 201: what the request created.
#[derive(Debug)]
pub(crate) struct Created<T>(pub(crate) T);

impl<T: Serialize> axum::response::IntoResponse for Created<T> {
    fn into_response(self) -> axum::response::Response {
        (http::StatusCode::CREATED, Json(self.0)).into_response()
    }
}

/// A live stream, answered as `text/event-stream`.
#[derive(Debug)]
pub(crate) struct EventStream(pub(crate) axum::body::Body);

impl axum::response::IntoResponse for EventStream {
    fn into_response(self) -> axum::response::Response {
        let mut resp = axum::response::Response::new(self.0);
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
        h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
        // The connection ends with the stream: its place was the stream's, not the
        // listener's.
        h.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        // Proxies such as nginx would otherwise hold events back.
        h.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
        resp
    }
}

/// An argument of a handler (an extractor), as the document sees it.
pub(crate) trait Arg {
    /// Adds what the argument takes from the request.
    fn describe(_: &mut Signature) {}
}

impl Arg for State<ApiState> {}
impl Arg for HeaderMap {}
impl<T> Arg for Path<T> {}
impl<T> Arg for Option<axum::Extension<T>> {}

impl Arg for Caller {
    fn describe(sig: &mut Signature) {
        sig.caller = true;
    }
}

impl<T: IntoParams + serde::de::DeserializeOwned> Arg for ApiQuery<T> {
    fn describe(sig: &mut Signature) {
        let params = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query));
        sig.query = params.iter().map(to_json).collect();
        sig.query_accepts = Some(|query| {
            let uri = axum::http::Uri::try_from(format!("/?{query}")).map_err(|e| e.to_string())?;
            axum::extract::Query::<T>::try_from_uri(&uri).map(drop).map_err(|e| e.body_text())
        });
    }
}

impl<T: Documented + serde::de::DeserializeOwned> Arg for ApiBody<T> {
    fn describe(sig: &mut Signature) {
        let mut doc = TypeDoc::of::<T>();
        doc.accepts = Some(|v| {
            let bytes = axum::body::Bytes::from(v.to_string());
            super::json_body::<T>(&bytes).map(drop).map_err(|e| e.to_string())
        });
        sig.body = Some(doc);
    }
}

/// What a handler answers, as the document sees it.
pub(crate) trait Reply {
    /// Adds the answer's type.
    fn describe(_: &mut Signature) {}
}

impl<T: Documented> Reply for Result<Json<T>, Error> {
    fn describe(sig: &mut Signature) {
        sig.response = Some(TypeDoc::of::<T>());
    }
}

impl<T: Documented> Reply for Result<Created<T>, Error> {
    fn describe(sig: &mut Signature) {
        sig.response = Some(TypeDoc::of::<T>());
        sig.success = 201;
    }
}

impl Reply for Json<Value> {}

impl Reply for Result<EventStream, Error> {
    fn describe(sig: &mut Signature) {
        sig.event_stream = true;
    }
}

/// A handler whose arguments and answer the document can describe.
pub(crate) trait Endpoint<Args> {
    /// What its signature tells.
    fn signature() -> Signature;
}

macro_rules! endpoint {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> Endpoint<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future,
            Fut::Output: Reply,
            $($arg: Arg,)*
        {
            fn signature() -> Signature {
                let mut sig = Signature::default();
                $($arg::describe(&mut sig);)*
                <Fut::Output as Reply>::describe(&mut sig);
                sig
            }
        }
    };
}

endpoint!();
endpoint!(A1);
endpoint!(A2, A1);
endpoint!(A3, A2, A1);
endpoint!(A4, A3, A2, A1);
endpoint!(A5, A4, A3, A2, A1);
endpoint!(A6, A5, A4, A3, A2, A1);

/// Where a hand-declared parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamIn {
    /// A `{name}` segment of the path.
    Path,
    /// A request header.
    Header,
}

/// A path or header parameter (query parameters come from the handler's query type).
#[derive(Clone, Debug)]
pub(crate) struct Param {
    /// Its name.
    pub(crate) name: &'static str,
    /// Where.
    pub(crate) within: ParamIn,
    /// Its JSON schema.
    pub(crate) schema: Value,
}

/// One route of the API.
#[derive(Debug)]
pub(crate) struct Route {
    /// Its method.
    pub(crate) method: Method,
    /// Its path (axum syntax, the same in the document).
    pub(crate) path: &'static str,
    /// One line for the document.
    pub(crate) summary: &'static str,
    /// What a 200 answer means.
    pub(crate) ok: &'static str,
    /// When a 404 is answered, and why.
    pub(crate) not_found: Option<&'static str>,
    /// When a 409 is answered (the board's state does not allow it now), and why.
    pub(crate) conflict: Option<&'static str>,
    /// Path and header parameters.
    pub(crate) params: Vec<Param>,
    /// What the handler's signature tells.
    pub(crate) signature: Signature,
    /// The handler, bound to `method`.
    pub(crate) handler: MethodRouter<ApiState>,
}

impl Route {
    /// A route answered by `handler`, for `method` only.
    fn new<H, T, A>(method: Method, filter: MethodFilter, path: &'static str, handler: H) -> Route
    where
        H: Handler<T, ApiState> + Endpoint<A>,
        T: 'static,
    {
        Route {
            handler: on(filter, handler),
            signature: H::signature(),
            method,
            path,
            summary: "",
            ok: "",
            not_found: None,
            conflict: None,
            params: Vec::new(),
        }
    }

    /// A `GET` route.
    pub(crate) fn get<H, T, A>(path: &'static str, handler: H) -> Route
    where
        H: Handler<T, ApiState> + Endpoint<A>,
        T: 'static,
    {
        Route::new(Method::GET, MethodFilter::GET, path, handler)
    }

    /// A `POST` route.
    pub(crate) fn post<H, T, A>(path: &'static str, handler: H) -> Route
    where
        H: Handler<T, ApiState> + Endpoint<A>,
        T: 'static,
    {
        Route::new(Method::POST, MethodFilter::POST, path, handler)
    }

    /// A `PUT` route.
    pub(crate) fn put<H, T, A>(path: &'static str, handler: H) -> Route
    where
        H: Handler<T, ApiState> + Endpoint<A>,
        T: 'static,
    {
        Route::new(Method::PUT, MethodFilter::PUT, path, handler)
    }

    /// A `PATCH` route.
    pub(crate) fn patch<H, T, A>(path: &'static str, handler: H) -> Route
    where
        H: Handler<T, ApiState> + Endpoint<A>,
        T: 'static,
    {
        Route::new(Method::PATCH, MethodFilter::PATCH, path, handler)
    }

    /// A `DELETE` route.
    pub(crate) fn delete<H, T, A>(path: &'static str, handler: H) -> Route
    where
        H: Handler<T, ApiState> + Endpoint<A>,
        T: 'static,
    {
        Route::new(Method::DELETE, MethodFilter::DELETE, path, handler)
    }

    /// The summary line and what a 200 (or 201) means.
    pub(crate) fn summary(mut self, summary: &'static str, ok: &'static str) -> Route {
        self.summary = summary;
        self.ok = ok;
        self
    }

    /// A `{name}` segment of the path.
    pub(crate) fn path_param(mut self, name: &'static str, schema: Value) -> Route {
        self.params.push(Param { name, within: ParamIn::Path, schema });
        self
    }

    /// A request header.
    pub(crate) fn header(mut self, name: &'static str, schema: Value) -> Route {
        self.params.push(Param { name, within: ParamIn::Header, schema });
        self
    }

    /// When a 404 is answered.
    pub(crate) fn not_found(mut self, why: &'static str) -> Route {
        self.not_found = Some(why);
        self
    }

    /// When a 409 is answered.
    pub(crate) fn conflict(mut self, why: &'static str) -> Route {
        self.conflict = Some(why);
        self
    }
}
