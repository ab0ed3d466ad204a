//! `GET /_boardroom/api/v1/openapi.json`: the API described as OpenAPI 3.1, built from the
//! same table as the router ([`super::routes`]), with the schemas derived from the serde
//! types the handlers take and answer (`utoipa`). Tests check that the document names
//! exactly the routes, and that every example (real serializations of the types) matches
//! its schema and shows each of its properties.

use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::route::{Documented, ParamIn, Route, TypeDoc};
use crate::error::Error;

/// The body of every error answer: a Matrix error, as ruma renders it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// The Matrix error code, such as `M_FORBIDDEN`.
    errcode: String,
    /// Why, in a sentence.
    error: String,
}

impl Documented for ErrorBody {
    fn examples() -> Vec<Value> {
        // The bodies the API really answers, as the handlers render them, read into this
        // type and written back: a field this type lacks makes the example null (and the
        // document's test fail).
        [
            Error::MissingToken,
            Error::UnknownToken,
            Error::Forbidden("you are not a member of the board launch".into()),
            Error::NotJson("expected value at line 1 column 1".into()),
            Error::InvalidParam("limit is 1 to 100".into()),
            Error::NotFound("no task launch#99".into()),
        ]
        .iter()
        .map(|e| {
            use ruma::api::OutgoingResponseExt;
            e.to_matrix()
                .try_into_http_response::<Vec<u8>>()
                .ok()
                .and_then(|resp| serde_json::from_slice::<Value>(resp.body()).ok())
                .filter(|body| {
                    let typed = serde_json::from_value::<ErrorBody>(body.clone());
                    typed.ok().and_then(|t| serde_json::to_value(t).ok()).as_ref() == Some(body)
                })
                .unwrap_or(Value::Null)
        })
        .collect()
    }
}

/// The error answers every route with a caller has, each an [`ErrorBody`].
const CALLER_ERRORS: [(&str, &str); 4] = [
    ("400", "M_NOT_JSON, M_BAD_JSON, M_INVALID_PARAM or M_MISSING_PARAM"),
    ("401", "M_MISSING_TOKEN or M_UNKNOWN_TOKEN"),
    (
        "403",
        "M_FORBIDDEN: not a member of the board, out of the client's scope, a virtual user of another client, past the client's max_virtual_users, or the appservice's own tokens",
    ),
    ("502", "M_UNKNOWN: the homeserver could not be reached, or failed"),
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description,
        "content": { "application/json": { "schema": schema_ref("Error") } } })
}

/// A JSON body of `ty`, with its examples; its schemas go to the components.
fn json_content(ty: &TypeDoc, components: &mut Map<String, Value>) -> Value {
    for (name, schema) in &ty.schemas {
        components.insert(name.clone(), schema.clone());
    }
    let examples: Map<String, Value> = ty
        .examples
        .iter()
        .enumerate()
        .map(|(i, example)| (format!("example{}", i + 1), json!({ "value": example })))
        .collect();
    json!({ "application/json": { "schema": schema_ref(&ty.name), "examples": examples } })
}

/// One operation of the document.
fn operation(route: &Route, components: &mut Map<String, Value>) -> Value {
    let sig = &route.signature;
    let mut op = Map::new();
    op.insert("summary".into(), route.summary.into());
    if !sig.caller {
        op.insert("security".into(), json!([]));
    }
    let mut parameters = Vec::new();
    if sig.caller {
        parameters.push(json!({ "name": "X-Boardroom-User", "in": "header", "required": false,
            "description": "With a client token: the virtual user to act as (`@<prefix><name>`); it belongs to the client that named it first.",
            "schema": { "type": "string", "pattern": "^[a-z0-9._=-]{1,64}$" } }));
    }
    for p in route.params.iter().filter(|p| p.within == ParamIn::Path) {
        parameters
            .push(json!({ "name": p.name, "in": "path", "required": true, "schema": p.schema }));
    }
    parameters.extend(sig.query.iter().cloned());
    for p in route.params.iter().filter(|p| p.within == ParamIn::Header) {
        parameters.push(json!({ "name": p.name, "in": "header", "schema": p.schema }));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), parameters.into());
    }
    if let Some(body) = &sig.body {
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": json_content(body, components) }),
        );
    }
    let ok = match &sig.response {
        Some(ty) => json!({ "description": route.ok, "content": json_content(ty, components) }),
        None if sig.event_stream => json!({ "description": route.ok,
            "content": { "text/event-stream": { "schema": { "type": "string",
                "description": "Server-Sent Events: `id:` (the board's event id), `event:` (message, comment, task, membership, typing, presence, notification; reset, ready, end) and `data:` (JSON). See docs/API.md." } } } }),
        None => json!({ "description": route.ok,
            "content": { "application/json": { "schema": { "type": "object" } } } }),
    };
    let mut responses = Map::new();
    responses.insert(sig.success.to_string(), ok);
    if sig.caller {
        for (status, description) in CALLER_ERRORS {
            responses.insert(status.into(), error_response(description));
        }
    }
    if let Some(why) = route.not_found {
        responses.insert("404".into(), error_response(why));
    }
    if let Some(why) = route.conflict {
        responses.insert("409".into(), error_response(why));
    }
    op.insert("responses".into(), responses.into());
    op.into()
}

/// The document, built from [`super::routes`].
pub(crate) fn document() -> Value {
    let mut components = Map::new();
    json_content(&TypeDoc::of::<ErrorBody>(), &mut components);
    let mut paths = Map::new();
    for route in super::routes() {
        let op = operation(&route, &mut components);
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        if let Some(item) = item.as_object_mut() {
            item.insert(route.method.as_str().to_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Boardroom API", "version": "1",
            "description": "Task boards on Matrix: notifications, mention autocomplete and task comments for bots and task apps." },
        "servers": [ { "url": "/" } ],
        "security": [ { "bearer": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "A Matrix access token (acting as that user), or a client token from the config (acting as X-Boardroom-User)." } },
            "schemas": components
        }
    })
}

/// Serves the document (built once).
pub(crate) async fn handle() -> Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::{ErrorBody, TypeDoc};

    #[test]
    fn the_document_names_exactly_the_routes() {
        let doc = super::document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routes = super::super::routes();
        let served: BTreeSet<(String, String)> =
            routes.iter().map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned())).collect();
        assert_eq!(served.len(), routes.len(), "a method and path declared twice");
        assert_eq!(documented, served);
    }

    #[test]
    fn each_path_parameter_is_declared_once_with_its_path() {
        let doc = super::document();
        for route in super::super::routes() {
            let in_path: BTreeSet<&str> = route
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(declared.len(), in_path.len(), "{}: {declared:?}", route.path);
            assert_eq!(declared.into_iter().collect::<BTreeSet<_>>(), in_path, "{}", route.path);
        }
    }

    /// Where `value` differs from `schema` (resolving `$ref`s in `doc`), as messages; the
    /// object properties `value` shows go to `seen`. An object schema that names properties
    /// is closed: a property it does not name is a difference.
    fn check(
        doc: &Value,
        schema: &Value,
        value: &Value,
        at: &str,
        seen: &mut BTreeSet<String>,
    ) -> Vec<String> {
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            let target = &doc["components"]["schemas"][name];
            if target.is_null() {
                return vec![format!("{at}: no component {name}")];
            }
            return check(doc, target, value, at, seen);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema[key].as_array() {
                let mut fits = None;
                for branch in branches {
                    let mut branch_seen = BTreeSet::new();
                    if check(doc, branch, value, at, &mut branch_seen).is_empty() {
                        fits = Some(branch_seen);
                        break;
                    }
                }
                let Some(branch_seen) = fits else {
                    return vec![format!("{at}: {value} fits no branch of {key}")];
                };
                seen.extend(branch_seen);
            }
        }
        let mut errors = Vec::new();
        if let Some(all) = schema["allOf"].as_array() {
            for branch in all {
                errors.extend(check(doc, branch, value, at, seen));
            }
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let type_of = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let type_fits =
            types.contains(&type_of) || (type_of == "integer" && types.contains(&"number"));
        if !types.is_empty() && !type_fits {
            errors.push(format!("{at}: {value} is a {type_of}, documented {types:?}"));
        }
        if let (Some(min), Some(s)) = (schema["minLength"].as_u64(), value.as_str())
            && (s.chars().count() as u64) < min
        {
            errors.push(format!("{at}: shorter than {min}"));
        }
        if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64())
            && n < min
        {
            errors.push(format!("{at}: below {min}"));
        }
        match value {
            Value::Object(fields) if types.contains(&"object") => {
                for required in schema["required"].as_array().into_iter().flatten() {
                    let required = required.as_str().unwrap_or_default();
                    if !fields.contains_key(required) {
                        errors.push(format!("{at}: lacks the required {required}"));
                    }
                }
                for (name, field) in fields {
                    let path = format!("{at}.{name}");
                    match schema["properties"].get(name) {
                        Some(property) => {
                            seen.insert(path.clone());
                            errors.extend(check(doc, property, field, &path, seen));
                        }
                        None if schema["properties"].is_object() => {
                            errors.push(format!("{path}: not in the schema"));
                        }
                        None => {}
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    errors.extend(check(doc, &schema["items"], item, &format!("{at}[]"), seen));
                }
            }
            _ => {}
        }
        errors
    }

    /// Every object property `schema` documents, named as [`check`] names them.
    fn properties(doc: &Value, schema: &Value, at: &str, out: &mut BTreeSet<String>) {
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            return properties(doc, &doc["components"]["schemas"][name], at, out);
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for branch in schema[key].as_array().into_iter().flatten() {
                properties(doc, branch, at, out);
            }
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let path = format!("{at}.{name}");
            out.insert(path.clone());
            properties(doc, property, &path, out);
        }
        if schema["items"].is_object() {
            properties(doc, &schema["items"], &format!("{at}[]"), out);
        }
    }

    /// Where the documented schema of `ty` and its examples differ; for a request body,
    /// also where the type's parser and the schema disagree on what is required and on
    /// unknown properties.
    fn differences(doc: &Value, ty: &TypeDoc) -> Vec<String> {
        let schema = json!({ "$ref": format!("#/components/schemas/{}", ty.name) });
        let at = ty.name.as_str();
        let mut errors = Vec::new();
        if ty.examples.is_empty() {
            errors.push(format!("{at}: no example"));
        }
        let mut seen = BTreeSet::new();
        for example in &ty.examples {
            errors.extend(check(doc, &schema, example, at, &mut seen));
        }
        let mut documented = BTreeSet::new();
        properties(doc, &schema, at, &mut documented);
        for unshown in documented.difference(&seen) {
            errors.push(format!("{unshown}: documented, but in no example of the type"));
        }
        if let Some(accepts) = ty.accepts {
            let top = &doc["components"]["schemas"][&ty.name];
            let required: Vec<&str> = top["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for example in &ty.examples {
                if let Err(e) = accepts(example) {
                    errors.push(format!("{at}: the type refuses its example {example}: {e}"));
                }
                for name in example.as_object().into_iter().flatten().map(|(k, _)| k) {
                    let mut without = example.clone();
                    without.as_object_mut().map(|o| o.remove(name));
                    let refused = accepts(&without).is_err();
                    if refused != required.contains(&name.as_str()) {
                        errors.push(format!(
                            "{at}.{name}: documented required {}, but the type {} a body without it",
                            !refused,
                            if refused { "refuses" } else { "takes" }
                        ));
                    }
                }
                let mut extra = example.clone();
                extra.as_object_mut().map(|o| o.insert("unknown_property".into(), json!(1)));
                let closed = top["additionalProperties"] == json!(false);
                if accepts(&extra).is_ok() == closed {
                    errors.push(format!(
                        "{at}: documented additionalProperties {}, but the type {} unknown properties",
                        !closed,
                        if closed { "takes" } else { "refuses" }
                    ));
                }
            }
        }
        errors
    }

    /// A value of the type `schema` documents, for a query string.
    fn sample(schema: &Value) -> String {
        match schema["type"].as_str() {
            Some("integer") => schema["minimum"].as_i64().unwrap_or(1).to_string(),
            Some("boolean") => "true".into(),
            _ => "x".into(),
        }
    }

    #[test]
    fn documented_query_parameters_match_the_serde_types() {
        let mut checked = 0;
        for route in super::super::routes() {
            let sig = &route.signature;
            let Some(accepts) = sig.query_accepts else {
                assert!(sig.query.is_empty(), "{}: parameters without a parser", route.path);
                continue;
            };
            let all: Vec<(String, &Value)> = sig
                .query
                .iter()
                .map(|p| (p["name"].as_str().unwrap_or_default().to_owned(), p))
                .collect();
            let query = |without: &str, with: Option<(&str, &str)>| {
                all.iter()
                    .filter(|(name, _)| name != without)
                    .map(|(name, p)| match with {
                        Some((n, v)) if n == name => format!("{name}={v}"),
                        _ => format!("{name}={}", sample(&p["schema"])),
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            };
            let at = route.path;
            assert_eq!(accepts(&query("", None)), Ok(()), "{at}: every parameter given");
            for (name, p) in &all {
                let required = p["required"] == json!(true);
                let taken = accepts(&query(name, None)).is_ok();
                assert_eq!(
                    taken, !required,
                    "{at}: without {name} (documented required {required})"
                );
                if p["schema"]["type"] == "integer" {
                    let wrong = accepts(&query("", Some((name, "abc"))));
                    assert!(wrong.is_err(), "{at}: {name} documented an integer, takes abc");
                }
                checked += 1;
            }
        }
        assert!(checked >= 3, "query parameters checked: {checked}");
    }

    #[test]
    fn documented_schemas_match_the_serde_types() {
        let doc = super::document();
        let mut types = vec![TypeDoc::of::<ErrorBody>()];
        for route in super::super::routes() {
            types.extend(route.signature.body.clone());
            types.extend(route.signature.response.clone());
        }
        assert!(types.len() > 5, "the routes' types: {}", types.len());
        let errors: Vec<String> = types.iter().flat_map(|ty| differences(&doc, ty)).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // Each type's component is the one the document serves, with its examples.
        for ty in &types {
            for (name, schema) in &ty.schemas {
                assert_eq!(&doc["components"]["schemas"][name], schema, "{name}");
            }
        }
    }

    /// The check above fails on a type that differs from its schema: a property the schema
    /// does not name, a required one missing, a wrong type, an undocumented enum value.
    #[test]
    fn the_schema_check_catches_a_type_that_differs() {
        let doc = super::document();
        let mut ty = TypeDoc::of::<ErrorBody>();
        ty.examples = vec![json!({ "errcode": "M_FORBIDDEN", "error": "no" })];
        assert!(differences(&doc, &ty).is_empty(), "{:?}", differences(&doc, &ty));
        for (bad, expected) in [
            (
                json!({ "errcode": "M_FORBIDDEN", "error": "no", "extra": 1 }),
                "Error.extra: not in the schema",
            ),
            (json!({ "errcode": "M_FORBIDDEN" }), "Error: lacks the required error"),
            (json!({ "errcode": "M_FORBIDDEN", "error": 3 }), "Error.error: 3 is a integer"),
            (json!({ "error": "no" }), "Error.errcode: documented, but in no example"),
        ] {
            ty.examples = vec![bad];
            let found = differences(&doc, &ty);
            assert!(found.iter().any(|e| e.starts_with(expected)), "{expected}: {found:?}");
        }
        let routes = super::super::routes();
        let mut members = routes
            .iter()
            .find_map(|r| r.signature.response.clone().filter(|t| t.name == "Members"))
            .expect("the members answer");
        members.examples = vec![json!({ "members": [{ "user_id": "@a:x", "role": "guest" }] })];
        let found = differences(&doc, &members);
        assert!(found.iter().any(|e| e.contains("\"guest\" is not one of")), "{found:?}");
        // A request body whose schema and parser disagree.
        let mut comment =
            routes.iter().find_map(|r| r.signature.body.clone()).expect("a request body");
        comment.accepts = Some(|_| Ok(()));
        let found = differences(&doc, &comment);
        assert!(found.iter().any(|e| e.contains("documented required true")), "{found:?}");
        assert!(found.iter().any(|e| e.contains("additionalProperties false")), "{found:?}");
    }

    /// Each route of the table is served at its path, for its method only, by its own
    /// handler: what it answers is what the document says that route answers.
    #[tokio::test]
    async fn each_route_answers_what_the_document_says() {
        use axum::body::Body;
        use http::Request;
        use tower::ServiceExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::Config::offline(
            &dir.path().join("db"),
            "[[api.clients]]\nname = \"tracker\"\ntoken = \"client\"\nboards = [\"launch\"]\n",
        )
        .expect("config");
        let app = crate::app::App::new(config.validate().expect("valid")).expect("app");
        let reader: ruma::OwnedUserId = "@boardroom_reader:localhost".try_into().expect("user");
        app.ctx.store.claim_virtual_user(&reader, "tracker", 10).expect("claim");
        app.ctx.store.set_virtual_user_registered(&reader, "tracker").expect("registered");
        let router = super::super::router(app.ctx.clone());
        let doc = super::document();
        let call = |method: &str, path: &str, body: String| {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer client")
                .header("x-boardroom-user", "reader")
                .body(Body::from(body))
                .expect("request");
            let router = router.clone();
            async move {
                let resp = router.oneshot(req).await.expect("infallible");
                let status = resp.status().as_u16();
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
                (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
            }
        };
        // The path with its parameters filled in, `wrong` with a value that is no integer.
        let path_of = |template: &str, wrong: Option<&str>| {
            let mut path = template.to_owned();
            for (name, value) in [
                ("slug", "launch"),
                ("id", "1"),
                ("number", "1"),
                ("user_id", "@bob:localhost"),
                ("room", "general"),
            ] {
                let value = if wrong == Some(name) { "abc" } else { value };
                path = path.replace(&format!("{{{name}}}"), value);
            }
            path
        };
        let body_of = |route: &super::Route| {
            route.signature.body.as_ref().map(|b| b.examples[0].to_string()).unwrap_or_default()
        };
        let routes = super::super::routes();
        for route in &routes {
            let path = path_of(route.path, None);
            let body = body_of(route);
            let method = route.method.as_str();
            let (status, answer) = call(method, &path, body).await;
            let documented =
                &doc["paths"][route.path][method.to_lowercase()]["responses"][status.to_string()];
            assert!(
                documented.is_object(),
                "{method} {path}: {status} is not documented: {answer}"
            );
            let schema = &documented["content"]["application/json"]["schema"];
            let errors =
                check(&doc, schema, &answer, &format!("{method} {path}"), &mut BTreeSet::new());
            assert!(errors.is_empty(), "{method} {path} answered {status} {answer}: {errors:?}");
            if route.path.ends_with("/openapi.json") {
                assert_eq!((status, &answer), (200, &doc));
            }
            // The inbox's routes need nothing but the caller; the others name a board or an
            // entry this store does not have.
            let expected = match (method, route.path.rsplit('/').next()) {
                (_, Some("openapi.json" | "notifications" | "unread_count" | "read_all")) => 200,
                ("GET", Some("boards")) => 200,
                // This client may not create boards.
                ("POST", Some("boards")) => 403,
                // A virtual user's presence goes to the homeserver, unreachable here.
                _ if route.path == "/_boardroom/api/v1/presence" => 502,
                _ => 404,
            };
            assert_eq!(status, expected, "{method} {path}: {answer}");
            // A path parameter documented as an integer is refused when it is not one.
            for param in route.params.iter().filter(|p| p.schema["type"] == "integer") {
                let wrong = path_of(route.path, Some(param.name));
                let body = body_of(route);
                let (status, answer) = call(method, &wrong, body).await;
                assert_eq!(
                    (status, answer["errcode"].as_str()),
                    (400, Some("M_INVALID_PARAM")),
                    "{method} {wrong}: {answer}"
                );
            }
            // Another method on the same path: 405 M_UNRECOGNIZED, unless a route has it.
            let other = if method == "GET" { "POST" } else { "GET" };
            if !routes.iter().any(|r| r.path == route.path && r.method.as_str() == other) {
                let (status, answer) = call(other, &path, String::new()).await;
                assert_eq!(
                    (status, answer["errcode"].as_str()),
                    (405, Some("M_UNRECOGNIZED")),
                    "{other} {path}"
                );
            }
        }
    }
}
