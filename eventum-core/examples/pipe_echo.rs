//! Drives an eventum-core `Connection` over an in-memory byte pipe: a scripted client
//! upgrades, sends a text message, a fragmented message with a ping in the middle, and a
//! close; the server echoes every message. Prints what each side saw.
//!
//! Run with `cargo run -p eventum-core --example pipe_echo`.
#![allow(clippy::disallowed_methods)] // an example driver owns the clock

use std::sync::Arc;
use std::time::Instant;

use eventum_core::frame::{encode_client_frame, OpCode};
use eventum_core::handshake::Accept;
use eventum_core::{Config, Connection, Event};

fn main() {
    let mut client = Vec::new();
    client.extend_from_slice(
        b"GET /echo?user=demo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let key = [0x37, 0xfa, 0x21, 0x3d];
    encode_client_frame(&mut client, true, OpCode::Text, "héllo, eventum".as_bytes(), key);
    encode_client_frame(&mut client, false, OpCode::Binary, &[1, 2, 3], key);
    encode_client_frame(&mut client, true, OpCode::Ping, b"are you there?", key);
    encode_client_frame(&mut client, true, OpCode::Continuation, &[4, 5], key);
    encode_client_frame(&mut client, true, OpCode::Close, b"\x03\xe8done", key);

    let mut conn = Connection::new(Arc::new(Config::default()), Instant::now());
    let mut wire = Vec::new();
    // Feed the pipe 5 bytes at a time: the core does not care how input is chunked.
    for chunk in client.chunks(5) {
        let now = Instant::now();
        conn.handle_input(now, chunk);
        while let Some((event, mut commands)) = conn.poll_event() {
            println!("server event: {event:?}");
            match event {
                Event::UpgradeRequest(request) => {
                    let subprotocol = request.subprotocols().first().cloned();
                    let mut accept = Accept::new();
                    if let Some(protocol) = subprotocol {
                        accept = accept.subprotocol(protocol);
                    }
                    commands.accept(now, accept).expect("valid accept");
                }
                Event::Text(text) => commands.send_text(text).expect("echo text"),
                Event::Binary(data) => commands.send_binary(data).expect("echo binary"),
                _ => {}
            }
        }
        let transmit = conn.poll_transmit();
        transmit.chunks().for_each(|chunk| wire.extend_from_slice(chunk));
        let n = transmit.len();
        conn.transmitted(n);
        if n > 0 {
            println!("server wrote {n} bytes");
        }
    }
    let head_end = wire.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
    println!(
        "\n--- response head ---\n{}",
        String::from_utf8_lossy(&wire[..head_end]).trim_end()
    );
    println!("--- frames after it ---\n{:02x?}", &wire[head_end..]);
    println!("transport may be closed now: {}", conn.should_close_transport());
}
