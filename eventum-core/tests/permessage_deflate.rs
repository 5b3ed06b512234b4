//! permessage-deflate (RFC 7692) through a whole `Connection`: negotiation in the 101,
//! compressed messages in both directions, the RFC's byte vectors, limits on the inflated
//! size, the protocol errors, and one compressed copy of a broadcast shared by every member.
//!
//! The client side is written here with flate2 directly, apart from the core's codec.

use std::sync::Arc;
use std::time::Instant;

use eventum_core::frame::{decode_header, encode_client_frame, DecodeRules, OpCode};
use eventum_core::handshake::{Accept, DeflateConfig};
use eventum_core::{CloseCode, Config, Connection, Event, SharedFrame};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const CHROMIUM: &str = "permessage-deflate; client_max_window_bits";
/// RFC 7692 §7.2.3.1: "Hello" compressed in one frame.
const HELLO_DEFLATED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// RFC 7692 §7.2.3.2: "Hello" again, with context takeover.
const HELLO_AGAIN: [u8; 5] = [0xf2, 0x00, 0x11, 0x00, 0x00];
/// RFC 7692 §7.2.3.3: "Hello" in a stored (uncompressed) DEFLATE block.
const HELLO_STORED: [u8; 10] = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f];

/// A starting instant: these tests drive connections by hand, and time does not matter.
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

fn request(extensions: Option<&str>) -> Vec<u8> {
    let mut head = String::from(
        "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    if let Some(value) = extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A connection opened with `extensions` offered; returns it with the 101 response.
fn open(config: Config, extensions: Option<&str>, accept: Accept) -> (Connection, String) {
    let now = start();
    let mut conn = Connection::new(Arc::new(config), now);
    conn.handle_input(now, &request(extensions));
    let Some((Event::UpgradeRequest(_), mut commands)) = conn.poll_event() else {
        panic!("no upgrade request");
    };
    commands.accept(now, accept).expect("accepts");
    let response = String::from_utf8(take_output(&mut conn)).expect("ascii head");
    (conn, response)
}

fn open_chromium() -> Connection {
    open(Config::default(), Some(CHROMIUM), Accept::new()).0
}

fn take_output(conn: &mut Connection) -> Vec<u8> {
    let bytes: Vec<u8> = conn.poll_transmit().chunks().flatten().copied().collect();
    conn.transmitted(bytes.len());
    bytes
}

fn header_value<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A masked client frame, with RSV1 when `compressed`.
fn client_frame(fin: bool, compressed: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(&mut out, fin, opcode, payload, KEY);
    if compressed {
        out[0] |= 0x40;
    }
    out
}

/// Raw DEFLATE of `message`, sync-flushed, without the `00 00 ff ff` tail (§7.2.1).
fn deflate(compress: &mut Compress, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut input = message;
    loop {
        let before = compress.total_in();
        compress
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("compresses");
        input = &input[(compress.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn client_deflate(message: &[u8]) -> Vec<u8> {
    deflate(&mut Compress::new(Compression::default(), false), message)
}

/// Inflates a server message's payload (appending the tail, §7.2.2).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut decompress = Decompress::new(false);
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let before = decompress.total_in();
        let status = decompress
            .decompress_vec(
                &input[decompress.total_in() as usize..],
                &mut out,
                FlushDecompress::Sync,
            )
            .expect("server output inflates");
        if decompress.total_in() as usize == input.len() || status == Status::StreamEnd {
            return out;
        }
        assert!(decompress.total_in() > before || out.len() == out.capacity());
        out.reserve(out.capacity());
    }
}

/// The server frames in `bytes`: (rsv1, opcode, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(bool, OpCode, Vec<u8>)> {
    let rules = DecodeRules {
        require_mask: false,
        allow_rsv1: true,
    };
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (header, len) = decode_header(bytes, rules).expect("valid").expect("complete");
        let end = len + header.payload_len as usize;
        frames.push((header.rsv1, header.opcode, bytes[len..end].to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

/// Feeds `bytes` and collects the text events (or the close code), echoing nothing.
fn texts(conn: &mut Connection, bytes: &[u8]) -> (Vec<String>, Option<CloseCode>) {
    let now = start();
    conn.handle_input(now, bytes);
    let mut out = Vec::new();
    let mut code = None;
    while let Some((event, _)) = conn.poll_event() {
        match event {
            Event::Text(text) => out.push(text.to_owned()),
            Event::Closed(closed) => code = Some(closed.code),
            _ => {}
        }
    }
    (out, code)
}

fn close_code_sent(conn: &mut Connection) -> Option<u16> {
    server_frames(&take_output(conn))
        .into_iter()
        .find(|(_, opcode, _)| *opcode == OpCode::Close)
        .map(|(_, _, payload)| u16::from_be_bytes([payload[0], payload[1]]))
}

#[test]
fn browsers_offer_is_accepted_by_default() {
    let (conn, response) = open(Config::default(), Some(CHROMIUM), Accept::new());
    assert_eq!(
        header_value(&response, "Sec-WebSocket-Extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12")
    );
    let params = conn.compression().expect("negotiated");
    assert!(params.server_no_context_takeover() && params.client_no_context_takeover());
    assert_eq!(params.server_max_window_bits(), 12);
}

#[test]
fn switched_off_by_config_or_per_connection_and_declined_offers_are_not_fatal() {
    let off = Config::builder()
        .compression(DeflateConfig::disabled())
        .build()
        .unwrap();
    let cases = [
        (off, Some(CHROMIUM), Accept::new()),
        (
            Config::default(),
            Some(CHROMIUM),
            Accept::new().compression(DeflateConfig::disabled()),
        ),
        (Config::default(), Some("permessage-deflate; bogus=1"), Accept::new()),
        (Config::default(), Some("x-webkit-deflate-frame"), Accept::new()),
        (Config::default(), None, Accept::new()),
    ];
    for (config, offer, accept) in cases {
        let (mut conn, response) = open(config, offer, accept);
        assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
        assert_eq!(header_value(&response, "Sec-WebSocket-Extensions"), None, "{offer:?}");
        assert!(conn.compression().is_none());
        // RSV1 is then a protocol error.
        let (_, code) = texts(&mut conn, &client_frame(true, true, OpCode::Text, &HELLO_DEFLATED));
        assert_eq!(code, Some(CloseCode::PROTOCOL_ERROR), "{offer:?}");
    }
}

#[test]
fn an_app_can_restrict_the_extension_for_one_connection() {
    let restricted = DeflateConfig::default()
        .server_max_window_bits(9)
        .server_no_context_takeover(false);
    let (conn, response) = open(Config::default(), Some(CHROMIUM), Accept::new().compression(restricted));
    assert_eq!(
        header_value(&response, "Sec-WebSocket-Extensions"),
        Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=9")
    );
    assert!(!conn.compression().unwrap().server_no_context_takeover());
}

#[test]
fn rfc7692_vectors_are_received() {
    let mut conn = open_chromium();
    let mut input = client_frame(true, true, OpCode::Text, &HELLO_DEFLATED);
    input.extend(client_frame(true, true, OpCode::Text, &HELLO_STORED));
    // §7.2.3.1 fragmented: RSV1 on the first frame only.
    input.extend(client_frame(false, true, OpCode::Text, &HELLO_DEFLATED[..3]));
    input.extend(client_frame(true, false, OpCode::Continuation, &HELLO_DEFLATED[3..]));
    // An uncompressed message between compressed ones.
    input.extend(client_frame(true, false, OpCode::Text, b"plain"));
    let (messages, code) = texts(&mut conn, &input);
    assert_eq!(messages, ["Hello", "Hello", "Hello", "plain"]);
    assert_eq!(code, None);

    // §7.2.3.2, context takeover, where the server lets the client keep it.
    let keep = DeflateConfig::default().client_no_context_takeover(false);
    let (mut conn, _) = open(Config::default(), Some(CHROMIUM), Accept::new().compression(keep));
    let mut input = client_frame(true, true, OpCode::Text, &HELLO_DEFLATED);
    input.extend(client_frame(true, true, OpCode::Text, &HELLO_AGAIN));
    assert_eq!(texts(&mut conn, &input).0, ["Hello", "Hello"]);
}

#[test]
fn fragmented_compressed_message_split_at_every_byte() {
    let message: String = (0..300).map(|i| format!("{{\"event\":\"say\",\"n\":{i}}}")).collect();
    let payload = client_deflate(message.as_bytes());
    let third = payload.len() / 3;
    let mut wire = client_frame(false, true, OpCode::Text, &payload[..third]);
    wire.extend(client_frame(true, false, OpCode::Ping, b"p"));
    wire.extend(client_frame(
        false,
        false,
        OpCode::Continuation,
        &payload[third..2 * third],
    ));
    wire.extend(client_frame(true, false, OpCode::Continuation, &payload[2 * third..]));
    for split in 0..=wire.len() {
        let mut conn = open_chromium();
        let (mut got, code) = texts(&mut conn, &wire[..split]);
        let (rest, code2) = texts(&mut conn, &wire[split..]);
        got.extend(rest);
        assert_eq!((code, code2), (None, None), "split {split}");
        assert_eq!(got, std::slice::from_ref(&message), "split {split}");
    }
}

#[test]
fn server_compresses_what_it_sends_above_the_threshold() {
    let mut conn = open_chromium();
    let big = "{\"event\":\"message\",\"data\":\"".to_owned() + &"hello ".repeat(100) + "\"}";
    let mut commands = conn.commands();
    commands.send_text(&big).unwrap();
    commands.send_text("short").unwrap();
    commands.send_binary(&[7u8; 1000]).unwrap();
    let frames = server_frames(&take_output(&mut conn));
    assert_eq!(frames.len(), 3);
    let (rsv1, opcode, payload) = &frames[0];
    assert!(*rsv1 && *opcode == OpCode::Text);
    assert!(payload.len() < big.len() / 4, "{} bytes", payload.len());
    assert_eq!(inflate(payload), big.as_bytes());
    assert_eq!(
        frames[1],
        (false, OpCode::Text, b"short".to_vec()),
        "under the threshold"
    );
    assert!(frames[2].0);
    assert_eq!(inflate(&frames[2].2), [7u8; 1000]);
}

#[test]
fn incompressible_messages_go_uncompressed_without_context_takeover() {
    let mut conn = open_chromium();
    let mut state = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    conn.commands().send_binary(&noise).unwrap();
    assert_eq!(server_frames(&take_output(&mut conn)), [(false, OpCode::Binary, noise)]);
}

#[test]
fn context_takeover_when_configured_carries_across_messages() {
    let keep = DeflateConfig::default().server_no_context_takeover(false);
    let (mut conn, response) = open(Config::default(), Some(CHROMIUM), Accept::new().compression(keep));
    assert!(!header_value(&response, "Sec-WebSocket-Extensions")
        .unwrap()
        .contains("server_no_context"));
    let message = "a message long enough to be compressed, repeated ".repeat(4);
    conn.commands().send_text(&message).unwrap();
    conn.commands().send_text(&message).unwrap();
    let frames = server_frames(&take_output(&mut conn));
    assert!(
        frames[1].2.len() < frames[0].2.len() / 4,
        "the second refers to the first"
    );
    // One client inflater with context, as the peer keeps it.
    let mut decompress = Decompress::new(false);
    for (_, _, payload) in frames {
        let input = [&payload[..], &[0, 0, 0xff, 0xff]].concat();
        let mut out = Vec::with_capacity(4096);
        decompress
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, message.as_bytes());
    }
}

#[test]
fn a_decompression_bomb_is_closed_with_1009_without_inflating_it() {
    let config = Config::builder().max_message_size(1 << 20).build().unwrap();
    let (mut conn, _) = open(config, Some(CHROMIUM), Accept::new());
    // 1 GiB of zeros in about 1 MiB of DEFLATE is too slow to make in a test; 64 MiB in
    // ~64 KiB is the same attack: the frame is small, the message is not.
    let bomb = client_deflate(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 128 << 10);
    let (messages, code) = texts(&mut conn, &client_frame(true, true, OpCode::Binary, &bomb));
    assert!(messages.is_empty());
    assert_eq!(code, Some(CloseCode::TOO_BIG));
    assert_eq!(close_code_sent(&mut conn), Some(1009));
}

#[test]
fn a_message_inflating_to_exactly_the_limit_passes() {
    let config = Config::builder().max_message_size(5000).build().unwrap();
    let (mut conn, _) = open(config, Some(CHROMIUM), Accept::new());
    let payload = client_deflate(&[b'x'; 5000]);
    let (messages, code) = texts(&mut conn, &client_frame(true, true, OpCode::Text, &payload));
    assert_eq!((messages[0].len(), code), (5000, None));
    let payload = client_deflate(&[b'x'; 5001]);
    let (_, code) = texts(&mut conn, &client_frame(true, true, OpCode::Text, &payload));
    assert_eq!(code, Some(CloseCode::TOO_BIG));
}

#[test]
fn misplaced_rsv1_and_bad_data_close_with_the_rfc_codes() {
    let utf8_bad = client_deflate(b"ok \xff\xfe not utf-8");
    let cases: [(&str, Vec<u8>, u16); 5] = [
        ("RSV1 on a ping", client_frame(true, true, OpCode::Ping, b""), 1002),
        (
            "RSV1 on a continuation",
            {
                let mut wire = client_frame(false, true, OpCode::Text, &HELLO_DEFLATED[..3]);
                wire.extend(client_frame(true, true, OpCode::Continuation, &HELLO_DEFLATED[3..]));
                wire
            },
            1002,
        ),
        (
            "reserved block type",
            client_frame(true, true, OpCode::Text, &[0x06, 0x00]),
            1007,
        ),
        (
            "stored block with a bad NLEN",
            client_frame(
                true,
                true,
                OpCode::Binary,
                &[0x00, 0x05, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5],
            ),
            1007,
        ),
        (
            "invalid UTF-8 once inflated",
            client_frame(true, true, OpCode::Text, &utf8_bad),
            1007,
        ),
    ];
    for (what, wire, expected) in cases {
        let mut conn = open_chromium();
        let (messages, code) = texts(&mut conn, &wire);
        assert!(messages.is_empty(), "{what}");
        assert_eq!(code.map(|c| c.0), Some(expected), "{what}");
        assert_eq!(close_code_sent(&mut conn), Some(expected), "{what}");
    }
}

#[test]
fn a_broadcast_is_compressed_once_and_shared_by_every_member() {
    // Large enough once compressed to be queued as a shared chunk rather than copied.
    let lines: String = (0..400u32)
        .map(|i| format!("member {} said {};", i * 7919 % 1009, i * i % 997))
        .collect();
    let text = format!("{{\"event\":\"chat\",\"data\":\"{lines}\"}}");
    let frame = SharedFrame::text(&text);
    let mut members: Vec<Connection> = (0..3).map(|_| open_chromium()).collect();
    let (mut plain, _) = open(Config::default(), None, Accept::new());
    let now = start();
    for conn in members.iter_mut().chain([&mut plain]) {
        conn.commands().deliver(now, &frame).unwrap();
    }
    let first = members[0].poll_transmit().first().as_ptr();
    for conn in &members {
        assert_eq!(
            conn.poll_transmit().first().as_ptr(),
            first,
            "the same bytes, not a copy"
        );
    }
    let frames = server_frames(&take_output(&mut members[0]));
    assert!(frames[0].0 && frames[0].2.len() < text.len() / 2);
    assert_eq!(inflate(&frames[0].2), text.as_bytes());
    assert_eq!(
        take_output(&mut plain),
        frame.as_bytes(),
        "no extension: the frame as it is"
    );
    // A member that asked for a smaller window than the shared copy's gets its own copy.
    let (mut narrow, _) = open(
        Config::default(),
        Some("permessage-deflate; server_max_window_bits=9"),
        Accept::new(),
    );
    narrow.commands().deliver(now, &frame).unwrap();
    assert_ne!(narrow.poll_transmit().first().as_ptr(), first);
    let frames = server_frames(&take_output(&mut narrow));
    assert_eq!(inflate(&frames[0].2), text.as_bytes());
}
