//! `GET /_boardroom/api/v1/openapi.json`: the API described as OpenAPI 3.1. A test checks
//! that it names exactly the routes the router serves.

use axum::Json;
use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "400": { "description": "M_NOT_JSON, M_BAD_JSON, M_INVALID_PARAM or M_MISSING_PARAM", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "401": { "description": "M_MISSING_TOKEN or M_UNKNOWN_TOKEN", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "403": { "description": "M_FORBIDDEN: not a member of the board, out of the client's scope, a virtual user of another client, past the client's max_virtual_users, or the appservice's own tokens", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    })
}

fn with_errors(mut ok: Value) -> Value {
    if let (Some(map), Value::Object(errors)) = (ok.as_object_mut(), error_responses()) {
        map.extend(errors);
    }
    ok
}

/// The document.
pub fn document() -> Value {
    let user_header = json!({ "name": "X-Boardroom-User", "in": "header", "required": false,
        "description": "With a client token: the virtual user to act as (`@<prefix><name>`); it belongs to the client that named it first.",
        "schema": { "type": "string", "pattern": "^[a-z0-9._=-]{1,64}$" } });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Boardroom API", "version": "1",
            "description": "Task boards on Matrix: notifications, mention autocomplete and task comments for bots and task apps." },
        "servers": [ { "url": "/" } ],
        "security": [ { "bearer": [] } ],
        "paths": {
            "/_boardroom/api/v1/openapi.json": { "get": { "summary": "This document", "security": [],
                "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/_boardroom/api/v1/notifications": { "get": {
                "summary": "The caller's inbox, newest first",
                "parameters": [ user_header,
                    { "name": "from", "in": "query", "schema": { "type": "string" }, "description": "next_batch of the previous page" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 20 } } ],
                "responses": with_errors(json!({ "200": { "description": "A page", "content": { "application/json": { "schema": {
                    "type": "object", "required": ["notifications"], "properties": {
                        "notifications": { "type": "array", "items": { "$ref": "#/components/schemas/Notification" } },
                        "next_batch": { "type": "string" } } } } } } })) } },
            "/_boardroom/api/v1/notifications/unread_count": { "get": {
                "summary": "The caller's unread count", "parameters": [ user_header ],
                "responses": with_errors(json!({ "200": { "description": "Count", "content": { "application/json": { "schema": {
                    "type": "object", "required": ["unread"], "properties": { "unread": { "type": "integer" } } } } } } })) } },
            "/_boardroom/api/v1/notifications/read_all": { "post": {
                "summary": "Mark every entry of the caller's inbox read", "parameters": [ user_header ],
                "responses": with_errors(json!({ "200": { "description": "Marked", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Marked" } } } } })) } },
            "/_boardroom/api/v1/notifications/{id}/read": { "post": {
                "summary": "Mark one entry read",
                "parameters": [ user_header, { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } } ],
                "responses": with_errors(json!({ "200": { "description": "Marked (0 if it was read already)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Marked" } } } },
                    "404": { "description": "M_NOT_FOUND: not in the caller's inbox, or (for a client) of a board outside its scope" } })) } },
            "/_boardroom/api/v1/boards/{slug}/members": { "get": {
                "summary": "Mention autocomplete: members whose localpart or display name starts with q",
                "parameters": [ user_header,
                    { "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "q", "in": "query", "schema": { "type": "string" } } ],
                "responses": with_errors(json!({ "200": { "description": "At most 20 members", "content": { "application/json": { "schema": {
                    "type": "object", "required": ["members"], "properties": { "members": { "type": "array", "items": {
                        "type": "object", "required": ["user_id", "role"], "properties": {
                            "user_id": { "type": "string" }, "display_name": { "type": "string" },
                            "role": { "enum": ["owner", "admin", "member"] } } } } } } } } } })) } },
            "/_boardroom/api/v1/boards/{slug}/tasks/{number}/comments": { "post": {
                "summary": "Add a comment to a task as the client's virtual user (client tokens only)",
                "parameters": [ user_header,
                    { "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "number", "in": "path", "required": true, "schema": { "type": "integer" } },
                    { "name": "Idempotency-Key", "in": "header", "schema": { "type": "string", "maxLength": 128 } } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["body"], "additionalProperties": false,
                    "properties": { "body": { "type": "string", "minLength": 1, "description": "The comment's text: not blank, at most 16,000 bytes of UTF-8" } } } } } },
                "responses": with_errors(json!({ "200": { "description": "Sent", "content": { "application/json": { "schema": {
                    "type": "object", "required": ["event_id"], "properties": { "event_id": { "type": "string" } } } } } },
                    "404": { "description": "M_NOT_FOUND: no such board or task" } })) } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "A Matrix access token (acting as that user), or a client token from the config (acting as X-Boardroom-User)." } },
            "schemas": {
                "Error": { "type": "object", "required": ["errcode", "error"], "properties": {
                    "errcode": { "type": "string" }, "error": { "type": "string" } } },
                "Marked": { "type": "object", "required": ["marked"], "properties": { "marked": { "type": "integer" } } },
                "Notification": { "type": "object",
                    "required": ["id", "user_id", "kind", "board", "room_id", "event_id", "sender", "excerpt", "ts", "read", "seq"],
                    "properties": {
                        "id": { "type": "integer" }, "user_id": { "type": "string" },
                        "kind": { "enum": ["mention", "comment", "assignment"] },
                        "board": { "type": "string" }, "room_id": { "type": "string" },
                        "thread_root": { "type": "string" }, "event_id": { "type": "string" },
                        "sender": { "type": "string" }, "excerpt": { "type": "string" },
                        "ts": { "type": "integer" }, "read": { "type": "boolean" }, "seq": { "type": "integer" } } }
            }
        }
    })
}

/// Serves the document.
pub async fn handle() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn the_document_names_exactly_the_routes() {
        let doc = super::document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> =
            super::super::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        assert_eq!(documented, served);
    }
}
