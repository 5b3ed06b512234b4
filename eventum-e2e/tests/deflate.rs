//! permessage-deflate over real sockets, through both adapters: a client that negotiates
//! it, compressed messages both ways (whole and fragmented), a compressed broadcast, and a
//! decompression bomb closed with 1009.

use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_core::Config;
use eventum_core::SharedFrame;
use eventum_e2e::{Adapter, RawClient, RawFrame};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const WAIT: Duration = Duration::from_secs(10);
const OFFER: (&str, &str) = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");

/// Echoes text, and broadcasts to room "all" whatever starts with "all:"; 1 MiB messages.
fn app() -> App {
    let config = Config::builder().max_message_size(1 << 20).build().expect("config");
    App::builder()
        .config(config)
        .route(Route::new("/ws"))
        .on_connect(|ctx| ctx.join("all"))
        .on_text(|ctx, text| match text.strip_prefix("all:") {
            Some(rest) => ctx.broadcast("all", SharedFrame::text(rest)),
            None => ctx.send_text(text).expect("echo queued"),
        })
        .build()
}

/// A masked client frame, RSV1 set when `compressed`.
fn frame(fin: bool, compressed: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = eventum_e2e::masked_frame(opcode, payload);
    if !fin {
        bytes[0] &= 0x7f;
    }
    if compressed {
        bytes[0] |= 0x40;
    }
    bytes
}

fn deflate(message: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(message.len() / 2 + 1024);
    loop {
        let done = compress.total_in() as usize;
        compress
            .compress_vec(&message[done..], &mut out, FlushCompress::Sync)
            .expect("compresses");
        if compress.total_in() as usize == message.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - 4); // the 00 00 ff ff tail (RFC 7692 §7.2.1)
    out
}

/// The server's compressed message inflated (the test's messages are under 1 MiB).
fn inflate(payload: &[u8]) -> String {
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(1 << 20);
    let mut decompress = Decompress::new(false);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the server's message inflates");
    assert_eq!(decompress.total_in(), input.len() as u64, "inflated whole");
    String::from_utf8(out).expect("text")
}

fn read(client: &mut RawClient) -> RawFrame {
    client.read_frame(WAIT).expect("a frame in time").expect("still open")
}

fn chat_line(i: usize) -> String {
    format!(
        r#"{{"event":"message","data":{{"room":"lobby","name":"user{}","text":"line {i}"}}}}"#,
        i % 9
    )
}

fn compressed_messages_both_ways(adapter: Adapter) {
    let server = adapter.start(app());
    let (mut client, headers) = RawClient::connect_with(server.addr(), "/ws", &[OFFER]);
    let agreed = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value.as_str());
    assert_eq!(
        agreed,
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
        "{adapter:?}"
    );

    let message: String = (0..60).map(chat_line).collect();
    let compressed = deflate(message.as_bytes());
    client.send_raw(&frame(true, true, 0x1, &compressed));
    let echo = read(&mut client);
    assert!(echo.rsv1 && echo.fin && echo.opcode == 0x1, "{adapter:?}: {echo:?}");
    assert!(
        echo.payload.len() < message.len() / 3,
        "{adapter:?}: {} bytes",
        echo.payload.len()
    );
    assert!(inflate(&echo.payload) == message, "{adapter:?}: the echo differs");

    // Fragmented, with a ping between the fragments, sent in small writes.
    let (a, b) = compressed.split_at(compressed.len() / 2);
    let wire = [
        frame(false, true, 0x1, a),
        frame(true, false, 0x9, b"between"),
        frame(true, false, 0x0, b),
    ]
    .concat();
    for piece in wire.chunks(7) {
        client.send_raw(piece);
    }
    let pong = read(&mut client);
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (0xA, &b"between"[..]),
        "{adapter:?}"
    );
    assert!(
        inflate(&read(&mut client).payload) == message,
        "{adapter:?}: the fragmented echo differs"
    );

    // A short message goes back uncompressed (under the 128-byte threshold).
    client.send_raw(&frame(true, true, 0x1, &deflate(b"short")));
    let short = read(&mut client);
    assert_eq!(
        (short.rsv1, short.payload.as_slice()),
        (false, &b"short"[..]),
        "{adapter:?}"
    );

    // A broadcast reaches a compressing member compressed and a plain member plain.
    let mut plain = RawClient::connect(server.addr(), "/ws");
    assert!(server.wait_connections(2), "{adapter:?}");
    let news: String = (0..20).map(chat_line).collect();
    client.send_raw(&frame(true, true, 0x1, &deflate(format!("all:{news}").as_bytes())));
    let to_client = read(&mut client);
    assert!(to_client.rsv1, "{adapter:?}");
    assert!(
        inflate(&to_client.payload) == news,
        "{adapter:?}: the compressed broadcast differs"
    );
    let to_plain = read(&mut plain);
    assert!(
        !to_plain.rsv1 && to_plain.payload == news.as_bytes(),
        "{adapter:?}: the plain broadcast differs"
    );
}

fn bomb_is_closed_with_1009(adapter: Adapter) {
    let server = adapter.start(app());
    let (mut client, _) = RawClient::connect_with(server.addr(), "/ws", &[OFFER]);
    // 16 MiB of zeros in about 16 KiB: a small frame, far over the 1 MiB message limit.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 << 10);
    client.send_raw(&frame(true, true, 0x2, &bomb));
    let close = read(&mut client);
    assert_eq!(close.close_code(), Some(1009), "{adapter:?}: {close:?}");
}

#[test]
fn compressed_messages_both_ways_smol() {
    compressed_messages_both_ways(Adapter::Smol);
}

#[test]
fn compressed_messages_both_ways_std() {
    compressed_messages_both_ways(Adapter::Std);
}

#[test]
fn bomb_is_closed_with_1009_smol() {
    bomb_is_closed_with_1009(Adapter::Smol);
}

#[test]
fn bomb_is_closed_with_1009_std() {
    bomb_is_closed_with_1009(Adapter::Std);
}
