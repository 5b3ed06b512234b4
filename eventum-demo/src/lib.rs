//! The example apps every adapter serves: written once here, run by `eventum-smol`'s and
//! `eventum-std`'s `echo` and `chat` examples.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use eventum_core::app::{App, Route};
use eventum_core::handshake::HttpResponse;
use eventum_core::{CloseCode, Config, SharedFrame};
use serde::Deserialize;
use serde_json::json;

/// The chat page served at `GET /`.
pub const CHAT_PAGE: &str = include_str!("../static/chat.html");

/// An echo server for conformance and load tests: accepts any path and sends every
/// message back unchanged (text as text, binary as binary). Limits are raised to 64 MiB
/// so the large-message conformance cases (up to 16 MiB) pass.
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
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .on_binary(|ctx, data| {
            let _ = ctx.send_binary(data);
        })
        .build()
}

#[derive(Deserialize)]
struct Join {
    room: String,
    name: String,
}

#[derive(Deserialize)]
struct Say {
    room: String,
    text: String,
}

#[derive(Deserialize)]
struct Leave {
    room: String,
}

/// Longest room name, nickname or message the chat accepts.
const MAX_FIELD: usize = 2000;

/// The chat app: its page at `GET /`, WebSocket events at `/ws`.
///
/// Client events: `{"event":"join","room":R,"name":N}`, `{"event":"message","room":R,"text":T}`,
/// `{"event":"leave","room":R}`. Server events to the room's members:
/// `{"event":"joined","room":R,"name":N}`, `{"event":"message","room":R,"name":N,"text":T}`,
/// `{"event":"left","room":R,"name":N}` (also when a member disconnects). A malformed
/// event gets the validation error; a message to a room one has not joined gets
/// `{"event":"error","message":...}` and nothing is broadcast. The nickname lives in the
/// connection's flags.
pub fn chat_app() -> App {
    App::builder()
        .route(Route::new("/ws"))
        .http_fallback(|request| match request.path() {
            "/" | "/index.html" => HttpResponse::html(200, CHAT_PAGE),
            _ => HttpResponse::text(404, "Not Found"),
        })
        .on_typed("join", |ctx, join: Join| {
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
            let joined = json!({"event": "joined", "room": join.room, "name": join.name});
            broadcast(ctx, &join.room, &joined);
        })
        .on_typed("message", |ctx, say: Say| {
            if !ctx.in_room(&say.room) {
                let error = json!({"event": "error", "message": format!("you have not joined room {:?}", say.room)});
                let _ = ctx.send_json(&error);
                return;
            }
            if say.text.len() > MAX_FIELD {
                let _ = ctx.send_validation_error("text", "messages are at most 2000 bytes");
                return;
            }
            let name = nickname(ctx);
            let message = json!({"event": "message", "room": say.room, "name": name, "text": say.text});
            broadcast(ctx, &say.room, &message);
        })
        .on_typed("leave", |ctx, leave: Leave| {
            if ctx.in_room(&leave.room) {
                let left = json!({"event": "left", "room": leave.room, "name": nickname(ctx)});
                broadcast(ctx, &leave.room, &left);
                ctx.leave(&leave.room);
            }
        })
        .on_binary(|ctx, _| {
            let _ = ctx.close(CloseCode::UNSUPPORTED_DATA, "the chat speaks JSON text");
        })
        .on_disconnect(|ctx, _closed| {
            let name = nickname(ctx);
            let rooms: Vec<String> = ctx.rooms().map(str::to_owned).collect();
            for room in rooms {
                let left = json!({"event": "left", "room": room, "name": name});
                if let Ok(frame) = SharedFrame::json(&left) {
                    ctx.broadcast_others(&room, frame);
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

fn broadcast(ctx: &mut eventum_core::app::Context<'_>, room: &str, event: &serde_json::Value) {
    match SharedFrame::json(event) {
        Ok(frame) => ctx.broadcast(room, frame),
        Err(e) => log::error!("cannot encode {event}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventum_core::testing::{Message, TestServer};

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
                Message::Text(r#"{"event":"joined","name":"ada","room":"r"}"#.into()),
                Message::Text(r#"{"event":"joined","name":"bob","room":"r"}"#.into()),
                Message::Text(r#"{"event":"message","name":"ada","room":"r","text":"hi"}"#.into()),
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
            json!({"event": "left", "room": "r", "name": "bob"})
        );
        ada.send_json(&json!({"event": "leave", "room": "r"}));
        assert_eq!(
            ada.recv_json().unwrap(),
            json!({"event": "left", "room": "r", "name": "ada"})
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
}
