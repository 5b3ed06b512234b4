//! Entry points for the fuzz targets in `fuzz/` and the corpus replay test (not public API).
//!
//! Each function takes arbitrary bytes and panics when an invariant of the core breaks: a
//! panic is a finding, and not panicking is only part of what is checked. The input format
//! each one reads is documented on it; the seed corpora in `fuzz/corpus/` follow it.

mod codec;
mod connection;
mod envelope;
mod handshake;
mod reference;
mod rfc6455_handshake;
mod session;

use std::sync::OnceLock;
use std::time::Instant;

use crate::connection::Connection;

pub use codec::{frame_header, unmask};
pub use connection::{connection, deflate};
pub use envelope::envelope;
pub use handshake::handshake;
pub use reference::reference;
pub use session::session;

/// `max_head_bytes` of [`handshake`], small so that oversized heads fit a fuzz input.
const HEAD_LIMIT: usize = 2048;
/// The most bytes [`connection`] hands to `handle_input` at once.
const MAX_READ: usize = 128;
/// The request [`connection`] opens with (RFC 6455 §1.2).
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// [`REQUEST`] offering permessage-deflate as Chromium does.
const REQUEST_DEFLATE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

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
