//! What an app tells the other end: an [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document of its events and TypeScript typings for [`eventum.js`](super::client), both
//! generated from the handlers registered on the [`AppBuilder`], and the opt-in routes
//! that serve them (with the client itself) from the plain-HTTP fallback, on every adapter.
//!
//! Events registered with `AppBuilder::event`, `AppBuilder::request` and
//! `AppBuilder::emits` (feature `schema`) carry their Rust types' JSON Schema (from
//! `schemars`, draft 7, subschemas inlined); the others are listed with an open payload
//! (`{}`, `unknown` in TypeScript).

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::handshake::{HttpResponse, Request};

use super::{client, App, AppBuilder, AppInner};

/// The path [`AppBuilder::serve_client`] answers.
pub const CLIENT_PATH: &str = "/eventum.js";
/// The path [`AppBuilder::serve_client`] answers with the client's TypeScript declarations.
pub const CLIENT_TYPES_PATH: &str = "/eventum.d.ts";
/// The path [`AppBuilder::serve_asyncapi`] answers.
pub const ASYNCAPI_PATH: &str = "/asyncapi.json";

/// A client → server event as documented.
#[derive(Debug, Clone)]
pub(crate) struct ClientDoc {
    pub(crate) name: String,
    /// The schema of `data`.
    pub(crate) data: Value,
    /// The schema of the reply's `data`, for a request.
    pub(crate) reply: Option<Value>,
}

impl ClientDoc {
    pub(crate) fn untyped(name: &str, request: bool) -> Self {
        ClientDoc {
            name: name.to_owned(),
            data: json!({}),
            reply: request.then(|| json!({})),
        }
    }
}

/// A server → client event as declared.
#[derive(Debug, Clone)]
pub(crate) struct ServerDoc {
    pub(crate) name: String,
    pub(crate) data: Value,
}

/// The documentation of an app's events and what it serves of it.
#[derive(Debug, Clone)]
pub(crate) struct Docs {
    client: Vec<ClientDoc>,
    server: Vec<ServerDoc>,
    title: String,
    version: String,
    serve_client: bool,
    serve_asyncapi: bool,
}

impl Default for Docs {
    fn default() -> Self {
        Docs {
            client: Vec::new(),
            server: Vec::new(),
            title: "eventum app".to_owned(),
            version: "0.1.0".to_owned(),
            serve_client: false,
            serve_asyncapi: false,
        }
    }
}

/// `T`'s JSON Schema, draft 7, with every subschema inlined (recursive types keep a `$ref`
/// that the document does not resolve) and no `$schema` key.
#[cfg(feature = "schema")]
pub(crate) fn schema_of<T: schemars::JsonSchema + ?Sized>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("definitions");
    }
    schema
}

impl AppBuilder {
    pub(crate) fn document_client(mut self, doc: ClientDoc) -> Self {
        let docs = &mut self.inner.docs.client;
        docs.retain(|d| d.name != doc.name);
        docs.push(doc);
        self
    }

    pub(crate) fn document_server(mut self, doc: ServerDoc) -> Self {
        let docs = &mut self.inner.docs.server;
        docs.retain(|d| d.name != doc.name);
        docs.push(doc);
        self
    }

    /// Answers `GET /eventum.js` with the JavaScript client (an ES module) and
    /// `GET /eventum.d.ts` with its TypeScript declarations, so a page can
    /// `import { connect } from "/eventum.js"` with no build step. Other plain HTTP
    /// requests go to the [`http_fallback`](Self::http_fallback), whenever it was set.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::testing::TestServer;
    ///
    /// let server = TestServer::new(App::builder().route(Route::new("/ws")).serve_client().build());
    /// let response = server.raw(b"GET /eventum.js HTTP/1.1\r\nHost: x\r\n\r\n");
    /// let response = String::from_utf8(response).unwrap();
    /// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(response.contains("text/javascript"));
    /// assert!(response.contains("export function connect("));
    /// ```
    pub fn serve_client(mut self) -> Self {
        self.inner.docs.serve_client = true;
        self
    }

    /// Answers `GET /asyncapi.json` with the app's AsyncAPI document ([`App::asyncapi`]).
    pub fn serve_asyncapi(mut self) -> Self {
        self.inner.docs.serve_asyncapi = true;
        self
    }

    /// The title and version in the AsyncAPI document (default `eventum app`, `0.1.0`).
    pub fn asyncapi_info(mut self, title: impl Into<String>, version: impl Into<String>) -> Self {
        self.inner.docs.title = title.into();
        self.inner.docs.version = version.into();
        self
    }
}

/// Puts the opt-in routes in front of the app's HTTP fallback (called by `build`).
pub(crate) fn install_routes(inner: &mut AppInner) {
    let docs = &inner.docs;
    if !docs.serve_client && !docs.serve_asyncapi {
        return;
    }
    let asyncapi = docs.serve_asyncapi.then(|| asyncapi_of(inner).to_string());
    let serve_client = docs.serve_client;
    let next = inner.http_fallback.take();
    inner.http_fallback = Some(Arc::new(move |request: &Request| {
        let get = request.method().eq_ignore_ascii_case("GET");
        match request.path() {
            CLIENT_PATH if get && serve_client => script(client::ESM, "text/javascript; charset=utf-8"),
            CLIENT_TYPES_PATH if get && serve_client => script(client::TYPES, "application/typescript; charset=utf-8"),
            ASYNCAPI_PATH if get => match &asyncapi {
                Some(document) => script(document, "application/json"),
                None => fall_through(next.as_deref(), request),
            },
            _ => fall_through(next.as_deref(), request),
        }
    }));
}

fn script(body: &str, content_type: &str) -> HttpResponse {
    HttpResponse::new(200)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache")
        .body(body.as_bytes().to_vec())
}

fn fall_through(next: Option<&(dyn Fn(&Request) -> HttpResponse + Send + Sync)>, request: &Request) -> HttpResponse {
    match next {
        Some(handler) => handler(request),
        None => HttpResponse::text(400, crate::HandshakeError::NotWebSocket.to_string()),
    }
}

/// Every client event: the documented ones, then the other handlers' names (sorted), with
/// an open payload.
fn client_events(inner: &AppInner) -> Vec<ClientDoc> {
    let mut events: Vec<ClientDoc> = inner
        .docs
        .client
        .iter()
        .filter(|d| inner.events.contains_key(&d.name))
        .cloned()
        .collect();
    let mut others: Vec<&String> = inner
        .events
        .keys()
        .filter(|name| !events.iter().any(|d| &d.name == *name))
        .collect();
    others.sort();
    events.extend(others.into_iter().map(|name| ClientDoc::untyped(name, false)));
    events
}

/// The wire form of an event whose `data` has `data` as its schema.
fn envelope_schema(name: &str, data: &Value, extra: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    properties.insert("event".into(), json!({ "const": name }));
    properties.insert("data".into(), data.clone());
    let mut required = vec![json!("event")];
    for (field, schema) in extra {
        properties.insert((*field).into(), schema.clone());
        if field == &"id" {
            required.push(json!("id"));
        }
    }
    json!({ "type": "object", "properties": properties, "required": required })
}

fn message_key(prefix: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}.{safe}")
}

fn asyncapi_of(inner: &AppInner) -> Value {
    let docs = &inner.docs;
    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operations = Map::new();
    let mut add_message = |key: String, name: &str, summary: String, payload: Value| {
        messages.insert(
            key.clone(),
            json!({ "name": name, "summary": summary, "contentType": "application/json", "payload": payload }),
        );
        channel_messages.insert(key.clone(), json!({ "$ref": format!("#/components/messages/{key}") }));
        json!({ "$ref": format!("#/channels/events/messages/{key}") })
    };
    let id_schema = json!({ "description": "any JSON value; the reply carries it back" });
    for event in client_events(inner) {
        let key = message_key("client", &event.name);
        // A request's `id` is required; an event's is not described (the app promises no reply).
        let (summary, extra) = match event.reply {
            Some(_) => (
                format!(
                    "Request `{}` (client to server; expects the reply with its id)",
                    event.name
                ),
                vec![("id", id_schema.clone())],
            ),
            None => (format!("Event `{}` (client to server)", event.name), Vec::new()),
        };
        let payload = envelope_schema(&event.name, &event.data, &extra);
        let reference = add_message(key.clone(), &event.name, summary, payload);
        let mut operation = json!({
            "action": "receive",
            "channel": { "$ref": "#/channels/events" },
            "summary": format!("The client sends `{}`", event.name),
            "messages": [reference],
        });
        if let Some(reply) = &event.reply {
            let reply_key = message_key("reply", &event.name);
            let reply_payload = envelope_schema(&event.name, reply, &[("id", id_schema.clone())]);
            let reply_ref = add_message(
                reply_key,
                &event.name,
                format!("The reply to request `{}`", event.name),
                reply_payload,
            );
            operation["reply"] = json!({ "channel": { "$ref": "#/channels/events" }, "messages": [reply_ref] });
        }
        operations.insert(format!("receive.{}", &key["client.".len()..]), operation);
    }
    let validation = json!({
        "type": "object",
        "properties": {
            "event": { "const": "validation_error" },
            "message": { "type": "string" },
            "id": id_schema,
            "details": {
                "type": "object",
                "properties": {
                    "event": { "type": "string" },
                    "path": { "type": "string" },
                    "reason": { "type": "string" }
                }
            }
        },
        "required": ["event", "message"]
    });
    let mut server: Vec<(String, Value, Value)> = docs
        .server
        .iter()
        .filter(|d| d.name != "validation_error")
        .map(|d| (d.name.clone(), d.data.clone(), envelope_schema(&d.name, &d.data, &[])))
        .collect();
    server.push(("validation_error".to_owned(), json!({}), validation));
    for (name, _, payload) in server {
        let key = message_key("server", &name);
        let reference = add_message(
            key.clone(),
            &name,
            format!("Event `{name}` (server to client)"),
            payload,
        );
        operations.insert(
            format!("send.{}", &key["server.".len()..]),
            json!({
                "action": "send",
                "channel": { "$ref": "#/channels/events" },
                "summary": format!("The server sends `{name}`"),
                "messages": [reference],
            }),
        );
    }
    let routes: Vec<&str> = inner.routes.iter().map(|r| r.pattern.source.as_str()).collect();
    let address = match routes.as_slice() {
        [only] if !only.contains('{') => Value::from(*only),
        _ => Value::Null,
    };
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": docs.title,
            "version": docs.version,
            "description": "Generated by eventum from the app's handlers. Every message is one JSON object in a text frame: {\"event\": name, \"data\": payload, \"id\"?: request id, \"ack\"?: server request number}.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": address,
                "description": format!("The app's WebSocket routes: {}", routes.join(", ")),
                "messages": channel_messages,
            }
        },
        "operations": operations,
        "components": { "messages": messages },
    })
}

impl App {
    /// The app's [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
    /// document: one channel (the app's WebSocket routes), a `receive` operation for every
    /// client event (with a `reply` for requests), a `send` operation for every server event
    /// declared with [`AppBuilder::declare_event`] or `AppBuilder::emits` (feature `schema`), plus
    /// `validation_error`. Payloads describe the whole message, envelope included.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .on_request("add", |_, (a, b): (i64, i64)| a + b)
    ///     .declare_event("tick", serde_json::json!({"type": "integer"}))
    ///     .build();
    /// let doc = app.asyncapi();
    /// assert_eq!(doc["channels"]["events"]["address"], "/ws");
    /// assert_eq!(doc["operations"]["receive.add"]["action"], "receive");
    /// assert!(doc["operations"]["receive.add"]["reply"].is_object());
    /// assert_eq!(doc["operations"]["send.tick"]["action"], "send");
    /// ```
    pub fn asyncapi(&self) -> Value {
        asyncapi_of(&self.inner)
    }

    /// TypeScript typings of the app's events for `eventum.js`: the types `ClientEvents`,
    /// `ClientRequests` and `ServerEvents`, and `Events` to give to `connect`:
    /// `connect<Events>(url)` makes `client.emit("join", {room: 1})` a type error when
    /// `room` is a string.
    pub fn typescript(&self) -> String {
        typescript_of(&self.inner)
    }
}

fn typescript_of(inner: &AppInner) -> String {
    let mut out = String::from(
        "// Generated by eventum from the app's Rust types (App::typescript); do not edit.\n\
         // Use with eventum.js: `connect<Events>(url)`.\n\n",
    );
    let client = client_events(inner);
    out.push_str("/** Events the client sends: the type of each one's `data`. */\nexport type ClientEvents = {\n");
    for event in &client {
        let _ = writeln!(out, "  {}: {};", ts_key(&event.name), ts_type(&event.data, 1));
    }
    out.push_str(
        "};\n\n/** Requests the client sends: the `data` and the reply's `data`. */\nexport type ClientRequests = {\n",
    );
    for event in client.iter() {
        if let Some(reply) = &event.reply {
            let _ = writeln!(
                out,
                "  {}: {{ data: {}; reply: {} }};",
                ts_key(&event.name),
                ts_type(&event.data, 1),
                ts_type(reply, 1)
            );
        }
    }
    out.push_str(
        "};\n\n/** Events the server sends: the type of each one's `data`. */\nexport type ServerEvents = {\n",
    );
    for event in &inner.docs.server {
        let _ = writeln!(out, "  {}: {};", ts_key(&event.name), ts_type(&event.data, 1));
    }
    out.push_str(
        "};\n\n/** The app's events, for `connect<Events>(url)`. */\n\
         export type Events = { client: ClientEvents; requests: ClientRequests; server: ServerEvents };\n",
    );
    out
}

fn ts_key(name: &str) -> String {
    Value::from(name).to_string()
}

/// A TypeScript type for a JSON Schema (the subset schemars writes; anything else is
/// `unknown`, never a wrong type).
pub(crate) fn ts_type(schema: &Value, depth: usize) -> String {
    let object = match schema {
        Value::Bool(true) => return "unknown".into(),
        Value::Bool(false) => return "never".into(),
        Value::Object(object) => object,
        _ => return "unknown".into(),
    };
    if let Some(constant) = object.get("const") {
        return constant.to_string();
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        return union(values.iter().map(Value::to_string).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(schemas)) = object.get(key) {
            return union(schemas.iter().map(|s| ts_type(s, depth)).collect());
        }
    }
    if let Some(Value::Array(schemas)) = object.get("allOf") {
        let parts: Vec<String> = schemas.iter().map(|s| format!("({})", ts_type(s, depth))).collect();
        return parts.join(" & ");
    }
    match object.get("type") {
        Some(Value::String(kind)) => ts_of_kind(kind, object, depth),
        Some(Value::Array(kinds)) => union(
            kinds
                .iter()
                .filter_map(Value::as_str)
                .map(|kind| ts_of_kind(kind, object, depth))
                .collect(),
        ),
        _ if object.contains_key("properties") => ts_of_kind("object", object, depth),
        _ => "unknown".into(),
    }
}

fn union(mut parts: Vec<String>) -> String {
    parts.dedup();
    match parts.len() {
        0 => "never".into(),
        1 => parts.remove(0),
        _ => parts.join(" | "),
    }
}

fn ts_of_kind(kind: &str, object: &Map<String, Value>, depth: usize) -> String {
    match kind {
        "null" => "null".into(),
        "boolean" => "boolean".into(),
        "integer" | "number" => "number".into(),
        "string" => "string".into(),
        "array" => match object.get("items").or_else(|| object.get("prefixItems")) {
            Some(Value::Array(items)) => {
                let items: Vec<String> = items.iter().map(|s| ts_type(s, depth)).collect();
                format!("[{}]", items.join(", "))
            }
            Some(items) => format!("Array<{}>", ts_type(items, depth)),
            None => "unknown[]".into(),
        },
        "object" => ts_object(object, depth),
        _ => "unknown".into(),
    }
}

fn ts_object(object: &Map<String, Value>, depth: usize) -> String {
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = object.get("properties").and_then(Value::as_object);
    let additional = match object.get("additionalProperties") {
        Some(Value::Bool(false)) => None,
        Some(schema @ Value::Object(_)) => Some(ts_type(schema, depth + 1)),
        _ if properties.is_some_and(|p| !p.is_empty()) => None,
        _ => Some("unknown".to_owned()),
    };
    let indent = "  ".repeat(depth + 1);
    let mut out = String::from("{\n");
    for (name, schema) in properties.into_iter().flatten() {
        if let Some(Value::String(description)) = schema.get("description") {
            let _ = writeln!(out, "{indent}/** {} */", description.replace("*/", "* /"));
        }
        let optional = if required.contains(&name.as_str()) { "" } else { "?" };
        let _ = writeln!(
            out,
            "{indent}{}{optional}: {};",
            ts_key(name),
            ts_type(schema, depth + 1)
        );
    }
    if let Some(value) = additional {
        let _ = writeln!(out, "{indent}[key: string]: {value};");
    }
    let _ = write!(out, "{}}}", "  ".repeat(depth));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typescript_of_common_schemas() {
        assert_eq!(ts_type(&json!({"type": "string"}), 0), "string");
        assert_eq!(ts_type(&json!({"type": ["integer", "null"]}), 0), "number | null");
        assert_eq!(ts_type(&json!({"enum": ["a", "b"]}), 0), "\"a\" | \"b\"");
        assert_eq!(
            ts_type(&json!({"type": "array", "items": {"type": "boolean"}}), 0),
            "Array<boolean>"
        );
        assert_eq!(
            ts_type(
                &json!({"type": "array", "items": [{"type": "integer"}, {"type": "string"}]}),
                0
            ),
            "[number, string]"
        );
        assert_eq!(ts_type(&json!({}), 0), "unknown");
        assert_eq!(ts_type(&json!({"$ref": "#/definitions/X"}), 0), "unknown");
        assert_eq!(
            ts_type(
                &json!({"type": "object", "properties": {"a": {"type": "string"}, "b-c": {"type": "number"}}, "required": ["a"]}),
                0
            ),
            "{\n  \"a\": string;\n  \"b-c\"?: number;\n}"
        );
        assert_eq!(
            ts_type(
                &json!({"type": "object", "additionalProperties": {"type": "integer"}}),
                0
            ),
            "{\n  [key: string]: number;\n}"
        );
        assert_eq!(
            ts_type(
                &json!({"oneOf": [{"const": "x"}, {"type": "object", "properties": {}, "additionalProperties": false}]}),
                0
            ),
            "\"x\" | {\n}"
        );
    }
}
