//! What an app tells the other end: an [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document of its events and TypeScript typings for [`eventum.js`](super::client), both
//! generated from the handlers registered on the [`AppBuilder`], and the opt-in routes
//! that serve them (with the client itself) from the plain-HTTP fallback, on every adapter.
//!
//! Events registered with `AppBuilder::event`, `AppBuilder::request` and
//! `AppBuilder::emits` (feature `schema`) carry their Rust types' JSON Schema (from
//! `schemars`, draft 7, subschemas inlined); the others are listed with an open payload
//! (`{}`, `unknown` in TypeScript). A recursive type cannot be inlined: it becomes a named
//! schema in the document's `components/schemas` (referenced as
//! `#/components/schemas/Name`) and a named type (`export type Name = ...`) in the typings.
//!
//! Event names are free-form; the keys of the document's messages and operations are
//! derived from them (`client.chat_join`, `receive.chat_join`) and made unique, so
//! `chat:join` and `chat_join` are two messages (`chat_join` and `chat_join_2`).

use std::collections::{BTreeMap, HashSet};
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
/// The path [`AppBuilder::serve_typescript`] answers with the app's event typings.
pub const TYPESCRIPT_PATH: &str = "/events.d.ts";

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
    serve_typescript: bool,
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
            serve_typescript: false,
        }
    }
}

/// `T`'s JSON Schema, draft 7, with every subschema inlined but the recursive ones, which
/// stay in its `definitions` (a recursive root type, which schemars refers to as `#`,
/// moves there too, under its title), and no `$schema` key. The document and the typings
/// move the definitions to `components/schemas` ([`Components`]).
#[cfg(feature = "schema")]
pub(crate) fn schema_of<T: schemars::JsonSchema + ?Sized>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    object.remove("$schema");
    let mut definitions = match object.remove("definitions") {
        Some(Value::Object(definitions)) => definitions,
        _ => Map::new(),
    };
    if refers_to(&schema, "#") {
        let title = schema.get("title").and_then(Value::as_str).unwrap_or("Root");
        let mut name = title.to_owned();
        while definitions.contains_key(&name) {
            name.push('_');
        }
        let target = format!("#/definitions/{name}");
        rewrite_refs(&mut schema, &|reference| (reference == "#").then(|| target.clone()));
        // As schemars writes the same type when it is not the root: without a title.
        if let Some(object) = schema.as_object_mut() {
            object.remove("title");
        }
        definitions.insert(name, schema);
        schema = json!({ "$ref": target });
    }
    if !definitions.is_empty() {
        schema["definitions"] = Value::Object(definitions);
    }
    schema
}

/// Whether `schema` holds `{"$ref": reference}` anywhere.
#[cfg(feature = "schema")]
fn refers_to(schema: &Value, reference: &str) -> bool {
    match schema {
        Value::Object(object) => {
            object.get("$ref").and_then(Value::as_str) == Some(reference)
                || object.values().any(|v| refers_to(v, reference))
        }
        Value::Array(items) => items.iter().any(|v| refers_to(v, reference)),
        _ => false,
    }
}

/// Replaces every `$ref` that `map` maps.
fn rewrite_refs(schema: &mut Value, map: &dyn Fn(&str) -> Option<String>) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref") {
                if let Some(new) = map(reference) {
                    *reference = new;
                }
            }
            for value in object.values_mut() {
                rewrite_refs(value, map);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, map)),
        _ => {}
    }
}

/// The named schemas of an app's events, gathered from their schemas' `definitions` into
/// one `components/schemas` map (same name and same schema: one entry; same name, another
/// schema: a numbered name), with the events' schemas rewritten to refer to them.
#[derive(Default)]
struct Components {
    schemas: Map<String, Value>,
}

impl Components {
    /// `schema` without its `definitions`, which move here; its references follow them.
    fn take(&mut self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        let definitions = match schema.as_object_mut().and_then(|o| o.remove("definitions")) {
            Some(Value::Object(definitions)) => definitions,
            _ => return schema,
        };
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for (name, definition) in &definitions {
            // The definition as it reads here if every name stays as it is.
            let mut same_names = definition.clone();
            rewrite_refs(&mut same_names, &|reference| {
                let name = reference.strip_prefix("#/definitions/")?;
                Some(format!("#/components/schemas/{name}"))
            });
            let mut unique = name.clone();
            let mut n = 1;
            while self
                .schemas
                .get(&unique)
                .is_some_and(|existing| existing != &same_names)
                || names.values().any(|taken| taken == &unique)
            {
                n += 1;
                unique = format!("{name}_{n}");
            }
            names.insert(name.clone(), unique);
        }
        let map = |reference: &str| {
            let name = reference.strip_prefix("#/definitions/")?;
            Some(format!("#/components/schemas/{}", names.get(name)?))
        };
        for (name, mut definition) in definitions {
            rewrite_refs(&mut definition, &map);
            self.schemas.insert(names[&name].clone(), definition);
        }
        rewrite_refs(&mut schema, &map);
        schema
    }
}

/// The app's events with their schemas' named parts gathered in [`Components`].
struct Events {
    client: Vec<ClientDoc>,
    server: Vec<ServerDoc>,
    components: Components,
}

fn events_of(inner: &AppInner) -> Events {
    let mut components = Components::default();
    let client = client_events(inner)
        .into_iter()
        .map(|event| ClientDoc {
            data: components.take(&event.data),
            reply: event.reply.as_ref().map(|reply| components.take(reply)),
            name: event.name,
        })
        .collect();
    let server = inner
        .docs
        .server
        .iter()
        .filter(|d| d.name != VALIDATION_ERROR)
        .map(|d| ServerDoc {
            name: d.name.clone(),
            data: components.take(&d.data),
        })
        .collect();
    Events {
        client,
        server,
        components,
    }
}

/// The event of the validation error, which every app may send.
const VALIDATION_ERROR: &str = "validation_error";

/// The validation error's message: flat, without `data` (see [`envelope`](super::envelope)).
fn validation_error_schema(id_schema: &Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "event": { "const": VALIDATION_ERROR },
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
    })
}

fn id_schema() -> Value {
    json!({ "description": "any JSON value; the reply carries it back" })
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
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::testing::TestServer;
    ///
    /// let app = App::builder().route(Route::new("/ws")).on_event("join", |_, _: serde_json::Value| {});
    /// let server = TestServer::new(app.serve_asyncapi().build());
    /// let response = String::from_utf8(server.raw(b"GET /asyncapi.json HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap();
    /// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(response.contains("application/json"));
    /// assert!(response.contains(r#""asyncapi":"3.0.0""#));
    /// ```
    pub fn serve_asyncapi(mut self) -> Self {
        self.inner.docs.serve_asyncapi = true;
        self
    }

    /// Answers `GET /events.d.ts` ([`TYPESCRIPT_PATH`]) with the app's TypeScript typings
    /// ([`App::typescript`]), generated when the app is built, so a front end can fetch the
    /// types of the server it talks to (e.g. `curl -o src/events.d.ts http://host/events.d.ts`)
    /// and use them with `eventum.js` (served at `/eventum.d.ts` by
    /// [`serve_client`](Self::serve_client)): `connect<Events>(url)`.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::testing::TestServer;
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .declare_event("tick", serde_json::json!({"type": "integer"}))
    ///     .serve_typescript()
    ///     .build();
    /// let typings = app.typescript();
    /// let server = TestServer::new(app);
    /// let response = String::from_utf8(server.raw(b"GET /events.d.ts HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap();
    /// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(response.ends_with(&typings));
    /// assert!(typings.contains("\"tick\": number;"));
    /// ```
    pub fn serve_typescript(mut self) -> Self {
        self.inner.docs.serve_typescript = true;
        self
    }

    /// The title and version in the AsyncAPI document (default `eventum app`, `0.1.0`).
    ///
    /// ```
    /// use eventum_core::app::App;
    ///
    /// let doc = App::builder().asyncapi_info("chat", "2.1.0").build().asyncapi();
    /// assert_eq!(doc["info"]["title"], "chat");
    /// assert_eq!(doc["info"]["version"], "2.1.0");
    /// ```
    pub fn asyncapi_info(mut self, title: impl Into<String>, version: impl Into<String>) -> Self {
        self.inner.docs.title = title.into();
        self.inner.docs.version = version.into();
        self
    }
}

/// Puts the opt-in routes in front of the app's HTTP fallback (called by `build`).
pub(crate) fn install_routes(inner: &mut AppInner) {
    let docs = &inner.docs;
    if !docs.serve_client && !docs.serve_asyncapi && !docs.serve_typescript {
        return;
    }
    let asyncapi = docs.serve_asyncapi.then(|| asyncapi_of(inner).to_string());
    let typescript = docs.serve_typescript.then(|| typescript_of(inner));
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
            TYPESCRIPT_PATH if get => match &typescript {
                Some(typings) => script(typings, "application/typescript; charset=utf-8"),
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

/// A key for event `name` made of the characters AsyncAPI allows in component keys,
/// different from every key in `used` (to which it is added): `chat:join` and `chat_join`
/// get `chat_join` and `chat_join_2`.
fn unique_key(name: &str, used: &mut HashSet<String>) -> String {
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
    let mut key = safe.clone();
    let mut n = 1;
    while used.contains(&key) {
        n += 1;
        key = format!("{safe}_{n}");
    }
    used.insert(key.clone());
    key
}

fn asyncapi_of(inner: &AppInner) -> Value {
    let docs = &inner.docs;
    let events = events_of(inner);
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
    let id_schema = id_schema();
    let mut client_keys = HashSet::new();
    for event in events.client {
        let suffix = unique_key(&event.name, &mut client_keys);
        let key = format!("client.{suffix}");
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
            let reply_key = format!("reply.{suffix}");
            let reply_payload = envelope_schema(&event.name, reply, &[("id", id_schema.clone())]);
            let reply_ref = add_message(
                reply_key,
                &event.name,
                format!("The reply to request `{}`", event.name),
                reply_payload,
            );
            operation["reply"] = json!({ "channel": { "$ref": "#/channels/events" }, "messages": [reply_ref] });
        }
        operations.insert(format!("receive.{suffix}"), operation);
    }
    let mut server: Vec<(String, Value)> = events
        .server
        .iter()
        .map(|d| (d.name.clone(), envelope_schema(&d.name, &d.data, &[])))
        .collect();
    server.push((VALIDATION_ERROR.to_owned(), validation_error_schema(&id_schema)));
    let mut server_keys = HashSet::new();
    for (name, payload) in server {
        let suffix = unique_key(&name, &mut server_keys);
        let key = format!("server.{suffix}");
        let reference = add_message(
            key.clone(),
            &name,
            format!("Event `{name}` (server to client)"),
            payload,
        );
        operations.insert(
            format!("send.{suffix}"),
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
        "components": { "messages": messages, "schemas": events.components.schemas },
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
    let events = events_of(inner);
    let names = ts_names(&events.components);
    for (name, schema) in &events.components.schemas {
        let _ = writeln!(
            out,
            "/** The schema `{name}` (`#/components/schemas/{name}` in the AsyncAPI document). */\n\
             export type {} = {};\n",
            names[name],
            ts_type(schema, 0, &names)
        );
    }
    let client = &events.client;
    out.push_str("/** Events the client sends: the type of each one's `data`. */\nexport type ClientEvents = {\n");
    for event in client {
        let _ = writeln!(out, "  {}: {};", ts_key(&event.name), ts_type(&event.data, 1, &names));
    }
    out.push_str(
        "};\n\n/** Requests the client sends: the `data` and the reply's `data`. */\nexport type ClientRequests = {\n",
    );
    for event in client {
        if let Some(reply) = &event.reply {
            let _ = writeln!(
                out,
                "  {}: {{ data: {}; reply: {} }};",
                ts_key(&event.name),
                ts_type(&event.data, 1, &names),
                ts_type(reply, 1, &names)
            );
        }
    }
    out.push_str(
        "};\n\n/** Events the server sends: the type of each one's `data` (for `validation_error`, which\n \
         * has no `data`, the whole message, as eventum.js hands it to its handlers). */\n\
         export type ServerEvents = {\n",
    );
    for event in &events.server {
        let _ = writeln!(out, "  {}: {};", ts_key(&event.name), ts_type(&event.data, 1, &names));
    }
    let _ = writeln!(
        out,
        "  {}: {};",
        ts_key(VALIDATION_ERROR),
        ts_type(&validation_error_schema(&id_schema()), 1, &names)
    );
    out.push_str(
        "};\n\n/** The app's events, for `connect<Events>(url)`. */\n\
         export type Events = { client: ClientEvents; requests: ClientRequests; server: ServerEvents };\n",
    );
    out
}

/// Component schema name -> TypeScript type name: an identifier, unique, and none of the
/// names the typings export themselves.
type TsNames = BTreeMap<String, String>;

fn ts_names(components: &Components) -> TsNames {
    let mut taken: HashSet<String> = ["ClientEvents", "ClientRequests", "ServerEvents", "Events"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut names = TsNames::new();
    for name in components.schemas.keys() {
        let mut ident: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
            ident.insert(0, '_');
        }
        let base = ident.clone();
        let mut n = 1;
        while taken.contains(&ident) || TS_RESERVED.contains(&ident.as_str()) {
            n += 1;
            ident = format!("{base}_{n}");
        }
        taken.insert(ident.clone());
        names.insert(name.clone(), ident);
    }
    names
}

/// Words a type alias cannot be named.
const TS_RESERVED: &[&str] = &[
    "any",
    "bigint",
    "boolean",
    "never",
    "null",
    "number",
    "object",
    "string",
    "symbol",
    "undefined",
    "unknown",
    "void",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "while",
    "with",
];

fn ts_key(name: &str) -> String {
    Value::from(name).to_string()
}

/// A TypeScript type for a JSON Schema (the subset schemars writes; anything else is
/// `unknown`, never a wrong type). `$ref`s to `#/components/schemas/X` name `names[X]`.
pub(crate) fn ts_type(schema: &Value, depth: usize, names: &TsNames) -> String {
    let object = match schema {
        Value::Bool(true) => return "unknown".into(),
        Value::Bool(false) => return "never".into(),
        Value::Object(object) => object,
        _ => return "unknown".into(),
    };
    if let Some(Value::String(reference)) = object.get("$ref") {
        return reference
            .strip_prefix("#/components/schemas/")
            .and_then(|name| names.get(name))
            .cloned()
            .unwrap_or_else(|| "unknown".into());
    }
    if let Some(constant) = object.get("const") {
        return constant.to_string();
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        return union(values.iter().map(Value::to_string).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(schemas)) = object.get(key) {
            return union(schemas.iter().map(|s| ts_type(s, depth, names)).collect());
        }
    }
    if let Some(Value::Array(schemas)) = object.get("allOf") {
        let parts: Vec<String> = schemas
            .iter()
            .map(|s| format!("({})", ts_type(s, depth, names)))
            .collect();
        return parts.join(" & ");
    }
    match object.get("type") {
        Some(Value::String(kind)) => ts_of_kind(kind, object, depth, names),
        Some(Value::Array(kinds)) => union(
            kinds
                .iter()
                .filter_map(Value::as_str)
                .map(|kind| ts_of_kind(kind, object, depth, names))
                .collect(),
        ),
        _ if object.contains_key("properties") => ts_of_kind("object", object, depth, names),
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

fn ts_of_kind(kind: &str, object: &Map<String, Value>, depth: usize, names: &TsNames) -> String {
    match kind {
        "null" => "null".into(),
        "boolean" => "boolean".into(),
        "integer" | "number" => "number".into(),
        "string" => "string".into(),
        "array" => match object.get("items").or_else(|| object.get("prefixItems")) {
            Some(Value::Array(items)) => {
                let items: Vec<String> = items.iter().map(|s| ts_type(s, depth, names)).collect();
                format!("[{}]", items.join(", "))
            }
            Some(items) => format!("Array<{}>", ts_type(items, depth, names)),
            None => "unknown[]".into(),
        },
        "object" => ts_object(object, depth, names),
        _ => "unknown".into(),
    }
}

/// An object type. Named fields beside a schema for the other fields (`#[serde(flatten)]`
/// of a map) cannot give the index signature the other fields' type alone (every named
/// field must fit it, TS2411): it is the union of that type and the named fields' types.
fn ts_object(object: &Map<String, Value>, depth: usize, names: &TsNames) -> String {
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = object.get("properties").and_then(Value::as_object);
    let mut additional = match object.get("additionalProperties") {
        Some(Value::Bool(false)) => None,
        Some(schema @ Value::Object(_)) => Some(ts_type(schema, depth + 1, names)),
        _ if properties.is_some_and(|p| !p.is_empty()) => None,
        _ => Some("unknown".to_owned()),
    };
    let indent = "  ".repeat(depth + 1);
    let mut out = String::from("{\n");
    let mut field_types = Vec::new();
    for (name, schema) in properties.into_iter().flatten() {
        if let Some(Value::String(description)) = schema.get("description") {
            let _ = writeln!(out, "{indent}/** {} */", description.replace("*/", "* /"));
        }
        let optional = !required.contains(&name.as_str());
        let ty = ts_type(schema, depth + 1, names);
        let _ = writeln!(
            out,
            "{indent}{}{}: {ty};",
            ts_key(name),
            if optional { "?" } else { "" }
        );
        field_types.push(ty);
        if optional {
            field_types.push("undefined".to_owned());
        }
    }
    if let Some(value) = &mut additional {
        if value != "unknown" && !field_types.is_empty() {
            field_types.insert(0, value.clone());
            let mut parts: Vec<String> = Vec::new();
            for ty in field_types {
                let ty = if ty.contains('\n') || ty.contains(" | ") {
                    format!("({ty})")
                } else {
                    ty
                };
                if !parts.contains(&ty) {
                    parts.push(ty);
                }
            }
            *value = parts.join(" | ");
        }
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
        assert_eq!(ts_type(&json!({"type": "string"}), 0, &TsNames::new()), "string");
        assert_eq!(
            ts_type(&json!({"type": ["integer", "null"]}), 0, &TsNames::new()),
            "number | null"
        );
        assert_eq!(
            ts_type(&json!({"enum": ["a", "b"]}), 0, &TsNames::new()),
            "\"a\" | \"b\""
        );
        assert_eq!(
            ts_type(
                &json!({"type": "array", "items": {"type": "boolean"}}),
                0,
                &TsNames::new()
            ),
            "Array<boolean>"
        );
        assert_eq!(
            ts_type(
                &json!({"type": "array", "items": [{"type": "integer"}, {"type": "string"}]}),
                0,
                &TsNames::new()
            ),
            "[number, string]"
        );
        assert_eq!(ts_type(&json!({}), 0, &TsNames::new()), "unknown");
        assert_eq!(
            ts_type(&json!({"$ref": "#/definitions/X"}), 0, &TsNames::new()),
            "unknown"
        );
        let names = TsNames::from([("Tree".to_owned(), "Tree".to_owned())]);
        assert_eq!(
            ts_type(&json!({"$ref": "#/components/schemas/Tree"}), 0, &names),
            "Tree"
        );
        // Named fields beside a map's: the index signature admits both (TS2411 otherwise).
        assert_eq!(
            ts_type(
                &json!({"type": "object", "properties": {"id": {"type": "string"}, "n": {"type": "integer"}},
                        "required": ["id"], "additionalProperties": {"type": "boolean"}}),
                0,
                &TsNames::new()
            ),
            "{\n  \"id\": string;\n  \"n\"?: number;\n  [key: string]: boolean | string | number | undefined;\n}"
        );
        assert_eq!(
            ts_type(
                &json!({"type": "object", "properties": {"a": {"type": "string"}, "b-c": {"type": "number"}}, "required": ["a"]}),
                0,
                &TsNames::new()
            ),
            "{\n  \"a\": string;\n  \"b-c\"?: number;\n}"
        );
        assert_eq!(
            ts_type(
                &json!({"type": "object", "additionalProperties": {"type": "integer"}}),
                0,
                &TsNames::new()
            ),
            "{\n  [key: string]: number;\n}"
        );
        assert_eq!(
            ts_type(
                &json!({"oneOf": [{"const": "x"}, {"type": "object", "properties": {}, "additionalProperties": false}]}),
                0,
                &TsNames::new()
            ),
            "\"x\" | {\n}"
        );
    }
}
