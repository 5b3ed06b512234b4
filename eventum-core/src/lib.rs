//! The sans-io protocol core of eventum: the server side of WebSocket (RFC 6455) as a
//! pure state machine. No sockets, no threads, no clock, no async runtime: bytes and
//! the current time go in, events, bytes for the wire and the next deadline come out.
//!
//! ```text
//!            bytes read            ┌────────────────────┐  poll_event() → events (request,
//!  transport ─────────────────────▶│                    │──▶ text, binary, ping, pong, closed)
//!  (TCP, TLS,  handle_input(now)   │     Connection     │
//!   pipe, ...) ◀───────────────────│                    │◀── Commands (accept, respond, send,
//!            poll_transmit()       └────────────────────┘    deliver, ping, close)
//!            + transmitted(n)        ▲ handle_timeout(now)  │ poll_timeout() → deadline
//! ```
//!
//! # The driver loop
//!
//! Every adapter (`eventum-smol`, `eventum-std`, your own epoll or io_uring loop) runs
//! the same few steps for each connection:
//!
//! 1. read what the transport has (only while [`Connection::wants_read`]) and pass it to
//!    [`Connection::handle_input`]; on end of stream call [`Connection::handle_eof`], on
//!    a transport error [`Connection::handle_transport_error`];
//! 2. drain [`Connection::poll_event`] and act on each event with the [`Commands`] that
//!    come with it (answer the [`Event::UpgradeRequest`], handle messages, ...);
//! 3. write [`Connection::poll_transmit`] and report what was written with
//!    [`Connection::transmitted`];
//! 4. close the transport once [`Connection::should_close_transport`]; otherwise sleep
//!    until the transport is ready or [`Connection::poll_timeout`] passes, and call
//!    [`Connection::handle_timeout`] when it does.
//!
//! Every input takes the current time; so does every command that starts a timer.
//! Here that loop serves an echo over an in-memory byte pipe, with a scripted client:
//!
//! ```
//! use eventum_core::{frame, handshake::Accept, CloseCode, Config, Connection, Event};
//! use std::{collections::VecDeque, sync::Arc, time::Instant};
//!
//! // The client's bytes, as they would arrive from a socket.
//! let mut from_client: VecDeque<u8> = VecDeque::new();
//! from_client.extend(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n");
//! let mut frames = Vec::new();
//! frame::encode_client_frame(&mut frames, true, frame::OpCode::Text, b"hello", [1, 2, 3, 4]);
//! frame::encode_client_frame(&mut frames, true, frame::OpCode::Close, &1000u16.to_be_bytes(), [5, 6, 7, 8]);
//! from_client.extend(frames);
//! let mut to_client = Vec::new();
//!
//! let mut conn = Connection::new(Arc::new(Config::default()), Instant::now());
//! let mut closed = None;
//! while !conn.should_close_transport() {
//!     // 1. read (here: at most 7 bytes at a time, to show that chunking does not matter)
//!     let now = Instant::now();
//!     let n = from_client.len().min(7);
//!     let chunk: Vec<u8> = from_client.drain(..n).collect();
//!     if chunk.is_empty() {
//!         conn.handle_eof(now);
//!     } else {
//!         conn.handle_input(now, &chunk);
//!     }
//!     // 2. events, answered with the commands that come with them
//!     while let Some((event, mut commands)) = conn.poll_event() {
//!         match event {
//!             Event::UpgradeRequest(_) => commands.accept(now, Accept::new()).unwrap(),
//!             Event::Text(text) => commands.send_text(text).unwrap(),
//!             Event::Closed(how) => closed = Some(how),
//!             _ => {}
//!         }
//!     }
//!     // 3. write (a socket may take only a prefix; report what it took)
//!     let transmit = conn.poll_transmit();
//!     transmit.chunks().for_each(|chunk| to_client.extend_from_slice(chunk));
//!     let written = transmit.len();
//!     conn.transmitted(written);
//! }
//! assert!(to_client.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! assert!(to_client.ends_with(b"\x81\x05hello\x88\x02\x03\xe8")); // echo, then the close reply
//! assert_eq!(closed.unwrap().code, CloseCode::NORMAL);
//! ```
//!
//! # Two layers, and the driver kit
//!
//! [`Connection`] is the protocol alone: it never calls user code. The framework layer,
//! [`app`], runs an [`App`](app::App) of routes, middleware and event handlers on top
//! of it. The [`driver`] kit serves an app: an [`Endpoint`](driver::Endpoint) admits
//! connections as [`Session`](driver::Session)s, driven with the same loop as a
//! `Connection`, and delivers what sessions ask of each other (rooms, broadcasts, sends
//! by id). An adapter is only its runtime around the kit: `eventum-std/examples/custom_loop.rs`
//! is a complete one over mio in under 150 lines. With the `testing` feature, `testing`
//! runs apps in memory for tests.
//!
//! Two seams face outward, both without I/O: [`backplane`] is where several nodes share
//! rooms, broadcasts and sends by id (the `eventum-redis` crate plugs Redis in), and
//! [`observe`] lists what a server reports: a `debug` log line per connection and, with
//! the `metrics` feature, counters through the `metrics` facade.
//!
//! # Limits and defaults
//!
//! Every resource a peer can make the server spend is bounded by a [`Config`] setting:
//!
//! | limit | default | when crossed |
//! |---|---|---|
//! | request head bytes | 16 KiB | `431` |
//! | request header count | 100 | `431` |
//! | handshake time | 10 s | `408` |
//! | frame payload | 1 MiB | close 1009, before buffering it |
//! | message size | 1 MiB | close 1009, before buffering it; a compressed message by its inflated size, while inflating |
//! | output high/low water | 1 MiB / 256 KiB | [`Connection::wants_read`] pauses reading |
//! | output hard limit | 8 MiB | own sends fail [`SendError::Full`]; delivered frames: [`SlowConsumerPolicy`] |
//! | mailbox (frames and commands waiting for a session) | the output hard limit, in bytes | [`SlowConsumerPolicy`] |
//! | connections per server | 10 000 | `503` ([`driver::ServerOptions`]) |
//! | close handshake time | 5 s | the transport is dropped |
//! | keepalive | ping after 30 s of silence, 30 s to answer | close 1011 "keepalive timeout" |
//!
//! # Compression
//!
//! permessage-deflate (RFC 7692) is negotiated by default: every browser offers it. Each
//! message is compressed on its own in both directions, with zlib streams borrowed from a
//! small process-wide cache, so an idle connection holds no compression state; messages
//! under 128 bytes go uncompressed, and a broadcast is compressed once for all its
//! recipients. Invalid compressed data closes with 1007, RSV1 where it does not belong with
//! 1002. The settings, their measured costs and the per-connection override are on
//! [`handshake::DeflateConfig`]; [`Config::compression`] holds them.
//!
//! # Errors and panics
//!
//! Nothing the peer sends makes the core panic or return an error from an input method:
//! a bad request is answered with the HTTP status RFC 6455 prescribes (400, 426, 431) and
//! a protocol violation with a close frame carrying the RFC's code (1002, 1007, 1009);
//! both are reported as [`Event::Closed`] with a [`CloseCause`] holding the typed
//! [`HandshakeError`] or [`ProtocolError`]. Commands from the application return typed
//! errors ([`SendError`], [`CloseError`], [`ApiMisuse`]) that say what to change.
// Two exceptions, each allowed where it stands, each a measured hot spot:
// - `frame/mask.rs` calls its AVX-512 or AVX2 function after checking the CPU has that
//   feature (runtime feature dispatch; fuzzed by the `unmask` target, and each path tested
//   against the byte-wise reference);
// - `utf8::text` makes a `&str` of a payload it has just found to be all ASCII, without
//   std's second, slower check (fuzzed by the `connection` and `session` targets, and
//   tested against `std::str::from_utf8`).
#![deny(unsafe_code)]
#![deny(unused_must_use)]
#![warn(missing_docs, unreachable_pub)]

pub mod app;
pub mod backplane;
#[cfg(any(feature = "testing", feature = "fuzzing"))]
mod client_inflate;
mod close;
mod config;
mod connection;
mod deflate;
pub mod driver;
mod error;
mod event;
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod observe;
mod outbound;
#[cfg(feature = "testing")]
pub mod testing;
mod utf8;

pub use close::{CloseCode, MAX_CLOSE_REASON};
pub use config::{Config, ConfigBuilder, Keepalive, SlowConsumerPolicy};
pub use connection::{Commands, Connection};
pub use error::{ApiMisuse, CloseError, ConfigError, HandshakeError, ProtocolError, SendError};
pub use event::{CloseCause, Closed, Event, State};
pub use outbound::{SharedFrame, Transmit};
