//! The `handshake` target: a request head, then its outcome.

use std::sync::Arc;

use super::rfc6455_handshake::{self, Expected};
use super::*;
use crate::close::CloseCode;
use crate::config::Config;
use crate::event::{CloseCause, Closed, Event, State};
use crate::handshake::{accept_key, Accept, DeflateConfig, HttpResponse};

/// Header fields the target's server reads at most.
const MAX_HEADERS: usize = 32;

/// The request head of a fresh connection, then its outcome.
///
/// Input: one control byte, then the bytes from the peer. Control bit 7 turns on
/// `http_fallback`, bit 6 ends an incomplete head with EOF instead of the handshake timeout,
/// bits 0-5 seed the chunk sizes (0: one chunk). The outcome must be an upgrade request (accepted:
/// a parsable 101 with the RFC accept key and the first offered subprotocol), a plain
/// request (answered 200), or a `Closed` event with a parsable 4xx refusal; and, for a
/// request the independent model in `rfc6455_handshake` can read, the one it expects.
pub fn handshake(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let builder = Config::builder().max_head_bytes(HEAD_LIMIT).max_headers(MAX_HEADERS);
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
        Upgrade(String, Option<String>, Option<String>),
        Http,
        Closed(Closed),
    }
    let outcome = match conn.poll_event().map(|(event, _)| event) {
        Some(Event::UpgradeRequest(r)) => {
            let key = r.websocket_key().expect("a validated upgrade has a key").to_owned();
            let deflate = DeflateConfig::default().negotiate(r.extensions());
            let deflate = deflate.map(|n| n.response().to_owned());
            Outcome::Upgrade(key, r.subprotocols().first().cloned(), deflate)
        }
        Some(Event::HttpRequest(r)) => {
            assert!(control & 0x80 != 0 && !r.is_websocket_upgrade(), "plain request {r:?}");
            Outcome::Http
        }
        Some(Event::Closed(closed)) => Outcome::Closed(closed),
        other => panic!("unexpected first event {other:?}"),
    };
    // The independent reading of RFC 6455 §4.2.1, where it can read the request.
    if let Some(expected) = rfc6455_handshake::expected(input, control & 0x80 != 0, HEAD_LIMIT, MAX_HEADERS) {
        let actual = match &outcome {
            Outcome::Upgrade(..) => Expected::Upgrade,
            Outcome::Http => Expected::Http,
            Outcome::Closed(Closed {
                cause: CloseCause::Handshake(error),
                ..
            }) => Expected::Refused(error.status()),
            Outcome::Closed(closed) => panic!("a complete head ended as {closed:?}"),
        };
        assert_eq!(actual, expected, "the RFC 6455 §4.2.1 model disagrees");
    }
    let mut out = Vec::new();
    let mut closed_events = 0;
    match outcome {
        Outcome::Upgrade(key, protocol, deflate) => {
            let accept = protocol.iter().fold(Accept::new(), |a, p| a.subprotocol(p.as_str()));
            conn.commands()
                .accept(now, accept)
                .expect("accepting a validated upgrade");
            assert_eq!(conn.state(), State::Open);
            let extras = protocol.as_ref().map_or(0, String::len) + deflate.as_ref().map_or(0, String::len);
            assert!(conn.buffered_amount() <= 256 + extras);
            transmit_all(&mut conn, &mut out);
            let (status, headers, rest) = parse_response(&out);
            assert_eq!((status, rest), (101, &[][..]), "101 with nothing after it");
            let accept = header(&headers, "sec-websocket-accept");
            assert_eq!(accept, Some(accept_key(&key).as_bytes()), "Sec-WebSocket-Accept");
            let latin1 = protocol.map(|p| p.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect::<Vec<_>>());
            assert_eq!(header(&headers, "sec-websocket-protocol"), latin1.as_deref());
            let extensions = header(&headers, "sec-websocket-extensions");
            assert_eq!(extensions, deflate.as_deref().map(str::as_bytes), "permessage-deflate");
            assert_eq!(conn.compression().is_some(), deflate.is_some());
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
