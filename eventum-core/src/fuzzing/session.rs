//! The `session` target: one connection of a sample app on the real endpoint.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::close::CloseCode;
use crate::config::Config;
use crate::frame::{self, DecodeRules, OpCode};
use crate::outbound::SharedFrame;

/// One connection of a sample chat app (routes, typed events, replies, acks, rooms,
/// broadcasts, sends by id, handles, a panicking handler) served by the real endpoint
/// beside an observer connection in the same rooms, fed arbitrary bytes in chunks.
///
/// Input: one control byte, then the client's bytes after its upgrade request. Control bits
/// 0-5 seed the chunk sizes (0: one chunk); bit 6 drops the session mid-way instead of
/// ending the input with EOF (a cancelled driver); bit 7 lets 3 s pass after every chunk.
///
/// Checked: no panic escapes a handler; both connections' output is valid server frames
/// (final, unmasked, text in UTF-8, one close with a code a server may send, nothing but
/// pongs after it); the disconnect hook runs exactly once; afterwards the endpoint holds no
/// trace of the connection (slot, handle, rooms) and its handle is closed.
pub fn session(data: &[u8]) {
    quiet_deliberate_panics();
    use crate::driver::Endpoint;
    use std::sync::Mutex;

    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let app = session_app(Arc::clone(&disconnects));
    let endpoint = Endpoint::new(app);
    let mut now = epoch();
    let admit = |now| endpoint.admit(now, None).expect("a free slot");
    let (mut observer, mut session) = (admit(now), admit(now));
    let (mut observer_wire, mut wire) = (Vec::new(), Vec::new());
    observer.handle_input(now, REQUEST);
    session.handle_input(now, REQUEST);
    let id = session.id();
    let handle = endpoint.connection(id).expect("registered");
    let step = |session: &mut crate::driver::Session, wire: &mut Vec<u8>, now| {
        if session.has_mail() {
            session.handle_mail(now);
        }
        let transmit = session.poll_transmit();
        transmit.chunks().for_each(|chunk| wire.extend_from_slice(chunk));
        let n = transmit.len();
        session.transmitted(n);
    };
    // The 101s go out before any client byte, so a session dropped at once still has one.
    step(&mut session, &mut wire, now);
    step(&mut observer, &mut observer_wire, now);
    let cancel_at = (control & 0x40 != 0).then_some(input.len() / 2);
    let mut fed = 0;
    let mut dropped = false;
    let mut buffer = Vec::new();
    for (i, chunk) in chunks(input, control & 0x3F).enumerate() {
        if cancel_at.is_some_and(|at| fed >= at) {
            drop(std::mem::replace(&mut session, admit(now)));
            dropped = true;
            break;
        }
        // Both ways in, interleaved: copied, and lent as the event loops lend their buffer.
        if i % 2 == 0 {
            session.handle_input(now, chunk);
        } else {
            buffer.extend_from_slice(chunk);
            session.handle_input_buffer(now, &mut buffer);
            assert!(buffer.is_empty(), "the read buffer comes back empty");
        }
        fed += chunk.len();
        if control & 0x80 != 0 {
            now += Duration::from_secs(3);
            session.handle_timeout(now);
            observer.handle_timeout(now);
        }
        step(&mut session, &mut wire, now);
        step(&mut observer, &mut observer_wire, now);
    }
    if !dropped {
        session.handle_eof(now);
        step(&mut session, &mut wire, now);
        assert!(session.should_close_transport(), "not closed after EOF");
        drop(std::mem::replace(&mut session, admit(now)));
    }
    step(&mut observer, &mut observer_wire, now);
    let hooks = disconnects
        .lock()
        .map_or(0, |ids| ids.iter().filter(|&&d| d == id).count());
    assert_eq!(hooks, 1, "the disconnect hook runs exactly once");
    assert!(endpoint.connection(id).is_none(), "the hub still knows the connection");
    assert!(
        !endpoint.shared().hub.has_trace_of(id),
        "a room still lists the connection"
    );
    assert!(
        handle.is_closed(),
        "the handle of an ended connection still accepts mail"
    );
    for room in ["lobby", "a", "b"] {
        assert!(!endpoint.room_members(room).contains(&id), "still in room {room}");
    }
    assert_eq!(
        endpoint.connections(),
        2,
        "the observer and the replacement hold the slots"
    );
    for output in [&wire, &observer_wire] {
        check_server_frames(output);
    }
}

/// The message of the sample app's deliberate panic.
const DELIBERATE: &str = "fuzz: a deliberate handler panic";

/// The framework catches handler panics, so the deliberate one must not count as a finding
/// (libFuzzer's panic hook aborts on any panic, caught or not): it is kept quiet, and every
/// other panic still goes to the previous hook.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&DELIBERATE) {
                previous(info);
            }
        }));
    });
}

/// The app of [`session`]: every connection joins `lobby` on connect.
fn session_app(disconnects: Arc<std::sync::Mutex<Vec<crate::app::ConnectionId>>>) -> crate::app::App {
    use crate::app::{App, ConnectionId, Route};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Room {
        room: String,
    }
    #[derive(Deserialize)]
    struct Say {
        room: String,
        text: String,
    }
    let config = Config::builder()
        .max_message_size(4096)
        .max_frame_size(4096)
        .water_marks(8 << 10, 2 << 10)
        .max_backlog(16 << 10)
        .build()
        .expect("config");
    App::builder()
        .config(config)
        .route(Route::new("/chat"))
        .on_connect(|ctx| ctx.join("lobby"))
        .on_typed("join", |ctx, join: Room| ctx.join(&join.room))
        .on_typed("leave", |ctx, leave: Room| ctx.leave(&leave.room))
        .on_typed("say", |ctx, say: Say| {
            ctx.broadcast(&say.room, SharedFrame::text(&say.text))
        })
        .on("all", |ctx, _| ctx.broadcast_all(SharedFrame::text("all")))
        .on("dm", |ctx, event| {
            let to = event.get("to").and_then(serde_json::Value::as_u64).unwrap_or(0);
            ctx.send_to(ConnectionId(to), SharedFrame::text("dm"));
        })
        .on("echo", |ctx, event| {
            let _ = ctx.reply(event.value());
        })
        .on("ask", |ctx, _| {
            let _ = ctx.request_ack("q", &1, Duration::from_secs(5), |ctx, answer| {
                let _ = ctx.send_text(if answer.is_ok() { "acked" } else { "no ack" });
            });
        })
        .on("later", |ctx, _| {
            let _ = ctx.handle().send_text("later");
        })
        .on("close", |ctx, _| {
            let _ = ctx.close(CloseCode(3000), "bye");
        })
        .on("boom", |_, _| std::panic::panic_any(DELIBERATE))
        .on_binary(|ctx, data| {
            let _ = ctx.send_binary(data);
        })
        .on_disconnect(move |ctx, _| {
            if let Ok(mut ids) = disconnects.lock() {
                ids.push(ctx.id());
            }
            ctx.broadcast_others("lobby", SharedFrame::text("left"));
        })
        .build()
}

/// Server output after a 101: whole, final, unmasked frames; text is UTF-8; at most one
/// close, with a code a server may send, followed only by pongs.
fn check_server_frames(output: &[u8]) {
    let (status, _, mut rest) = parse_response(output);
    assert_eq!(status, 101, "the upgrade is accepted");
    let rules = DecodeRules {
        require_mask: false,
        allow_rsv1: false,
    };
    let mut closed = false;
    while !rest.is_empty() {
        let decoded = frame::decode_header(rest, rules).unwrap_or_else(|e| panic!("bad server frame: {e}"));
        let Some((h, n)) = decoded.filter(|(h, n)| h.payload_len <= (rest.len() - n) as u64) else {
            panic!("a truncated frame at the end of the output");
        };
        assert!(h.fin && h.mask.is_none(), "server frames are final and unmasked: {h:?}");
        let (payload, tail) = rest[n..].split_at(h.payload_len as usize);
        rest = tail;
        assert!(!closed || h.opcode == OpCode::Pong, "{:?} after the close", h.opcode);
        match h.opcode {
            OpCode::Text => assert!(std::str::from_utf8(payload).is_ok(), "text is not UTF-8"),
            OpCode::Close => {
                closed = true;
                if let [hi, lo, reason @ ..] = payload {
                    let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                    assert!(code.is_sendable_by_server(), "the server sent close code {code}");
                    assert!(std::str::from_utf8(reason).is_ok(), "close reason is not UTF-8");
                } else {
                    assert!(payload.is_empty(), "a one-byte close payload");
                }
            }
            OpCode::Continuation => panic!("the server never fragments"),
            OpCode::Binary | OpCode::Ping | OpCode::Pong => {}
        }
    }
}
