//! Byte-level tests of the whole connection state machine. Every input-driven test feeds
//! its input whole and split at every byte boundary (random split points above a few KiB)
//! and expects the same events and the same bytes on the wire.
#![allow(clippy::disallowed_methods)] // tests take one real Instant as their epoch

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::close::CloseCode;
use crate::config::{Keepalive, SlowConsumerPolicy};
use crate::error::{ApiMisuse, CloseError, SendError};
use crate::event::{CloseCause, Closed};
use crate::frame::{encode_client_frame, OpCode};
use crate::handshake::{Accept, HttpResponse};
use crate::outbound::SharedFrame;
use crate::ProtocolError;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The RFC 6455 §1.2 sample request.
const REQUEST: &[u8] = b"GET /chat?room=a%20b HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

const RESPONSE_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// An owned copy of an [`Event`], for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Upgrade(String),
    Http(String),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Closed(Closed),
}

fn epoch() -> Instant {
    Instant::now()
}

fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(&mut out, fin, opcode, payload, KEY);
    out
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, OpCode::Close, &payload)
}

fn closed(code: u16, reason: &str, cause: CloseCause) -> Ev {
    Ev::Closed(Closed {
        code: CloseCode(code),
        reason: reason.to_owned(),
        cause,
    })
}

fn protocol_closed(error: ProtocolError) -> Ev {
    let reason = error.to_string();
    closed(error.close_code().0, &reason, CloseCause::Protocol(error))
}

/// A driver for tests: accepts every upgrade, records events and wire bytes.
struct Harness {
    conn: Connection,
    now: Instant,
    events: Vec<Ev>,
    wire: Vec<u8>,
    accept: bool,
    /// Feed through `lend_input` (a driver's read buffer decoded in place) rather than
    /// `handle_input`.
    lend: bool,
}

impl Harness {
    fn new(config: Config) -> Self {
        let now = epoch();
        Harness {
            conn: Connection::new(Arc::new(config), now),
            now,
            events: Vec::new(),
            wire: Vec::new(),
            accept: true,
            lend: false,
        }
    }

    fn open(config: Config) -> Self {
        let mut h = Harness::new(config);
        h.feed(REQUEST);
        assert_eq!(h.events, [Ev::Upgrade("/chat".into())]);
        assert_eq!(h.conn.state(), State::Open);
        h.events.clear();
        h.wire.clear();
        h
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.lend {
            let mut buffer = Vec::with_capacity(bytes.len() + 16);
            buffer.extend_from_slice(bytes);
            let at = buffer.as_ptr();
            self.conn.lend_input(self.now, &mut buffer);
            self.drain();
            self.conn.give_back_input(&mut buffer);
            assert!(buffer.is_empty(), "the buffer comes back empty");
            assert_eq!(buffer.as_ptr(), at, "the same buffer comes back");
        } else {
            self.conn.handle_input(self.now, bytes);
            self.drain();
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.handle_timeout(self.now);
        self.drain();
    }

    fn eof(&mut self) {
        self.conn.handle_eof(self.now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some((event, mut commands)) = self.conn.poll_event() {
            let ev = match event {
                Event::UpgradeRequest(r) => Ev::Upgrade(r.path().to_owned()),
                Event::HttpRequest(r) => Ev::Http(r.path().to_owned()),
                Event::Text(t) => Ev::Text(t.to_owned()),
                Event::Binary(b) => Ev::Binary(b.to_vec()),
                Event::Ping(p) => Ev::Ping(p.to_vec()),
                Event::Pong(p) => Ev::Pong(p.to_vec()),
                Event::Closed(c) => Ev::Closed(c),
            };
            let upgrade = matches!(ev, Ev::Upgrade(_));
            self.events.push(ev);
            if upgrade && self.accept {
                commands.accept(self.now, Accept::new()).unwrap();
            }
        }
        transmit_all(&mut self.conn, &mut self.wire);
    }
}

/// Appends everything the connection has for the wire to `out`.
fn transmit_all(conn: &mut Connection, out: &mut Vec<u8>) {
    let transmit = conn.poll_transmit();
    transmit.chunks().for_each(|chunk| out.extend_from_slice(chunk));
    let n = transmit.len();
    conn.transmitted(n);
}

/// Feeds `input` in the given chunks to a fresh connection (opened first when `open`),
/// through `handle_input`, then through `lend_input`, asserting the same outcome.
fn run_chunks(config: &Config, open: bool, chunks: &[&[u8]], eof: bool) -> (Vec<Ev>, Vec<u8>, State) {
    let copied = run_chunks_as(config, open, chunks, eof, false);
    let lent = run_chunks_as(config, open, chunks, eof, true);
    assert_eq!(lent, copied, "input lent rather than copied");
    copied
}

fn run_chunks_as(config: &Config, open: bool, chunks: &[&[u8]], eof: bool, lend: bool) -> (Vec<Ev>, Vec<u8>, State) {
    let mut h = if open {
        Harness::open(config.clone())
    } else {
        Harness::new(config.clone())
    };
    h.lend = lend;
    for chunk in chunks {
        h.feed(chunk);
    }
    if eof {
        h.eof();
    }
    (h.events, h.wire, h.conn.state())
}

/// Runs `input` whole, then split at every boundary (or at pseudo-random points for
/// large inputs) and byte by byte, asserting identical outcomes; returns the outcome.
fn run_all_splits(config: &Config, open: bool, input: &[u8], eof: bool) -> (Vec<Ev>, Vec<u8>, State) {
    let whole = run_chunks(config, open, &[input], eof);
    let points: Vec<usize> = if input.len() <= 4096 {
        (1..input.len()).collect()
    } else {
        let mut seed = 0x9e37_79b9_u64;
        (0..64)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                1 + (seed >> 33) as usize % (input.len() - 1)
            })
            .collect()
    };
    for &at in &points {
        let split = run_chunks(config, open, &[&input[..at], &input[at..]], eof);
        assert_eq!(split, whole, "split at {at}");
    }
    if input.len() <= 4096 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_chunks(config, open, &bytes, eof), whole, "byte by byte");
    }
    whole
}

fn run(input: &[u8]) -> (Vec<Ev>, Vec<u8>, State) {
    run_all_splits(&Config::default(), true, input, false)
}

// --- handshake ----------------------------------------------------------------------------

#[test]
fn rfc_sample_handshake_gets_the_rfc_accept_key() {
    let (events, wire, state) = run_all_splits(&Config::default(), false, REQUEST, false);
    assert_eq!(events, [Ev::Upgrade("/chat".into())]);
    assert_eq!(wire, RESPONSE_101);
    assert_eq!(state, State::Open);
}

#[test]
fn request_is_readable_after_the_upgrade() {
    let h = Harness::open(Config::default());
    let request = h.conn.request().unwrap();
    assert_eq!(request.query_param("room"), Some("a b"));
    assert_eq!(request.header("origin"), Some("http://example.com"));
    assert_eq!(request.subprotocols(), ["chat", "superchat"]);
}

#[test]
fn first_frame_in_the_same_read_as_the_request_is_not_lost() {
    let mut input = REQUEST.to_vec();
    input.extend(frame(true, OpCode::Text, b"early"));
    input.extend(frame(true, OpCode::Binary, b"bird"));
    let (events, wire, _) = run_all_splits(&Config::default(), false, &input, false);
    assert_eq!(
        events,
        [
            Ev::Upgrade("/chat".into()),
            Ev::Text("early".into()),
            Ev::Binary(b"bird".to_vec())
        ]
    );
    assert_eq!(wire, RESPONSE_101);
}

#[test]
fn frames_wait_while_the_application_decides() {
    let mut h = Harness::new(Config::default());
    h.accept = false;
    let mut input = REQUEST.to_vec();
    input.extend(frame(true, OpCode::Text, b"hi"));
    h.feed(&input);
    assert_eq!(h.conn.state(), State::AwaitingDecision);
    assert!(!h.conn.wants_read());
    assert_eq!(h.events, [Ev::Upgrade("/chat".into())]);
    h.conn
        .commands()
        .accept(
            h.now,
            Accept::new().subprotocol("superchat").header("X-Server", "eventum"),
        )
        .unwrap();
    h.drain();
    assert_eq!(h.events[1..], [Ev::Text("hi".into())]);
    assert_eq!(h.conn.subprotocol(), Some("superchat"));
    let wire = String::from_utf8(h.wire.clone()).unwrap();
    assert!(
        wire.contains("Sec-WebSocket-Protocol: superchat\r\nX-Server: eventum\r\n\r\n"),
        "{wire}"
    );
}

#[test]
fn accept_refuses_a_subprotocol_that_was_not_offered() {
    let mut h = Harness::new(Config::default());
    h.accept = false;
    h.feed(REQUEST);
    let err = h
        .conn
        .commands()
        .accept(h.now, Accept::new().subprotocol("other"))
        .unwrap_err();
    assert_eq!(err, ApiMisuse::SubprotocolNotOffered("other".into()));
    assert_eq!(h.conn.state(), State::AwaitingDecision);
    assert_eq!(h.conn.buffered_amount(), 0);
    assert_eq!(
        h.conn
            .commands()
            .accept(h.now, Accept::new().header("Bad\r\nName", "x"))
            .unwrap_err(),
        ApiMisuse::InvalidHeader("Bad\r\nName".into())
    );
}

#[test]
fn application_can_refuse_the_upgrade_with_any_response() {
    let mut h = Harness::new(Config::default());
    h.accept = false;
    h.feed(REQUEST);
    h.conn
        .commands()
        .respond(h.now, HttpResponse::text(403, "go away").header("X-Why", "policy"))
        .unwrap();
    h.drain();
    assert_eq!(
        h.wire,
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nX-Why: policy\r\n\
Content-Length: 7\r\nConnection: close\r\n\r\ngo away"
    );
    assert_eq!(h.events[1], closed(1006, "", CloseCause::Responded { status: 403 }));
    assert!(h.conn.should_close_transport());
    assert_eq!(
        h.conn.commands().accept(h.now, Accept::new()),
        Err(ApiMisuse::NoPendingRequest)
    );
}

fn refused(input: &[u8], config: &Config) -> (u16, String) {
    let (events, wire, state) = run_all_splits(config, false, input, false);
    assert_eq!(state, State::Closed);
    let Some(Ev::Closed(Closed {
        cause: CloseCause::Handshake(error),
        ..
    })) = events.last()
    else {
        panic!("not refused: {events:?}")
    };
    let text = String::from_utf8_lossy(&wire).into_owned();
    assert!(text.starts_with(&format!("HTTP/1.1 {} ", error.status())), "{text}");
    assert!(text.ends_with(&error.to_string()), "{text}");
    (error.status(), text)
}

#[test]
fn invalid_upgrades_get_400_426_or_431() {
    let config = Config::default();
    let cases: &[(&[u8], u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426),
        (b"GET / HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ];
    for (input, status) in cases {
        assert_eq!(refused(input, &config).0, *status, "{}", String::from_utf8_lossy(input));
    }
    let (_, text) = refused(cases[5].0, &config);
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
}

#[test]
fn plain_http_gets_400_by_default_and_reaches_the_app_with_fallback() {
    let plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (status, text) = refused(plain, &Config::default());
    assert_eq!(status, 400);
    assert!(text.ends_with("This endpoint only accepts WebSocket upgrade requests"));

    let mut h = Harness::new(Config::builder().http_fallback(true).build().unwrap());
    h.feed(plain);
    assert_eq!(h.events, [Ev::Http("/".into())]);
    assert_eq!(
        h.conn.commands().accept(h.now, Accept::new()),
        Err(ApiMisuse::NotAnUpgrade)
    );
    h.conn
        .commands()
        .respond(h.now, HttpResponse::html(200, "<p>hi</p>"))
        .unwrap();
    h.drain();
    assert!(h.wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(h.wire.ends_with(b"\r\n\r\n<p>hi</p>"));
    assert!(h.conn.should_close_transport());
}

#[test]
fn head_and_header_limits_answer_431_whatever_the_chunking() {
    let config = Config::builder()
        .max_head_bytes(REQUEST.len())
        .max_headers(7)
        .build()
        .unwrap();
    let (events, _, _) = run_all_splits(&config, false, REQUEST, false);
    assert_eq!(events, [Ev::Upgrade("/chat".into())]);

    let small = Config::builder().max_head_bytes(REQUEST.len() - 1).build().unwrap();
    assert_eq!(refused(REQUEST, &small).0, 431);
    let few = Config::builder().max_headers(6).build().unwrap();
    assert_eq!(refused(REQUEST, &few).0, 431);

    // A head that never ends is refused once the limit is reached, not buffered forever.
    let mut h = Harness::new(Config::default());
    let junk = [b'a'; 1000];
    for _ in 0..20 {
        h.feed(&junk);
    }
    assert_eq!(h.conn.state(), State::Closed);
    assert!(h.wire.starts_with(b"HTTP/1.1 431 "));
}

#[test]
fn eof_during_the_handshake_ends_quietly() {
    let (events, wire, state) = run_all_splits(&Config::default(), false, &REQUEST[..20], true);
    assert_eq!(events, [closed(1006, "", CloseCause::TransportEnded)]);
    assert!(wire.is_empty());
    assert_eq!(state, State::Closed);
}

// --- frames and messages (RFC 6455 §5.7 vectors) -----------------------------------------

#[test]
fn rfc_masked_hello_is_one_text_message() {
    let input = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(run(&input).0, [Ev::Text("Hello".into())]);
}

#[test]
fn rfc_fragmented_hello_is_reassembled() {
    let mut input = frame(false, OpCode::Text, b"Hel");
    input.extend(frame(true, OpCode::Continuation, b"lo"));
    assert_eq!(run(&input).0, [Ev::Text("Hello".into())]);
}

#[test]
fn ping_is_answered_with_a_pong_carrying_its_payload() {
    let (events, wire, _) = run(&frame(true, OpCode::Ping, b"Hello"));
    assert_eq!(events, [Ev::Ping(b"Hello".to_vec())]);
    // The RFC's unmasked pong "Hello".
    assert_eq!(wire, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn unsolicited_pongs_are_reported_and_otherwise_ignored() {
    let (events, wire, state) = run(&frame(true, OpCode::Pong, b"Hello"));
    assert_eq!(events, [Ev::Pong(b"Hello".to_vec())]);
    assert!(wire.is_empty());
    assert_eq!(state, State::Open);
}

#[test]
fn binary_messages_of_256_bytes_and_64_kib() {
    for len in [0usize, 125, 126, 256, 65535, 65536] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let input = frame(true, OpCode::Binary, &payload);
        if len == 256 {
            assert_eq!(&input[..4], &[0x82, 0xFE, 0x01, 0x00]);
        }
        if len == 65536 {
            assert_eq!(&input[..10], &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]);
        }
        assert_eq!(run(&input).0, [Ev::Binary(payload)], "len {len}");
    }
}

#[test]
fn control_frames_may_interleave_a_fragmented_message() {
    let mut input = frame(false, OpCode::Text, "κό".as_bytes());
    input.extend(frame(true, OpCode::Ping, b"p1"));
    input.extend(frame(false, OpCode::Continuation, "σμ".as_bytes()));
    input.extend(frame(true, OpCode::Pong, b""));
    input.extend(frame(true, OpCode::Continuation, "ε".as_bytes()));
    input.extend(frame(true, OpCode::Binary, b"next"));
    let (events, wire, _) = run(&input);
    assert_eq!(
        events,
        [
            Ev::Ping(b"p1".to_vec()),
            Ev::Pong(vec![]),
            Ev::Text("κόσμε".into()),
            Ev::Binary(b"next".to_vec())
        ]
    );
    assert_eq!(wire, b"\x8a\x02p1");
}

#[test]
fn empty_messages_and_empty_fragments() {
    let mut input = frame(true, OpCode::Text, b"");
    input.extend(frame(false, OpCode::Binary, b""));
    input.extend(frame(false, OpCode::Continuation, b""));
    input.extend(frame(true, OpCode::Continuation, b""));
    assert_eq!(run(&input).0, [Ev::Text(String::new()), Ev::Binary(vec![])]);
}

#[test]
fn large_fragmented_message_with_random_splits() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut input = Vec::new();
    for (i, piece) in payload.chunks(30_000).enumerate() {
        let opcode = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
        input.extend(frame(i == 6, opcode, piece));
    }
    assert_eq!(run(&input).0, [Ev::Binary(payload)]);
}

// --- protocol errors ----------------------------------------------------------------------

fn assert_fails(input: &[u8], error: ProtocolError) {
    let (events, wire, state) = run(input);
    assert_eq!(events.last(), Some(&protocol_closed(error.clone())), "{events:?}");
    assert_eq!(state, State::Closed);
    let code = error.close_code().0.to_be_bytes();
    assert_eq!(
        &wire[..4],
        &[0x88, wire[1], code[0], code[1]],
        "close frame with the RFC code"
    );
}

#[test]
fn unmasked_client_frame_is_a_protocol_error() {
    assert_fails(
        &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        ProtocolError::UnmaskedFrame,
    );
}

#[test]
fn reserved_bits_and_opcodes_are_protocol_errors() {
    let mut rsv = frame(true, OpCode::Text, b"x");
    rsv[0] |= 0x40;
    assert_fails(&rsv, ProtocolError::ReservedBits);
    let mut rsv3 = frame(true, OpCode::Text, b"x");
    rsv3[0] |= 0x10;
    assert_fails(&rsv3, ProtocolError::ReservedBits);
    for op in [3u8, 7, 0xB, 0xF] {
        let mut reserved = frame(true, OpCode::Text, b"x");
        reserved[0] = 0x80 | op;
        assert_fails(&reserved, ProtocolError::ReservedOpcode(op));
    }
}

#[test]
fn control_frame_rules() {
    assert_fails(&frame(false, OpCode::Ping, b"x"), ProtocolError::FragmentedControlFrame);
    assert_fails(
        &frame(true, OpCode::Ping, &[0u8; 126]),
        ProtocolError::ControlFrameTooLong,
    );
    let (events, _, _) = run(&frame(true, OpCode::Ping, &[1u8; 125]));
    assert_eq!(events, [Ev::Ping(vec![1u8; 125])]);
}

#[test]
fn length_with_top_bit_set_is_a_protocol_error() {
    let input = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
    assert_fails(&input, ProtocolError::LengthTopBitSet);
}

#[test]
fn fragmentation_rules() {
    assert_fails(
        &frame(true, OpCode::Continuation, b"x"),
        ProtocolError::UnexpectedContinuation,
    );
    let mut input = frame(false, OpCode::Text, b"a");
    input.extend(frame(true, OpCode::Text, b"b"));
    assert_fails(&input, ProtocolError::ExpectedContinuation);
}

#[test]
fn messages_before_an_error_are_still_delivered() {
    let mut input = frame(true, OpCode::Text, b"kept");
    input.extend([0x81, 0x01, b'x']);
    let (events, _, _) = run(&input);
    assert_eq!(
        events,
        [Ev::Text("kept".into()), protocol_closed(ProtocolError::UnmaskedFrame)]
    );
}

#[test]
fn invalid_utf8_closes_with_1007() {
    assert_fails(
        &frame(
            true,
            OpCode::Text,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ),
        ProtocolError::InvalidUtf8,
    );
    // Truncated at the end of the message.
    let mut input = frame(false, OpCode::Text, b"ok");
    input.extend(frame(true, OpCode::Continuation, b"\xce"));
    assert_fails(&input, ProtocolError::InvalidUtf8);
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    // First fragment already invalid; the message never finishes.
    let (events, _, state) = run(&frame(false, OpCode::Text, b"abc\xc0\xaf"));
    assert_eq!(events, [protocol_closed(ProtocolError::InvalidUtf8)]);
    assert_eq!(state, State::Closed);
    // One frame whose first half is invalid, the rest never arrives.
    let full = frame(true, OpCode::Text, b"\xf4\x90\x80\x80 and more text that never comes");
    let (events, _, _) = run(&full[..12]);
    assert_eq!(events, [protocol_closed(ProtocolError::InvalidUtf8)]);
}

#[test]
fn frame_and_message_limits_close_1009_before_buffering() {
    let config = Config::builder()
        .max_frame_size(100)
        .max_message_size(150)
        .build()
        .unwrap();
    // Only the header of an oversized frame arrives: it is refused right away.
    let big = frame(true, OpCode::Binary, &[0u8; 101]);
    let (events, _, _) = run_all_splits(&config, true, &big[..8], false);
    assert_eq!(events, [protocol_closed(ProtocolError::FrameTooLarge { limit: 100 })]);

    let mut input = frame(false, OpCode::Binary, &[0u8; 100]);
    input.extend(frame(true, OpCode::Continuation, &[0u8; 51]));
    let (events, _, _) = run_all_splits(&config, true, &input, false);
    assert_eq!(events, [protocol_closed(ProtocolError::MessageTooLarge { limit: 150 })]);

    let mut input = frame(false, OpCode::Binary, &[0u8; 100]);
    input.extend(frame(true, OpCode::Continuation, &[0u8; 50]));
    let (events, _, _) = run_all_splits(&config, true, &input, false);
    assert_eq!(events, [Ev::Binary(vec![0u8; 150])]);

    // A small frame that arrives whole (the decoder's one-step path) meets the same limits.
    let (events, _, _) = run_chunks(&config, true, &[&big], false);
    assert_eq!(events, [protocol_closed(ProtocolError::FrameTooLarge { limit: 100 })]);
    let tight = Config::builder().max_message_size(20).build().unwrap();
    let (events, _, _) = run_chunks(&tight, true, &[&frame(true, OpCode::Text, &[b'a'; 21])], false);
    assert_eq!(events, [protocol_closed(ProtocolError::MessageTooLarge { limit: 20 })]);
    let (events, _, _) = run_chunks(&tight, true, &[&frame(true, OpCode::Text, &[b'a'; 20])], false);
    assert_eq!(events, [Ev::Text("a".repeat(20))]);
}

// --- close handshake ----------------------------------------------------------------------

#[test]
fn client_close_is_echoed_and_the_server_closes_the_transport() {
    let mut input = close_frame(1000, b"bye");
    input.extend(frame(true, OpCode::Text, b"after close"));
    let (events, wire, state) = run(&input);
    assert_eq!(events, [closed(1000, "bye", CloseCause::Remote)]);
    assert_eq!(wire, [0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(state, State::Closed);

    let mut h = Harness::open(Config::default());
    h.feed(&close_frame(3000, b""));
    assert!(h.conn.should_close_transport());
    assert!(!h.conn.wants_read());
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let (events, wire, _) = run(&frame(true, OpCode::Close, b""));
    assert_eq!(events, [closed(1005, "", CloseCause::Remote)]);
    assert_eq!(wire, [0x88, 0x00]);
}

#[test]
fn invalid_close_frames() {
    assert_fails(
        &frame(true, OpCode::Close, b"\x03"),
        ProtocolError::ClosePayloadTooShort,
    );
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
        assert_fails(&close_frame(code, b""), ProtocolError::InvalidCloseCode(code));
    }
    assert_fails(&close_frame(1000, b"\xff"), ProtocolError::InvalidCloseReason);
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let (events, _, _) = run(&close_frame(code, b""));
        assert_eq!(events, [closed(code, "", CloseCause::Remote)]);
    }
}

#[test]
fn server_close_discards_data_until_the_peer_answers() {
    for code in [1000u16, 3000, 4999] {
        let mut h = Harness::open(Config::default());
        h.conn.commands().close(h.now, CloseCode(code), "done").unwrap();
        h.drain();
        let mut expected = vec![0x88, 6];
        expected.extend(code.to_be_bytes());
        expected.extend(b"done");
        assert_eq!(h.wire, expected);
        assert_eq!(h.conn.state(), State::Closing);
        assert_eq!(h.conn.commands().send_text("late"), Err(SendError::Closing));
        let mut input = frame(true, OpCode::Text, b"ignored");
        input.extend(frame(false, OpCode::Binary, b"ignored too"));
        input.extend(frame(true, OpCode::Ping, b""));
        input.extend(close_frame(1000, b""));
        for byte in input.chunks(1) {
            h.feed(byte);
        }
        assert_eq!(h.events, [closed(code, "done", CloseCause::Local { answered: true })]);
        // Pings are still answered until the peer's close (RFC 6455 §5.5.2); no second close.
        expected.extend([0x8a, 0x00]);
        assert_eq!(h.wire, expected);
        assert!(h.conn.should_close_transport());
    }
}

#[test]
fn server_close_arguments_are_checked_not_truncated() {
    let mut h = Harness::open(Config::default());
    assert_eq!(
        h.conn.commands().close(h.now, CloseCode(1005), ""),
        Err(CloseError::InvalidCode(1005))
    );
    assert_eq!(
        h.conn.commands().close(h.now, CloseCode(1010), ""),
        Err(CloseError::InvalidCode(1010))
    );
    assert_eq!(
        h.conn.commands().close(h.now, CloseCode(2000), ""),
        Err(CloseError::InvalidCode(2000))
    );
    let long = "é".repeat(62);
    assert_eq!(
        h.conn.commands().close(h.now, CloseCode::NORMAL, &long),
        Err(CloseError::ReasonTooLong { len: 124 })
    );
    assert_eq!(h.conn.state(), State::Open);
    h.conn.commands().close(h.now, CloseCode::NORMAL, &long[..122]).unwrap();
    assert_eq!(
        h.conn.commands().close(h.now, CloseCode::NORMAL, ""),
        Err(CloseError::AlreadyClosing)
    );
}

#[test]
fn unanswered_server_close_times_out() {
    let mut h = Harness::open(Config::default());
    h.conn.commands().close(h.now, CloseCode::GOING_AWAY, "").unwrap();
    h.drain();
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(5)));
    h.advance(Duration::from_secs(4));
    assert!(h.events.is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.events, [closed(1001, "", CloseCause::Local { answered: false })]);
    assert!(h.conn.should_close_transport());
}

#[test]
fn eof_after_messages_reports_them_then_an_abnormal_close() {
    let input = frame(true, OpCode::Text, b"last words");
    let (events, _, state) = run_all_splits(&Config::default(), true, &input, true);
    assert_eq!(
        events,
        [
            Ev::Text("last words".into()),
            closed(1006, "", CloseCause::TransportEnded)
        ]
    );
    assert_eq!(state, State::Closed);
}

// --- time ---------------------------------------------------------------------------------

#[test]
fn handshake_timeout_answers_408() {
    let mut h = Harness::new(Config::default());
    h.feed(&REQUEST[..10]);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(10)));
    h.advance(Duration::from_secs(10));
    assert!(h.wire.starts_with(b"HTTP/1.1 408 "));
    assert_eq!(
        h.events,
        [closed(1006, "", CloseCause::Handshake(HandshakeError::Timeout))]
    );
    assert!(h.conn.should_close_transport());
}

#[test]
fn keepalive_pings_then_gives_up_with_1011() {
    let mut h = Harness::open(Config::default());
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    h.advance(Duration::from_secs(29));
    assert!(h.wire.is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.wire, [0x89, 0x00]);
    h.wire.clear();
    h.advance(Duration::from_secs(30));
    let mut expected = vec![0x88, 19, 0x03, 0xf3];
    expected.extend(b"keepalive timeout");
    assert_eq!(h.wire, expected);
    assert_eq!(
        h.events,
        [closed(1011, "keepalive timeout", CloseCause::KeepaliveTimeout)]
    );
    assert!(h.conn.should_close_transport());
}

#[test]
fn keepalive_is_satisfied_by_the_pong_and_can_be_switched_off() {
    let mut h = Harness::open(Config::default());
    h.advance(Duration::from_secs(30));
    h.advance(Duration::from_secs(20));
    h.feed(&frame(true, OpCode::Pong, b""));
    h.advance(Duration::from_secs(20));
    assert_eq!(h.conn.state(), State::Open);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(10)));

    let off = Harness::open(Config::builder().keepalive(None).build().unwrap());
    assert_eq!(off.conn.poll_timeout(), None);
    let short = Keepalive {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
    };
    let mut h = Harness::open(Config::builder().keepalive(Some(short)).build().unwrap());
    h.advance(Duration::from_secs(1));
    h.advance(Duration::from_secs(2));
    assert_eq!(h.conn.state(), State::Closed);
}

// --- output and backpressure --------------------------------------------------------------

#[test]
fn reading_pauses_above_the_high_water_mark_until_the_low_water_mark() {
    let config = Config::builder()
        .water_marks(1000, 200)
        .max_backlog(4000)
        .build()
        .unwrap();
    let mut h = Harness::open(config);
    assert!(h.conn.wants_read());
    h.conn.commands().send_binary(&[0u8; 1000]).unwrap(); // a 1004-byte frame
    assert!(!h.conn.wants_read());
    h.conn.transmitted(700);
    assert!(!h.conn.wants_read(), "304 bytes left is above the low-water mark");
    h.conn.transmitted(110);
    assert!(h.conn.wants_read());
    assert_eq!(h.conn.buffered_amount(), 194);
    assert_eq!(
        h.conn.commands().send_binary(&[0u8; 4000]),
        Err(SendError::MessageTooLarge)
    );
    h.conn.commands().send_binary(&[0u8; 3000]).unwrap();
    assert_eq!(h.conn.commands().send_binary(&[0u8; 900]), Err(SendError::Full));
}

#[test]
fn a_peer_flooding_pings_cannot_grow_the_output_past_the_bound() {
    let config = Config::builder().water_marks(1000, 100).build().unwrap();
    let mut h = Harness::open(config);
    let ping = frame(true, OpCode::Ping, &[7u8; 125]);
    let mut fed = 0;
    while h.conn.wants_read() {
        h.conn.handle_input(h.now, &ping);
        while h.conn.poll_event().is_some() {}
        fed += 1;
    }
    assert!(fed < 20);
    assert!(h.conn.buffered_amount() <= 1000 + 127);
}

#[test]
fn slow_consumer_policy_drop_or_close() {
    let shared = SharedFrame::binary(&[1u8; 600]);
    let drop = Config::builder()
        .water_marks(1000, 100)
        .max_backlog(1500)
        .slow_consumer(SlowConsumerPolicy::Drop)
        .build()
        .unwrap();
    let mut h = Harness::open(drop);
    h.conn.commands().deliver(h.now, &shared).unwrap();
    h.conn.commands().deliver(h.now, &shared).unwrap();
    assert_eq!(h.conn.commands().deliver(h.now, &shared), Err(SendError::Full));
    assert_eq!(h.conn.state(), State::Open);
    assert_eq!(h.conn.buffered_amount(), 2 * shared.len());

    let close = Config::builder()
        .water_marks(1000, 100)
        .max_backlog(1500)
        .build()
        .unwrap();
    let mut h = Harness::open(close);
    h.conn.commands().deliver(h.now, &shared).unwrap();
    h.conn.commands().deliver(h.now, &shared).unwrap();
    assert_eq!(h.conn.commands().deliver(h.now, &shared), Err(SendError::Full));
    h.drain();
    assert_eq!(h.events, [closed(1008, "slow consumer", CloseCause::SlowConsumer)]);
    assert!(h.wire.ends_with(b"\x88\x0f\x03\xf0slow consumer"));
}

#[test]
fn unsent_output_is_abandoned_after_the_close_timeout() {
    let mut h = Harness::open(Config::default());
    h.conn.commands().send_text("never read").unwrap();
    h.conn.handle_input(h.now, &close_frame(1000, b""));
    while h.conn.poll_event().is_some() {}
    assert!(!h.conn.should_close_transport(), "waits to flush the close reply");
    h.now += Duration::from_secs(5);
    h.conn.handle_timeout(h.now);
    assert!(h.conn.should_close_transport());
    assert_eq!(h.conn.buffered_amount(), 0);
}

#[test]
fn the_handshake_deadline_also_bounds_the_applications_decision() {
    let mut h = Harness::new(Config::default());
    h.accept = false;
    h.feed(REQUEST);
    assert_eq!(h.conn.state(), State::AwaitingDecision);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(10)));
    h.advance(Duration::from_secs(10));
    assert!(
        h.wire.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&h.wire)
    );
    assert_eq!(h.conn.state(), State::Closed);
}

#[test]
fn commands_arm_timers_from_the_instant_they_are_given() {
    let mut h = Harness::open(Config::builder().keepalive(None).build().unwrap());
    let later = h.now + Duration::from_secs(60);
    h.conn.commands().close(later, CloseCode::NORMAL, "").unwrap();
    assert_eq!(h.conn.poll_timeout(), Some(later + Duration::from_secs(5)));
}

/// Each state keeps one timer: hearing from the peer answers a keepalive ping in Open, but
/// in Closing it must not move the close deadline (a peer that keeps talking and never
/// answers our close is still dropped on time).
#[test]
fn a_talkative_peer_does_not_delay_the_close_deadline() {
    let mut h = Harness::open(Config::default());
    h.conn.commands().close(h.now, CloseCode::NORMAL, "").unwrap();
    let deadline = h.now + Duration::from_secs(5);
    for _ in 0..4 {
        h.now += Duration::from_secs(1);
        h.feed(&frame(true, OpCode::Text, b"still talking"));
        assert_eq!(h.conn.poll_timeout(), Some(deadline));
    }
    h.advance(Duration::from_secs(1));
    assert_eq!(h.conn.state(), State::Closed);
    assert!(h.conn.should_close_transport());
}

/// Bytes of the request that arrive do not move the handshake deadline either.
#[test]
fn a_slow_request_does_not_delay_the_handshake_deadline() {
    let mut h = Harness::new(Config::default());
    let deadline = h.now + Duration::from_secs(10);
    for byte in REQUEST[..9].chunks(1) {
        h.now += Duration::from_secs(1);
        h.feed(byte);
        assert_eq!(h.conn.poll_timeout(), Some(deadline));
    }
    h.advance(Duration::from_secs(1));
    assert!(h.wire.starts_with(b"HTTP/1.1 408 "));
}

#[test]
fn huge_timeouts_mean_never_and_do_not_overflow() {
    let forever = Keepalive {
        interval: Duration::MAX,
        timeout: Duration::MAX,
    };
    let config = Config::builder()
        .handshake_timeout(Some(Duration::MAX))
        .close_timeout(Duration::MAX)
        .keepalive(Some(forever))
        .max_frame_size(usize::MAX)
        .build()
        .unwrap();
    let mut h = Harness::open(config);
    assert_eq!(h.conn.poll_timeout(), None);
    assert!(h.conn.wants_read());
    h.feed(&frame(true, OpCode::Text, b"still fine"));
    h.conn.commands().close(h.now, CloseCode::NORMAL, "").unwrap();
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.conn.state(), State::Closing);
}

#[test]
fn abort_drops_output_and_closes_at_once() {
    let mut h = Harness::open(Config::default());
    h.conn.commands().send_text("unsendable").unwrap();
    h.conn.handle_transport_error(h.now);
    h.drain();
    assert_eq!(h.events, [closed(1006, "", CloseCause::TransportEnded)]);
    assert!(h.wire.is_empty());
    assert!(h.conn.should_close_transport());
}

#[test]
fn a_driver_ignoring_wants_read_still_cannot_grow_output_without_bound() {
    let config = Config::builder()
        .water_marks(1000, 100)
        .max_backlog(4000)
        .build()
        .unwrap();
    let mut h = Harness::open(config);
    let ping = frame(true, OpCode::Ping, &[7u8; 125]);
    for _ in 0..100 {
        h.conn.handle_input(h.now, &ping);
        while h.conn.poll_event().is_some() {}
    }
    assert!(h.conn.buffered_amount() <= 4000 + 127);
    assert_eq!(h.conn.state(), State::Closed);
}

#[test]
fn receive_buffer_gives_back_the_room_of_a_large_frame() {
    let mut h = Harness::open(Config::default());
    let big = frame(true, OpCode::Binary, &vec![1u8; 1 << 20]);
    let small = frame(true, OpCode::Binary, b"tiny");
    let mut input = big.clone();
    input.extend(&small[..3]);
    h.feed(&input);
    h.feed(&small[3..]);
    h.feed(&small[..3]);
    assert!(
        h.conn.inbound.rx.capacity() <= 64 * 1024,
        "capacity {}",
        h.conn.inbound.rx.capacity()
    );
}

#[test]
fn sending_requires_an_open_websocket() {
    let mut h = Harness::new(Config::default());
    assert_eq!(h.conn.commands().send_text("x"), Err(SendError::NotOpen));
    assert_eq!(
        h.conn.commands().close(h.now, CloseCode::NORMAL, ""),
        Err(CloseError::NotOpen)
    );
    h.feed(REQUEST);
    h.feed(&close_frame(1000, b""));
    assert_eq!(h.conn.commands().send_text("x"), Err(SendError::Closed));
    assert_eq!(h.conn.commands().ping(b""), Err(SendError::Closed));
}

#[test]
fn echo_through_the_sender_without_copying_the_message() {
    let mut h = Harness::open(Config::default());
    h.conn.handle_input(h.now, &frame(true, OpCode::Binary, b"echo me"));
    let Some((Event::Binary(data), mut sender)) = h.conn.poll_event() else {
        panic!()
    };
    sender.send_binary(data).unwrap();
    assert_eq!(sender.ping(&[0u8; 126]), Err(SendError::ControlPayloadTooLong));
    let mut wire = Vec::new();
    transmit_all(&mut h.conn, &mut wire);
    assert_eq!(wire, b"\x82\x07echo me");
}

#[test]
fn connection_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection>();
    assert_send_sync::<SharedFrame>();
}

// --- properties ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Message {
    Text(String),
    Binary(Vec<u8>),
}

fn message() -> impl Strategy<Value = (Message, Vec<usize>, bool)> {
    let text = ".{0,300}".prop_map(Message::Text);
    let binary = proptest::collection::vec(any::<u8>(), 0..600).prop_map(Message::Binary);
    (
        prop_oneof![text, binary],
        proptest::collection::vec(1usize..200, 0..4),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random messages, randomly fragmented, with pings between fragments, fed in random
    /// chunks, come out exactly as sent, and every ping is answered.
    #[test]
    fn messages_survive_fragmentation_and_chunking(
        messages in proptest::collection::vec(message(), 1..6),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut pings = 0;
        for (message, fragments, ping_between) in &messages {
            let (opcode, bytes) = match message {
                Message::Text(t) => (OpCode::Text, t.as_bytes().to_vec()),
                Message::Binary(b) => (OpCode::Binary, b.clone()),
            };
            let mut pieces = Vec::new();
            let mut rest = &bytes[..];
            for &len in fragments {
                // Text fragments may split characters: validation is incremental.
                let at = len.min(rest.len());
                pieces.push(&rest[..at]);
                rest = &rest[at..];
            }
            pieces.push(rest);
            for (i, piece) in pieces.iter().enumerate() {
                let op = if i == 0 { opcode } else { OpCode::Continuation };
                input.extend(frame(i + 1 == pieces.len(), op, piece));
                if *ping_between && i + 1 < pieces.len() {
                    input.extend(frame(true, OpCode::Ping, b"p"));
                    expected.push(Ev::Ping(b"p".to_vec()));
                    pings += 1;
                }
            }
            expected.push(match message {
                Message::Text(t) => Ev::Text(t.clone()),
                Message::Binary(b) => Ev::Binary(b.clone()),
            });
        }
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let at = (*cut).min(rest.len());
            chunks.push(&rest[..at]);
            rest = &rest[at..];
        }
        let (events, wire, state) = run_chunks(&Config::default(), true, &chunks, false);
        prop_assert_eq!(events, expected);
        prop_assert_eq!(wire, b"\x8a\x01p".repeat(pings));
        prop_assert_eq!(state, State::Open);
    }

    /// Arbitrary bytes after the upgrade never panic, and whatever the server writes is a
    /// sequence of well-formed server frames ending, if closed, with a legal close code.
    #[test]
    fn arbitrary_input_never_panics_and_output_stays_well_formed(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cut in 1usize..50,
    ) {
        let chunks: Vec<&[u8]> = bytes.chunks(cut).collect();
        let (_, wire, _) = run_chunks(&Config::default(), true, &chunks, true);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let rules = crate::frame::DecodeRules { require_mask: false, allow_rsv1: false };
            let (header, len) = crate::frame::decode_header(rest, rules).unwrap().unwrap();
            prop_assert!(header.mask.is_none());
            let end = len + header.payload_len as usize;
            if header.opcode == OpCode::Close && header.payload_len >= 2 {
                let code = u16::from_be_bytes([rest[len], rest[len + 1]]);
                prop_assert!(CloseCode(code).is_sendable_by_server());
                prop_assert_eq!(end, rest.len(), "close is the last frame");
            }
            rest = &rest[end..];
        }
    }
}
