//! The envelope's payload handlers (`on_event`, `on_request`), the validation error of a
//! request, the AsyncAPI document and TypeScript typings of an app, and the opt-in routes
//! that serve them with the JavaScript client.

use eventum_core::app::{App, AppBuilder, Route};
use eventum_core::testing::{Message, TestServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Deserialize, JsonSchema)]
struct Join {
    /// The room to join.
    room: String,
    name: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, JsonSchema)]
struct Sum {
    sum: i64,
}

#[derive(Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used
enum Notice {
    Joined { room: String },
    Kicked { reason: String },
}

fn app(builder: AppBuilder) -> App {
    builder
        .route(Route::new("/ws"))
        .event("join", |ctx, join: Join| {
            ctx.join(&join.room);
            let _ = ctx.send_event("joined", &json!({"room": join.room, "name": join.name}));
        })
        .request("add", |_ctx, add: Add| Sum { sum: add.a + add.b })
        .on("raw", |_, _| {})
        .emits::<Notice>("notice")
        .emits::<String>("joined")
        .build()
}

fn recv(client: &mut eventum_core::testing::TestClient) -> Value {
    client.recv_json().expect("a JSON message")
}

#[test]
fn payload_handlers_read_data_or_the_flat_object() {
    let server = TestServer::new(app(App::builder()));
    let mut client = server.connect("/ws").unwrap();
    client.send_text(r#"{"event":"join","data":{"room":"a","name":"ada"}}"#);
    assert_eq!(
        recv(&mut client),
        json!({"event": "joined", "data": {"room": "a", "name": "ada"}})
    );
    // The original's flat event still works.
    client.send_text(r#"{"event":"join","room":"b"}"#);
    assert_eq!(
        recv(&mut client),
        json!({"event": "joined", "data": {"room": "b", "name": null}})
    );
    assert_eq!(server.room_members("a").len(), 1);
    assert_eq!(server.room_members("b").len(), 1);
}

#[test]
fn requests_are_answered_with_the_handlers_value_and_their_id() {
    let server = TestServer::new(app(App::builder()));
    let mut client = server.connect("/ws").unwrap();
    client.send_text(r#"{"event":"add","id":"r1","data":{"a":2,"b":3}}"#);
    assert_eq!(
        client.recv(),
        Some(Message::Text(r#"{"event":"add","id":"r1","data":{"sum":5}}"#.into()))
    );
    // Without an id: handled, no reply.
    client.send_text(r#"{"event":"add","data":{"a":2,"b":3}}"#);
    assert_eq!(client.recv(), None);
}

#[test]
fn a_requests_validation_error_carries_its_id_and_details() {
    let server = TestServer::new(app(App::builder().validation_details(true)));
    let mut client = server.connect("/ws").unwrap();
    client.send_text(r#"{"event":"add","id":9,"data":{"a":"two","b":3}}"#);
    let reply = recv(&mut client);
    assert_eq!(reply["event"], "validation_error");
    assert_eq!(reply["id"], 9);
    assert_eq!(reply["message"], "Invalid data received");
    assert_eq!(reply["details"]["path"], "data.a", "{reply}");
    client.send_text(r#"{"event":"join","data":{"room":5}}"#);
    let reply = recv(&mut client);
    assert_eq!(reply.get("id"), None, "{reply}");
    assert_eq!(reply["details"]["path"], "data.room", "{reply}");
    // Flat form: the path is the field's.
    client.send_text(r#"{"event":"join","name":"x"}"#);
    assert_eq!(recv(&mut client)["details"]["path"], "room");
}

#[test]
fn asyncapi_document_lists_both_directions_with_payloads_and_replies() {
    let doc = app(App::builder().asyncapi_info("test app", "1.2.3")).asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "test app");
    assert_eq!(doc["info"]["version"], "1.2.3");
    assert_eq!(doc["channels"]["events"]["address"], "/ws");
    let ops = &doc["operations"];
    assert_eq!(ops["receive.join"]["action"], "receive");
    assert!(ops["receive.join"].get("reply").is_none());
    assert_eq!(
        ops["receive.add"]["reply"]["messages"][0]["$ref"],
        "#/channels/events/messages/reply.add"
    );
    assert_eq!(ops["receive.raw"]["action"], "receive");
    assert_eq!(ops["send.notice"]["action"], "send");
    assert_eq!(ops["send.validation_error"]["action"], "send");
    let messages = &doc["components"]["messages"];
    let join = &messages["client.join"]["payload"];
    assert_eq!(join["properties"]["event"]["const"], "join");
    assert_eq!(join["properties"]["data"]["properties"]["room"]["type"], "string");
    assert_eq!(join["properties"]["data"]["required"], json!(["room"]));
    assert_eq!(messages["client.add"]["payload"]["required"], json!(["event", "id"]));
    assert_eq!(
        messages["reply.add"]["payload"]["properties"]["data"]["properties"]["sum"]["type"],
        "integer"
    );
    assert_eq!(messages["client.raw"]["payload"]["properties"]["data"], json!({}));
    // Every operation's message is one of the channel's.
    for (name, op) in ops.as_object().unwrap() {
        let reference = op["messages"][0]["$ref"].as_str().unwrap();
        let key = reference.rsplit('/').next().unwrap();
        assert!(
            doc["channels"]["events"]["messages"].get(key).is_some(),
            "{name}: {reference}"
        );
    }
}

#[test]
fn typescript_typings_name_every_event_with_its_payload() {
    let ts = app(App::builder()).typescript();
    assert!(ts.contains("export type ClientEvents = {"), "{ts}");
    assert!(
        ts.contains(
            "  \"join\": {\n    \"name\"?: string | null;\n    /** The room to join. */\n    \"room\": string;\n  };"
        ),
        "{ts}"
    );
    assert!(ts.contains("  \"raw\": unknown;"), "{ts}");
    assert!(
        ts.contains(
            "  \"add\": { data: {\n    \"a\": number;\n    \"b\": number;\n  }; reply: {\n    \"sum\": number;\n  } };"
        ),
        "{ts}"
    );
    assert!(ts.contains("\"kind\": \"joined\";"), "{ts}");
    assert!(ts.contains("  \"joined\": string;"), "{ts}");
    assert!(ts.contains("export type Events = {"), "{ts}");
}

fn get(server: &TestServer, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    String::from_utf8(server.raw(request.as_bytes())).unwrap()
}

#[test]
fn client_and_document_are_served_only_when_asked() {
    let plain = TestServer::new(app(App::builder()));
    assert!(get(&plain, "/eventum.js").starts_with("HTTP/1.1 400 "));
    assert!(get(&plain, "/asyncapi.json").starts_with("HTTP/1.1 400 "));

    let serving = TestServer::new(app(App::builder()
        .http_fallback(|_| eventum_core::handshake::HttpResponse::text(200, "page"))
        .serve_client()
        .serve_asyncapi()));
    let js = get(&serving, "/eventum.js");
    assert!(js.starts_with("HTTP/1.1 200 OK\r\n"), "{js}");
    assert!(js.contains("Content-Type: text/javascript"), "{js}");
    assert!(js.ends_with(eventum_core::app::client::ESM));
    let types = get(&serving, "/eventum.d.ts");
    assert!(types.ends_with(eventum_core::app::client::TYPES));
    let doc = get(&serving, "/asyncapi.json");
    assert!(doc.contains("Content-Type: application/json"), "{doc}");
    let body = doc.split("\r\n\r\n").nth(1).unwrap();
    let parsed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["operations"]["receive.add"]["action"], "receive");
    // Other paths still reach the app's own fallback, and the WebSocket route still works.
    assert!(get(&serving, "/").ends_with("page"));
    assert!(serving.connect("/ws").is_ok());
    // Only GET.
    let post =
        String::from_utf8(serving.raw(b"POST /eventum.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")).unwrap();
    assert!(post.ends_with("page"), "{post}");
}

/// A recursive type: schemars refers to it as `#` at the root, `#/definitions/Tree` inside.
#[derive(Deserialize, Serialize, JsonSchema)]
struct Tree {
    label: String,
    children: Vec<Tree>,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct Forest {
    trees: Vec<Tree>,
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r.clone());
            }
            o.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn recursive_types_become_named_schemas_and_types() {
    let app = App::builder()
        .route(Route::new("/ws"))
        .request("mirror", |_, tree: Tree| tree)
        .event("plant", |_, _: Forest| {})
        .emits::<Tree>("grown")
        .build();
    let doc = app.asyncapi();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas.as_object().unwrap().len(), 1, "{schemas:#}");
    assert_eq!(
        schemas["Tree"]["properties"]["children"]["items"]["$ref"],
        "#/components/schemas/Tree"
    );
    assert_eq!(
        doc["components"]["messages"]["client.mirror"]["payload"]["properties"]["data"],
        json!({"$ref": "#/components/schemas/Tree"})
    );
    // Every reference resolves within the document.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for reference in all {
        let pointer = reference.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
    }
    let ts = app.typescript();
    assert!(
        ts.contains("export type Tree = {\n  \"children\": Array<Tree>;\n  \"label\": string;\n};"),
        "{ts}"
    );
    assert!(ts.contains("  \"mirror\": { data: Tree; reply: Tree };"), "{ts}");
    assert!(ts.contains("  \"grown\": Tree;"), "{ts}");
    assert!(
        ts.contains("\"children\": Array<Tree>;\n      \"label\": string;"),
        "{ts}"
    );
}

#[test]
fn event_names_that_sanitize_alike_keep_their_own_messages() {
    let app = App::builder()
        .route(Route::new("/ws"))
        .on_event("chat:join", |_, _: Value| {})
        .on_event("chat_join", |_, _: Value| {})
        .declare_event("chat:joined", json!({"type": "string"}))
        .declare_event("chat_joined", json!({"type": "integer"}))
        .build();
    let doc = app.asyncapi();
    let messages = &doc["components"]["messages"];
    let names: Vec<&str> = [
        "client.chat_join",
        "client.chat_join_2",
        "server.chat_joined",
        "server.chat_joined_2",
    ]
    .iter()
    .map(|key| {
        messages[*key]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing: {messages:#}"))
    })
    .collect();
    assert_eq!(names, ["chat:join", "chat_join", "chat:joined", "chat_joined"]);
    assert_eq!(doc["operations"].as_object().unwrap().len(), 5); // 2 + 2 + validation_error
    let ts = app.typescript();
    assert!(
        ts.contains("  \"chat:joined\": string;\n  \"chat_joined\": number;"),
        "{ts}"
    );
}

#[test]
fn typings_include_the_validation_error_and_are_served_when_asked() {
    let ts = app(App::builder()).typescript();
    assert!(ts.contains("  \"validation_error\": {\n"), "{ts}");
    assert!(ts.contains("    \"message\": string;\n"), "{ts}");
    let plain = TestServer::new(app(App::builder()));
    assert!(get(&plain, "/events.d.ts").starts_with("HTTP/1.1 400 "));
    let serving = TestServer::new(app(App::builder().serve_typescript()));
    let response = get(&serving, "/events.d.ts");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Content-Type: application/typescript"), "{response}");
    assert!(response.ends_with(&ts));
}
