//! The example apps every adapter serves: written once here, run by `eventum-smol`'s and
//! `eventum-std`'s `echo` and `chat` examples.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use eventum_core::app::{App, Route};
use eventum_core::handshake::HttpResponse;
use eventum_core::{CloseCode, Config, SharedFrame};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod serving;

/// The chat page served at `GET /`.
pub const CHAT_PAGE: &str = include_str!("../static/chat.html");

/// The chat page's script, served at `GET /chat.js`: typed (`// @ts-check`, JSDoc) by the
/// typings the app generates and serves at `/events.d.ts`; `eventum-e2e/tests/js.rs`
/// type-checks it with `tsc --strict`.
pub const CHAT_SCRIPT: &str = include_str!("../static/chat.js");

/// An echo server for conformance and load tests: accepts any path and sends every
/// message back unchanged (text as text, binary as binary). Limits are raised to 64 MiB
/// so the large-message conformance cases (up to 16 MiB) pass. For the broadcast load
/// test, connections to `/broadcast` all join one room and every text message one of them
/// sends goes to all of them, the sender included (encoded once, shared by every member).
pub fn echo_app() -> App {
    let config = Config::builder()
        .max_frame_size(64 << 20)
        .max_message_size(64 << 20)
        .water_marks(8 << 20, 1 << 20)
        .max_backlog(160 << 20)
        .build()
        .expect("valid echo limits");
    App::builder()
        .config(config)
        .route(Route::new("/{*path}"))
        .on_connect(|ctx| {
            if ctx.path() == "/broadcast" {
                ctx.join("broadcast");
            }
        })
        .on_text(|ctx, text| {
            if ctx.in_room("broadcast") {
                ctx.broadcast("broadcast", SharedFrame::text(text));
            } else {
                let _ = ctx.send_text(text);
            }
        })
        .on_binary(|ctx, data| {
            let _ = ctx.send_binary(data);
        })
        .build()
}

/// `join`: enter a room under a nickname.
#[derive(Deserialize, JsonSchema)]
pub struct Join {
    /// The room (1 to 2000 bytes).
    pub room: String,
    /// Your nickname in it (1 to 2000 bytes).
    pub name: String,
}

/// `message` from a client: say something in a room one has joined.
#[derive(Deserialize, JsonSchema)]
pub struct Say {
    /// The room.
    pub room: String,
    /// The message (at most 2000 bytes).
    pub text: String,
}

/// `leave`: leave a room.
#[derive(Deserialize, JsonSchema)]
pub struct Leave {
    /// The room.
    pub room: String,
}

/// `joined` / `left`, to a room's members: who came or went.
#[derive(Serialize, JsonSchema)]
pub struct Presence {
    /// The room.
    pub room: String,
    /// The member's nickname.
    pub name: String,
}

/// `message` from the server: a member said something.
#[derive(Serialize, JsonSchema)]
pub struct Said {
    /// The room.
    pub room: String,
    /// Who said it.
    pub name: String,
    /// What they said.
    pub text: String,
}

/// `error`: what the client asked for cannot be done (e.g. a message to a room it has not joined).
#[derive(Serialize, JsonSchema)]
pub struct ChatError {
    /// Why.
    pub message: String,
}

/// `rooms` (a request): the rooms this connection is in.
#[derive(Deserialize, JsonSchema)]
pub struct RoomsQuery {}

/// Longest room name, nickname or message the chat accepts.
const MAX_FIELD: usize = 2000;

/// The chat app: its page at `GET /` (with its script at `/chat.js`), WebSocket events at
/// `/ws`, the JavaScript client at `/eventum.js` (declarations at `/eventum.d.ts`), its
/// AsyncAPI document at `/asyncapi.json` and its TypeScript typings, generated from the
/// Rust types below, at `/events.d.ts` (`cargo run -p eventum-demo --example
/// export_chat_schema DIR` writes the same files).
///
/// Messages use eventum's envelope ([`eventum_core::app::envelope`]). Client events:
/// `join` `{room, name}`, `message` `{room, text}`, `leave` `{room}` (the original's flat
/// form, `{"event":"join","room":R,"name":N}`, works too), and the request `rooms` (`{}`),
/// answered with the list of rooms the connection is in. Server events to the room's
/// members: `joined` `{room, name}`, `message` `{room, name, text}`, `left` `{room, name}`
/// (also when a member disconnects). A malformed event gets the validation error; a
/// message to a room one has not joined gets `error` `{message}` and nothing is
/// broadcast. The nickname lives in the connection's flags.
///
/// `GET /healthz` answers `200 ok` until shutdown begins, then `503`; with
/// [`serving::metrics`] installed, `GET /metrics` answers the framework's metrics in
/// Prometheus' text format.
pub fn chat_app() -> App {
    let metrics = serving::installed_metrics();
    App::builder()
        .route(Route::new("/ws"))
        .health_check("/healthz")
        .http_fallback(move |request| match request.path() {
            "/" | "/index.html" => HttpResponse::html(200, CHAT_PAGE),
            "/chat.js" => HttpResponse::new(200)
                .header("Content-Type", "text/javascript; charset=utf-8")
                .body(CHAT_SCRIPT),
            "/metrics" if metrics.is_some() => serving::metrics_response(metrics),
            _ => HttpResponse::text(404, "Not Found"),
        })
        .serve_client()
        .serve_asyncapi()
        .serve_typescript()
        .asyncapi_info("eventum chat", env!("CARGO_PKG_VERSION"))
        .event("join", |ctx, join: Join| {
            if join.room.is_empty()
                || join.name.is_empty()
                || join.room.len() > MAX_FIELD
                || join.name.len() > MAX_FIELD
            {
                let _ = ctx.send_validation_error("room", "room and name must be 1 to 2000 bytes");
                return;
            }
            ctx.flags_mut().add("name", join.name.clone());
            ctx.join(&join.room);
            let joined = Presence {
                room: join.room.clone(),
                name: join.name,
            };
            broadcast(ctx, &join.room, "joined", &joined);
        })
        .event("message", |ctx, say: Say| {
            if !ctx.in_room(&say.room) {
                let error = ChatError {
                    message: format!("you have not joined room {:?}", say.room),
                };
                let _ = ctx.send_event("error", &error);
                return;
            }
            if say.text.len() > MAX_FIELD {
                let _ = ctx.send_validation_error("text", "messages are at most 2000 bytes");
                return;
            }
            let message = Said {
                room: say.room.clone(),
                name: nickname(ctx),
                text: say.text,
            };
            broadcast(ctx, &say.room, "message", &message);
        })
        .event("leave", |ctx, leave: Leave| {
            if ctx.in_room(&leave.room) {
                let left = Presence {
                    room: leave.room.clone(),
                    name: nickname(ctx),
                };
                broadcast(ctx, &leave.room, "left", &left);
                ctx.leave(&leave.room);
            }
        })
        .request("rooms", |ctx, _: RoomsQuery| -> Vec<String> {
            ctx.rooms().map(str::to_owned).collect()
        })
        .emits::<Presence>("joined")
        .emits::<Said>("message")
        .emits::<Presence>("left")
        .emits::<ChatError>("error")
        .on_binary(|ctx, _| {
            let _ = ctx.close(CloseCode::UNSUPPORTED_DATA, "the chat speaks JSON text");
        })
        .on_disconnect(|ctx, _closed| {
            let name = nickname(ctx);
            let rooms: Vec<String> = ctx.rooms().map(str::to_owned).collect();
            for room in rooms {
                let left = Presence {
                    room,
                    name: name.clone(),
                };
                if let Ok(frame) = SharedFrame::event("left", &left) {
                    ctx.broadcast_others(&left.room, frame);
                }
            }
        })
        .on_startup(|| log::info!("chat starting"))
        .on_shutdown(|| log::info!("chat stopped"))
        .build()
}

fn nickname(ctx: &eventum_core::app::Context<'_>) -> String {
    ctx.flags().get_str("name").unwrap_or("anonymous").to_owned()
}

fn broadcast<T: Serialize>(ctx: &mut eventum_core::app::Context<'_>, room: &str, event: &str, data: &T) {
    match SharedFrame::event(event, data) {
        Ok(frame) => ctx.broadcast(room, frame),
        Err(e) => log::error!("cannot encode {event}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventum_core::testing::{Message, TestServer};
    use serde_json::json;

    #[test]
    fn echo_returns_text_as_text_and_binary_as_binary() {
        let server = TestServer::new(echo_app());
        let mut client = server.connect("/any/path?x=1").unwrap();
        client.send_text("héllo");
        client.send_binary(&[0, 1, 2]);
        let big = "x".repeat(3 << 20);
        client.send_text(&big);
        assert_eq!(
            client.recv_all(),
            [
                Message::Text("héllo".into()),
                Message::Binary(vec![0, 1, 2]),
                Message::Text(big)
            ]
        );
    }

    #[test]
    fn chat_room_flow() {
        let server = TestServer::new(chat_app());
        let mut ada = server.connect("/ws").unwrap();
        let mut bob = server.connect("/ws").unwrap();
        let mut eve = server.connect("/ws").unwrap();
        ada.send_json(&json!({"event": "join", "room": "r", "name": "ada"}));
        bob.send_json(&json!({"event": "join", "room": "r", "name": "bob"}));
        eve.send_json(&json!({"event": "message", "room": "r", "text": "sneaky"}));
        ada.send_json(&json!({"event": "message", "room": "r", "text": "hi"}));
        assert_eq!(
            ada.recv_all(),
            [
                Message::Text(r#"{"event":"joined","data":{"room":"r","name":"ada"}}"#.into()),
                Message::Text(r#"{"event":"joined","data":{"room":"r","name":"bob"}}"#.into()),
                Message::Text(r#"{"event":"message","data":{"room":"r","name":"ada","text":"hi"}}"#.into()),
            ]
        );
        assert_eq!(bob.recv_all().len(), 2);
        assert_eq!(eve.recv_json().unwrap()["event"], "error");
        assert_eq!(eve.recv(), None);
        eve.send_json(&json!({"event": "join", "room": 5}));
        assert_eq!(
            eve.recv_json().unwrap(),
            json!({"event": "validation_error", "message": "Invalid data received"})
        );
        bob.disconnect();
        assert_eq!(
            ada.recv_json().unwrap(),
            json!({"event": "left", "data": {"room": "r", "name": "bob"}})
        );
        ada.send_json(&json!({"event": "leave", "room": "r"}));
        assert_eq!(
            ada.recv_json().unwrap(),
            json!({"event": "left", "data": {"room": "r", "name": "ada"}})
        );
        assert!(server.room_members("r").is_empty());
    }

    #[test]
    fn chat_serves_its_page() {
        let server = TestServer::new(chat_app());
        let response = String::from_utf8(server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(response.contains("<title>eventum chat</title>"));
        let missing = String::from_utf8(server.raw(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap();
        assert!(missing.starts_with("HTTP/1.1 404 "));
    }

    #[test]
    fn chat_speaks_the_envelope_and_answers_the_rooms_request() {
        let server = TestServer::new(chat_app());
        let mut ada = server.connect("/ws").unwrap();
        ada.send_json(&json!({"event": "join", "data": {"room": "r", "name": "ada"}}));
        assert_eq!(
            ada.recv_json().unwrap(),
            json!({"event": "joined", "data": {"room": "r", "name": "ada"}})
        );
        ada.send_json(&json!({"event": "rooms", "id": 1, "data": {}}));
        assert_eq!(
            ada.recv_json().unwrap(),
            json!({"event": "rooms", "id": 1, "data": ["r"]})
        );
        ada.send_json(&json!({"event": "message", "id": 2, "data": {"room": 5}}));
        assert_eq!(
            ada.recv_json().unwrap(),
            json!({"event": "validation_error", "id": 2, "message": "Invalid data received"})
        );
    }

    /// Every event the chat sends in a session that touches each of its handlers is declared
    /// in its AsyncAPI document, and its data has the declared schema's required fields.
    #[test]
    fn chat_sends_only_the_events_it_declares() {
        let app = chat_app();
        let doc = app.asyncapi();
        let server = TestServer::new(app);
        let mut ada = server.connect("/ws").unwrap();
        let mut bob = server.connect("/ws").unwrap();
        ada.send_json(&json!({"event": "join", "data": {"room": "r", "name": "ada"}}));
        bob.send_json(&json!({"event": "join", "data": {"room": "r", "name": "bob"}}));
        bob.send_json(&json!({"event": "message", "data": {"room": "elsewhere", "text": "x"}}));
        bob.send_json(&json!({"event": "message", "data": {"room": "r", "text": "hi"}}));
        bob.send_json(&json!({"event": "join", "data": {"room": 5}}));
        bob.send_json(&json!({"event": "rooms", "id": 1, "data": {}}));
        ada.send_json(&json!({"event": "leave", "data": {"room": "r"}}));
        bob.disconnect();
        let mut sent: Vec<serde_json::Value> = Vec::new();
        for client in [&mut ada, &mut bob] {
            for message in client.recv_all() {
                if let Message::Text(text) = message {
                    sent.push(serde_json::from_str(&text).unwrap());
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for message in &sent {
            let event = message["event"].as_str().unwrap();
            if message.get("id").is_some() && event == "rooms" {
                continue; // the reply to a request, documented with it
            }
            let declared = doc["components"]["messages"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(key, m)| key.starts_with("server.") && m["name"] == event)
                .unwrap_or_else(|| panic!("the chat sends {event:?}, which it does not declare: {message}"));
            let payload = &declared.1["payload"];
            for field in payload["required"].as_array().unwrap() {
                assert!(
                    message.get(field.as_str().unwrap()).is_some(),
                    "{message} lacks {field}"
                );
            }
            let data_schema = &payload["properties"]["data"];
            for field in data_schema["required"].as_array().into_iter().flatten() {
                assert!(
                    message["data"].get(field.as_str().unwrap()).is_some(),
                    "{message}: data lacks {field}"
                );
            }
            seen.insert(event.to_owned());
        }
        let expected = ["error", "joined", "left", "message", "validation_error"];
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected, "{sent:?}");
    }

    #[test]
    fn chat_serves_the_client_its_document_and_typings() {
        let server = TestServer::new(chat_app());
        let get = |path: &str| {
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            String::from_utf8(server.raw(request.as_bytes())).unwrap()
        };
        let js = get("/eventum.js");
        assert!(js.starts_with("HTTP/1.1 200 OK\r\n") && js.contains("export function connect("));
        let doc = get("/asyncapi.json");
        assert!(doc.starts_with("HTTP/1.1 200 OK\r\n") && doc.contains("\"asyncapi\":\"3.0.0\""));
        let typings = get("/events.d.ts");
        assert!(typings.starts_with("HTTP/1.1 200 OK\r\n"), "{typings}");
        assert!(typings.ends_with(&chat_app().typescript()));
        assert!(typings.contains("\"validation_error\": {"));
        let script = get("/chat.js");
        assert!(script.contains("text/javascript") && script.ends_with(CHAT_SCRIPT));
        assert!(get("/nope").starts_with("HTTP/1.1 404 "));
    }
}
