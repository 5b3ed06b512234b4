//! The `connection` target: an opened connection, an echo server and a byte-coded peer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::client_inflate::inflate_server_message;
use crate::close::CloseCode;
use crate::config::Config;
use crate::error::SendError;
use crate::event::{CloseCause, Closed, Event, State};
use crate::frame::{self, DecodeRules, OpCode, MAX_HEADER_LEN};
use crate::handshake::{Accept, DeflateConfig};
use crate::outbound::SharedFrame;

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
    run(data, None);
}

/// The `deflate` target: [`connection`](fn@super::connection) with permessage-deflate (RFC 7692) agreed. The first
/// byte picks the server's settings: bit 0 keeps the server's context between messages,
/// bit 1 the client's, bit 2 a 9-bit server window, bit 3 a zero compression threshold;
/// the rest is [`connection`](fn@super::connection)'s input, where compressed frames (RSV1, raw DEFLATE) are
/// inflated up to `max_message_size` (64 KiB).
///
/// Checked as [`connection`](fn@super::connection), with the server's compressed messages inflated (by an
/// independent flate2 stream kept for the whole connection, as a client keeps it) before
/// they are compared with the messages the application sent.
pub fn deflate(data: &[u8]) {
    let Some((&settings, data)) = data.split_first() else {
        return;
    };
    let config = DeflateConfig::default()
        .server_no_context_takeover(settings & 1 == 0)
        .client_no_context_takeover(settings & 2 == 0)
        .server_max_window_bits(if settings & 4 != 0 { 9 } else { 12 })
        .threshold(if settings & 8 != 0 { 0 } else { 128 });
    run(data, Some(config));
}

fn run(data: &[u8], deflate: Option<DeflateConfig>) {
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
    let offered = deflate.is_some();
    let accept = match deflate {
        Some(settings) => {
            conn.handle_input(now, REQUEST_DEFLATE);
            Accept::new().compression(settings)
        }
        None => {
            conn.handle_input(now, REQUEST);
            Accept::new().compression(DeflateConfig::disabled())
        }
    };
    let Some((Event::UpgradeRequest(_), mut commands)) = conn.poll_event() else {
        panic!("no upgrade request");
    };
    commands.accept(now, accept).expect("accept");
    assert_eq!(conn.compression().is_some(), offered, "negotiated");
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
            allow_rsv1: self.conn.compression().is_some(),
        };
        // The client's inflater: one stream for the connection, which suits both a server
        // that keeps its context and one that does not.
        let mut inflater = flate2::Decompress::new(false);
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
            assert!(
                !h.rsv1 || matches!(h.opcode, OpCode::Text | OpCode::Binary),
                "RSV1 on {h:?}"
            );
            match h.opcode {
                OpCode::Text | OpCode::Binary if h.rsv1 => {
                    data.push((h.opcode, inflate_server_message(&mut inflater, payload)))
                }
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
