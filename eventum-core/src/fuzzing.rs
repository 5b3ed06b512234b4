//! Entry points for the fuzz targets in `fuzz/` and the corpus replay test (not public API).
//!
//! Each function takes arbitrary bytes and panics when an invariant of the core breaks: a
//! panic is a finding, and not panicking is only part of what is checked. The input format
//! each one reads is documented on it; the seed corpora in `fuzz/corpus/` follow it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::SendError;
use crate::event::{CloseCause, Closed, Event, State};
use crate::frame::{self, DecodeRules, OpCode, MAX_HEADER_LEN};
use crate::handshake::{accept_key, Accept, HttpResponse};
use crate::outbound::SharedFrame;

/// `max_head_bytes` of [`handshake`], small so that oversized heads fit a fuzz input.
const HEAD_LIMIT: usize = 2048;
/// The most bytes [`connection`] hands to `handle_input` at once.
const MAX_READ: usize = 128;
/// The request [`connection`] opens with (RFC 6455 §1.2).
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The origin of the virtual clock: the one real clock read, then time moves by input bytes.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Splits `data` into chunks of pseudo-random sizes in `1..=seed` (`seed` 0: one chunk).
fn chunks(data: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let (mut rest, mut state) = (data, u32::from(seed));
    std::iter::from_fn(move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = if seed == 0 {
            rest.len()
        } else {
            1 + (state >> 16) as usize % usize::from(seed)
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// Appends everything the connection has for the wire to `out`.
fn transmit_all(conn: &mut Connection, out: &mut Vec<u8>) {
    let transmit = conn.poll_transmit();
    transmit.chunks().for_each(|chunk| out.extend_from_slice(chunk));
    let n = transmit.len();
    conn.transmitted(n);
}

/// Response headers: lower-case names and raw values.
type Headers = Vec<(String, Vec<u8>)>;

/// Parses a complete HTTP response: status, headers (lower-case names) and the bytes after the head.
fn parse_response(out: &[u8]) -> (u16, Headers, &[u8]) {
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(len)) = response.parse(out) else {
        panic!("unparsable response {:?}", String::from_utf8_lossy(out));
    };
    let headers = response.headers.iter();
    let headers = headers
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    (response.code.unwrap_or_default(), headers, &out[len..])
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// A refusal or plain response: the status, a `Content-Length` that frames the body exactly.
fn check_response(out: &[u8], status: u16) {
    let (code, headers, body) = parse_response(out);
    assert_eq!(code, status, "status of {:?}", String::from_utf8_lossy(out));
    let length = header(&headers, "content-length").expect("Content-Length");
    assert_eq!(length, body.len().to_string().as_bytes(), "Content-Length vs body");
}

/// The request head of a fresh connection, then its outcome.
///
/// Input: one control byte, then the bytes from the peer. Control bit 7 turns on
/// `http_fallback`, bit 6 ends an incomplete head with EOF instead of the handshake timeout,
/// bits 0-5 seed the chunk sizes (0: one chunk). The outcome must be an upgrade request (accepted:
/// a parsable 101 with the RFC accept key and the first offered subprotocol), a plain
/// request (answered 200), or a `Closed` event with a parsable 4xx refusal.
pub fn handshake(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let builder = Config::builder().max_head_bytes(HEAD_LIMIT).max_headers(32);
    let config = builder
        .http_fallback(control & 0x80 != 0)
        .build()
        .expect("valid config");
    let (now, timeout) = (epoch(), config.handshake_timeout().unwrap_or_default());
    let mut conn = Connection::new(Arc::new(config), now);
    for chunk in chunks(input, control & 0x3F) {
        conn.handle_input(now, chunk);
        if conn.state() == State::Handshake {
            assert_eq!(conn.buffered_amount(), 0, "output before the head is complete");
            assert_eq!(conn.poll_timeout(), Some(now + timeout), "handshake deadline");
        }
    }
    let eof = control & 0x40 != 0;
    match (conn.state(), eof) {
        (State::Handshake, true) => conn.handle_eof(now),
        (State::Handshake, false) => conn.handle_timeout(now + timeout),
        _ => {}
    }
    /// What the first event asked for, owned so the connection can be used again.
    enum Outcome {
        Upgrade(String, Option<String>),
        Http,
        Closed(Closed),
    }
    let outcome = match conn.poll_event().map(|(event, _)| event) {
        Some(Event::UpgradeRequest(r)) => {
            let key = r.websocket_key().expect("a validated upgrade has a key").to_owned();
            Outcome::Upgrade(key, r.subprotocols().first().cloned())
        }
        Some(Event::HttpRequest(r)) => {
            assert!(control & 0x80 != 0 && !r.is_websocket_upgrade(), "plain request {r:?}");
            Outcome::Http
        }
        Some(Event::Closed(closed)) => Outcome::Closed(closed),
        other => panic!("unexpected first event {other:?}"),
    };
    let mut out = Vec::new();
    let mut closed_events = 0;
    match outcome {
        Outcome::Upgrade(key, protocol) => {
            let accept = protocol.iter().fold(Accept::new(), |a, p| a.subprotocol(p.as_str()));
            conn.commands()
                .accept(now, accept)
                .expect("accepting a validated upgrade");
            assert_eq!(conn.state(), State::Open);
            assert!(conn.buffered_amount() <= 256 + protocol.as_ref().map_or(0, String::len));
            transmit_all(&mut conn, &mut out);
            let (status, headers, rest) = parse_response(&out);
            assert_eq!((status, rest), (101, &[][..]), "101 with nothing after it");
            let accept = header(&headers, "sec-websocket-accept");
            assert_eq!(accept, Some(accept_key(&key).as_bytes()), "Sec-WebSocket-Accept");
            let latin1 = protocol.map(|p| p.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect::<Vec<_>>());
            assert_eq!(header(&headers, "sec-websocket-protocol"), latin1.as_deref());
            // Whatever followed the head in the same input is frames: run them to the end.
            conn.handle_eof(now);
            while let Some((event, _)) = conn.poll_event() {
                closed_events += usize::from(matches!(event, Event::Closed(_)));
            }
        }
        Outcome::Http => {
            conn.commands()
                .respond(now, HttpResponse::text(200, "ok"))
                .expect("answering a plain request");
            assert!(conn.buffered_amount() <= 256, "response size");
            transmit_all(&mut conn, &mut out);
            check_response(&out, 200);
            let responded = CloseCause::Responded { status: 200 };
            assert!(matches!(conn.poll_event(), Some((Event::Closed(c), _)) if c.cause == responded));
            closed_events = 1;
        }
        Outcome::Closed(closed) => {
            closed_events = 1;
            assert_eq!(closed.code, CloseCode::ABNORMAL);
            assert!(conn.buffered_amount() <= 512, "refusal size");
            transmit_all(&mut conn, &mut out);
            match closed.cause {
                CloseCause::Handshake(error) => {
                    assert!(out.starts_with(b"HTTP/1.1 4"), "a refusal is a 4xx");
                    check_response(&out, error.status());
                }
                CloseCause::TransportEnded => assert!(eof && out.is_empty(), "EOF ends quietly"),
                cause => panic!("handshake ended by {cause:?}"),
            }
        }
    }
    assert_eq!(closed_events, 1, "exactly one Closed event");
    assert!(conn.poll_event().is_none(), "an event after Closed");
    transmit_all(&mut conn, &mut out);
    assert!(conn.should_close_transport());
}

/// `decode_header` under all four rule sets: prefixes agree with the whole, a decoded header
/// is at most 14 bytes, obeys its rules and survives re-encoding.
///
/// Input: the bytes of a frame (header and any payload).
pub fn frame_header(data: &[u8]) {
    let mut results = [[Ok(None), Ok(None)], [Ok(None), Ok(None)]];
    for (require_mask, allow_rsv1) in [(false, false), (false, true), (true, false), (true, true)] {
        let rules = DecodeRules {
            require_mask,
            allow_rsv1,
        };
        let full = frame::decode_header(data, rules);
        assert!(
            data.len() < MAX_HEADER_LEN || full != Ok(None),
            "14 bytes always decide"
        );
        // Prefixes: Ok(None) until an error is decidable, then that error; a complete header
        // decodes the same whatever follows it.
        let mut failed = false;
        for end in 0..=data.len().min(MAX_HEADER_LEN + 1) {
            match (frame::decode_header(&data[..end], rules), &full) {
                (Ok(None), _) => assert!(!failed, "prefix {end}: Ok(None) after an error"),
                (Err(e), Err(f)) if e == *f => failed = true,
                (Ok(Some(got)), Ok(Some(whole))) if got == *whole => assert!(got.1 <= end),
                (got, _) => panic!("prefix {end} gave {got:?}, the whole input {full:?}"),
            }
        }
        if let Ok(Some((h, n))) = full {
            let ext = match data[1] & 0x7F {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            assert_eq!(n, 2 + ext + if h.mask.is_some() { 4 } else { 0 }, "header length");
            assert!(n <= MAX_HEADER_LEN && n <= data.len() && h.payload_len < 1 << 63);
            assert!(h.mask.is_some() || !require_mask, "unmasked frame accepted");
            assert!(!h.rsv1 || allow_rsv1, "RSV1 accepted");
            assert!(
                !h.opcode.is_control() || (h.fin && h.payload_len <= 125),
                "control frame rules"
            );
            // Re-encode minimally: decodes to the same header, byte-exact if the input was minimal.
            let (bytes, len) = frame::header_bytes(h.fin, h.rsv1, h.opcode, h.payload_len);
            let mut encoded = bytes[..len].to_vec();
            if let Some(key) = h.mask {
                encoded[1] |= 0x80;
                encoded.extend_from_slice(&key);
            }
            assert_eq!(frame::decode_header(&encoded, rules), Ok(Some((h, encoded.len()))));
            let minimal = match ext {
                2 => h.payload_len >= 126,
                8 => h.payload_len > 0xFFFF,
                _ => true,
            };
            assert!(
                encoded.len() <= n && (!minimal || encoded == data[..n]),
                "re-encoded {encoded:?}"
            );
            // A whole masked frame re-encodes byte-exact through encode_client_frame.
            let end = n as u64 + h.payload_len;
            if let (Some(key), true, true) = (h.mask, minimal && !h.rsv1, end <= data.len() as u64) {
                let mut payload = data[n..end as usize].to_vec();
                frame::apply_mask(&mut payload, key, 0);
                let mut frame = Vec::new();
                frame::encode_client_frame(&mut frame, h.fin, h.opcode, &payload, key);
                assert_eq!(frame, data[..end as usize], "encode_client_frame");
            }
        }
        results[usize::from(require_mask)][usize::from(allow_rsv1)] = full;
    }
    // Relaxing a rule changes nothing for a header that does not need it.
    for (lax, strict) in results[0].iter().zip(&results[1]) {
        if let Ok(Some((h, _))) = lax {
            assert!(h.mask.is_none() || strict == lax, "mask rule");
        }
    }
    for [strict, lax] in &results {
        if let Ok(Some((h, _))) = lax {
            assert!(h.rsv1 || strict == lax, "RSV1 rule");
        }
    }
}

/// `apply_mask` against the bytewise reference, whole, in two pieces, and twice.
///
/// Input: a 4-byte key, an 8-byte little-endian offset, a split byte, then the payload
/// (missing header bytes are zero).
pub fn unmask(data: &[u8]) {
    let mut head = [0u8; 13];
    let (fixed, payload) = data.split_at(data.len().min(head.len()));
    head[..fixed.len()].copy_from_slice(fixed);
    let key = [head[0], head[1], head[2], head[3]];
    let offset = u64::from_le_bytes([head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11]]);
    let split = payload.len() * usize::from(head[12]) / 255;

    let mut fast = payload.to_vec();
    frame::apply_mask(&mut fast, key, offset);
    let mut slow = payload.to_vec();
    frame::apply_mask_bytewise(&mut slow, key, offset);
    assert_eq!(fast, slow, "apply_mask vs apply_mask_bytewise");
    let phase = (offset % 4) as usize;
    for (i, (&masked, &plain)) in slow.iter().zip(payload).enumerate() {
        assert_eq!(masked, plain ^ key[(phase + i) % 4], "byte {i} against RFC 6455 §5.3");
    }
    let mut pieces = payload.to_vec();
    let (first, second) = pieces.split_at_mut(split);
    frame::apply_mask(first, key, offset);
    frame::apply_mask(second, key, offset.wrapping_add(split as u64));
    assert_eq!(pieces, fast, "masked in two pieces split at {split}");
    frame::apply_mask(&mut fast, key, offset);
    assert_eq!(fast, payload, "masking twice is the identity");
}

/// An opened connection driven by an echo server and a byte-coded peer, to the end.
///
/// Input: commands, each a control byte `c`: `0x00..=0x7F` the peer sends the next `c + 1`
/// bytes; `0x80..=0x9F` `(c & 0x1F) + 1` seconds pass; `0xA0` the application closes with
/// 1000; `0xA1` it pings; `0xA2` toggles a stalled transport (output written only when reading
/// needs it); `0xA3` it delivers a 4000-byte shared frame; `0xA4` 100 bytes of output are written;
/// `0xA5` toggles a greedy driver that reads even when `wants_read` is false; anything else
/// writes all output. Then the peer's EOF.
///
/// Checked: the output is unmasked final server frames; echoes and pongs match the events in
/// order; one close frame, with a code a server may send, followed by nothing (or only pongs,
/// after a close we started); exactly one `Closed` event, nothing after it; the backlog stays
/// bounded; reading resumes once output is written; deadlines lie in the future.
pub fn connection(data: &[u8]) {
    let config = Config::builder().max_frame_size(64 << 10).max_message_size(64 << 10);
    let config = Arc::new(
        config
            .water_marks(8 << 10, 2 << 10)
            .max_backlog(16 << 10)
            .build()
            .expect("config"),
    );
    let now = epoch();
    let mut conn = Connection::new(Arc::clone(&config), now);
    conn.handle_input(now, REQUEST);
    let Some((Event::UpgradeRequest(_), mut commands)) = conn.poll_event() else {
        panic!("no upgrade request");
    };
    commands.accept(now, Accept::new()).expect("accept");
    transmit_all(&mut conn, &mut Vec::new());
    let mut peer = Peer {
        conn,
        now,
        backlog: config.max_backlog(),
        stalled: false,
        greedy: false,
        app_closed: false,
        dropped: false,
        wire: Vec::new(),
        sent: Vec::new(),
        pings: Vec::new(),
        closed: None,
    };
    let mut input = data;
    while let Some((&c, rest)) = input.split_first() {
        input = rest;
        let state = peer.conn.state();
        match c {
            0x00..=0x7F => {
                let (chunk, rest) = input.split_at(input.len().min(usize::from(c) + 1));
                input = rest;
                if !peer.greedy && !peer.conn.wants_read() {
                    peer.write(usize::MAX); // the peer reads, so the transport becomes writable
                    let paused = state != State::Closed && !peer.conn.wants_read();
                    assert!(!paused, "reading paused, nothing to write");
                }
                peer.conn.handle_input(peer.now, chunk);
            }
            0x80..=0x9F => {
                peer.now += Duration::from_secs(u64::from(c & 0x1F) + 1);
                let before = peer.conn.buffered_amount();
                peer.conn.handle_timeout(peer.now);
                peer.dropped |= peer.conn.buffered_amount() < before;
                assert!(
                    !matches!(peer.conn.poll_timeout(), Some(t) if t <= peer.now),
                    "deadline passed"
                );
            }
            0xA0 => {
                let result = peer.conn.commands().close(peer.now, CloseCode::NORMAL, "bye");
                assert_eq!(result.is_ok(), state == State::Open, "close in {state:?}: {result:?}");
                peer.app_closed |= result.is_ok();
            }
            0xA1 => match peer.conn.commands().ping(b"fz") {
                // Over the backlog the application's own ping is refused, never queued.
                Err(SendError::Full) => assert_eq!(state, State::Open, "Full outside Open"),
                result => assert_eq!(result.is_ok(), state == State::Open, "ping in {state:?}"),
            },
            0xA2 => peer.stalled = !peer.stalled,
            0xA3 => {
                let (payload, before) = ([0x5A; 4000], peer.conn.buffered_amount());
                let result = peer.conn.commands().deliver(peer.now, &SharedFrame::binary(&payload));
                peer.record(state, before, result, OpCode::Binary, &payload);
            }
            0xA4 => peer.write(100),
            0xA5 => peer.greedy = !peer.greedy,
            _ => peer.write(usize::MAX),
        }
        peer.pump();
    }
    peer.conn.handle_eof(peer.now);
    peer.pump();
    peer.write(usize::MAX);
    assert!(
        peer.closed.is_some() && peer.conn.should_close_transport(),
        "not closed after EOF"
    );
    peer.conn.handle_input(peer.now, &[0x89, 0x80, 0, 0, 0, 0]);
    peer.conn.handle_timeout(peer.now + Duration::from_secs(3600));
    assert!(peer.conn.poll_event().is_none(), "an event after Closed");
    peer.check_wire();
}

/// The driver of [`connection`] and what it saw.
struct Peer {
    conn: Connection,
    now: Instant,
    backlog: usize,
    stalled: bool,
    /// Reads without asking `wants_read` (the core must stay bounded anyway).
    greedy: bool,
    /// The application started the close handshake.
    app_closed: bool,
    /// The core abandoned unsent output (close timeout): the wire holds a prefix.
    dropped: bool,
    /// Everything written after the 101.
    wire: Vec<u8>,
    /// The data frames the application queued, in order.
    sent: Vec<(OpCode, Vec<u8>)>,
    /// The payloads of the `Ping` events, each owed a pong.
    pings: Vec<Vec<u8>>,
    closed: Option<Closed>,
}

impl Peer {
    /// Takes every event, echoing messages, then writes the output unless stalled.
    fn pump(&mut self) {
        while let Some((event, mut sender)) = self.conn.poll_event() {
            assert!(self.closed.is_none(), "{event:?} after Closed");
            let (state, before) = (sender.state(), sender.buffered_amount());
            let (opcode, payload, result) = match event {
                Event::Text(text) => (OpCode::Text, text.as_bytes(), sender.send_text(text)),
                Event::Binary(data) => (OpCode::Binary, data, sender.send_binary(data)),
                Event::Ping(payload) => (OpCode::Ping, payload, Ok(())),
                Event::Pong(_) => continue,
                Event::Closed(closed) => {
                    self.closed = Some(closed);
                    continue;
                }
                Event::UpgradeRequest(_) | Event::HttpRequest(_) => panic!("a second request"),
            };
            let payload = payload.to_vec();
            match opcode {
                OpCode::Ping => self.pings.push(payload),
                _ => self.record(state, before, result, opcode, &payload),
            }
            self.check_backlog();
        }
        self.check_backlog();
        if !self.stalled {
            self.write(usize::MAX);
        }
    }

    /// Control frames the core owes (pongs, a close, keepalive pings) may pass the backlog a
    /// little: by one read's pongs (reading pauses above the high-water mark) and one close.
    fn check_backlog(&self) {
        let amount = self.conn.buffered_amount();
        assert!(amount <= self.backlog + 256 + MAX_READ, "{amount} bytes buffered");
    }

    /// Notes a data frame the application queued; a failure must be explained by the state.
    fn record(&mut self, state: State, before: usize, result: Result<(), SendError>, op: OpCode, payload: &[u8]) {
        let size = payload.len() + MAX_HEADER_LEN;
        match result {
            Ok(()) => self.sent.push((op, payload.to_vec())),
            Err(SendError::Full) => assert!(state == State::Open && before + size > self.backlog, "Full"),
            Err(SendError::MessageTooLarge) => assert!(size > self.backlog, "MessageTooLarge"),
            Err(e) => assert_ne!(state, State::Open, "{e} on an open connection"),
        }
    }

    /// Writes up to `max` bytes of output to the wire.
    fn write(&mut self, max: usize) {
        let out = self.conn.poll_transmit().first();
        let n = out.len().min(max);
        self.wire.extend_from_slice(&out[..n]);
        self.conn.transmitted(n);
        if max == usize::MAX {
            transmit_all(&mut self.conn, &mut self.wire);
            let closed = self.conn.state() == State::Closed;
            assert_eq!(self.conn.should_close_transport(), closed, "should_close_transport");
        }
    }

    /// The wire after the 101: unmasked final frames; echoes and pongs in order (a prefix if
    /// output was abandoned); a close frame last, present unless the transport just ended.
    fn check_wire(&self) {
        let closed = self.closed.as_ref().expect("a Closed event");
        let rules = DecodeRules {
            require_mask: false,
            allow_rsv1: false,
        };
        let (mut data, mut pongs, mut close) = (Vec::new(), Vec::new(), None);
        let mut rest = &self.wire[..];
        while !rest.is_empty() {
            let decoded = frame::decode_header(rest, rules).unwrap_or_else(|e| panic!("bad server frame: {e}"));
            let Some((h, n)) = decoded.filter(|(h, n)| h.payload_len <= (rest.len() - n) as u64) else {
                assert!(self.dropped, "truncated frame at the end of the output");
                break;
            };
            assert!(h.fin && h.mask.is_none(), "server frames are final and unmasked: {h:?}");
            let (payload, tail) = rest[n..].split_at(h.payload_len as usize);
            rest = tail;
            if close.is_some() {
                // No data after a close (RFC 6455 §5.5.1), but pings are answered until the
                // peer's close arrives (§5.5.2): only pongs may follow a close we started.
                assert!(
                    h.opcode == OpCode::Pong && self.app_closed,
                    "{:?} after the close",
                    h.opcode
                );
                continue;
            }
            match h.opcode {
                OpCode::Text | OpCode::Binary => data.push((h.opcode, payload.to_vec())),
                OpCode::Pong => pongs.push(payload.to_vec()),
                OpCode::Ping => assert!(payload.is_empty() || payload == b"fz", "ping {payload:?}"),
                OpCode::Close => close = Some(payload),
                OpCode::Continuation => panic!("the server never fragments"),
            }
        }
        for (what, got, want) in [
            ("echoes", data.len(), self.sent.len()),
            ("pongs", pongs.len(), self.pings.len()),
        ] {
            assert!(
                got == want || (self.dropped && got < want),
                "{got} {what} on the wire, {want} queued"
            );
        }
        assert!(
            data.iter().zip(&self.sent).all(|(got, want)| got == want),
            "echoed messages differ"
        );
        assert!(
            pongs.iter().zip(&self.pings).all(|(got, want)| got == want),
            "pong payloads differ"
        );
        match close {
            Some([]) => assert_eq!(
                (closed.code, &closed.cause),
                (CloseCode::NO_STATUS, &CloseCause::Remote)
            ),
            Some([hi, lo, reason @ ..]) => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                assert!(code.is_sendable_by_server(), "the server sent close code {code}");
                assert!(std::str::from_utf8(reason).is_ok(), "close reason is not UTF-8");
            }
            Some(payload) => panic!("close payload {payload:?}"),
            None => assert!(
                self.dropped || closed.cause == CloseCause::TransportEnded,
                "no close: {closed:?}"
            ),
        }
        assert!(
            close.is_none() || closed.cause != CloseCause::TransportEnded,
            "close, yet the transport ended"
        );
    }
}

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
    let cancel_at = (control & 0x40 != 0).then_some(input.len() / 2);
    let mut fed = 0;
    let mut dropped = false;
    for chunk in chunks(input, control & 0x3F) {
        if cancel_at.is_some_and(|at| fed >= at) {
            drop(std::mem::replace(&mut session, admit(now)));
            dropped = true;
            break;
        }
        session.handle_input(now, chunk);
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
        .on("boom", |_, _| panic!("fuzz: a deliberate handler panic"))
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
