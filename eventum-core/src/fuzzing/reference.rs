//! The `reference` target: an opened echo connection fed arbitrary client bytes, compared
//! with an independent model of RFC 6455 §5 written here from the RFC, without the core's
//! decoder: the messages delivered, the pongs, and the close frame (its code) must be
//! exactly what the model predicts for the same bytes.

use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::event::Event;
use crate::handshake::Accept;

/// Frame and message limit of the echo server (and the model).
const LIMIT: usize = 64 << 10;

/// What a server must send after its 101 for a client byte stream.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    /// Echoes of complete messages and pongs for pings, in order: (opcode, payload).
    frames: Vec<(u8, Vec<u8>)>,
    /// The close frame: `None` when the stream ends without one (the transport ended),
    /// `Some(None)` for an empty close, `Some(Some(code))` otherwise.
    close: Option<Option<u16>>,
}

/// The model: RFC 6455 §5.2–5.7 and §7.4 read directly, over the whole input at once.
///
/// * a frame with an RSV bit (§5.2, no extension), a reserved opcode, a control frame that
///   is fragmented or longer than 125 bytes (§5.5), an unmasked frame (§5.1), a 64-bit
///   length with its top bit set (§5.2), a continuation with no message, or a new message
///   inside one (§5.4): close 1002;
/// * a frame or message over the limit: close 1009, decided from the header;
/// * text that cannot be UTF-8 (§8.1), as soon as the bytes so far show it: close 1007;
/// * a ping: a pong with its payload (§5.5.2); a pong: nothing;
/// * a close (§5.5.1): 1 byte of payload, or a code not allowed on the wire (§7.4), is
///   1002; a reason that is not UTF-8 is 1007; otherwise the server answers with the same
///   code (1000 for 1010, which only clients send) or an empty close, and stops;
/// * the input ending inside a frame or a message: no close frame (after checking the
///   text that did arrive).
///
/// Lenient where the RFC binds only the sender: a length not encoded in the fewest bytes
/// is accepted.
fn model(input: &[u8]) -> Expected {
    let mut frames = Vec::new();
    let fail = |frames: Vec<(u8, Vec<u8>)>, code: u16| Expected {
        frames,
        close: Some(Some(code)),
    };
    // The message in progress: whether it is text, and its bytes so far.
    let mut message: Option<(bool, Vec<u8>)> = None;
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        let Some(&b0) = rest.first() else {
            return Expected { frames, close: None };
        };
        let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0f);
        let control = opcode >= 8;
        if rsv != 0 || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) || (control && !fin) {
            return fail(frames, 1002);
        }
        let Some(&b1) = rest.get(1) else {
            return Expected { frames, close: None };
        };
        let len7 = usize::from(b1 & 0x7f);
        if control && len7 > 125 {
            return fail(frames, 1002);
        }
        if b1 & 0x80 == 0 {
            return fail(frames, 1002);
        }
        let (len, mut at) = match len7 {
            126 => match rest.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Expected { frames, close: None },
            },
            127 => {
                if rest.get(2).is_some_and(|b| b & 0x80 != 0) {
                    return fail(frames, 1002);
                }
                match rest.get(2..10) {
                    Some(b) => (b.iter().fold(0u64, |n, &x| n << 8 | u64::from(x)), 10),
                    None => return Expected { frames, close: None },
                }
            }
            n => (n as u64, 2),
        };
        let Some(key) = rest.get(at..at + 4) else {
            return Expected { frames, close: None };
        };
        let key = [key[0], key[1], key[2], key[3]];
        at += 4;
        if !control {
            if (opcode == 0) != message.is_some() {
                return fail(frames, 1002);
            }
            let so_far = message.as_ref().map_or(0, |(_, m)| m.len()) as u64;
            if len > LIMIT as u64 || so_far + len > LIMIT as u64 {
                return fail(frames, 1009);
            }
        }
        // Whatever of the payload arrived, unmasked (RFC 6455 §5.3: byte i ^ key[i % 4]).
        let available = rest.len().saturating_sub(at).min(len as usize);
        let payload: Vec<u8> = rest[at..at + available]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        let complete = available as u64 == len;
        if !control {
            let text = match &message {
                Some((text, _)) => *text,
                None => opcode == 1,
            };
            let (_, bytes) = message.get_or_insert((text, Vec::new()));
            bytes.extend_from_slice(&payload);
            // Fail fast: bytes that no continuation can make UTF-8.
            if text && std::str::from_utf8(bytes).is_err_and(|e| e.error_len().is_some()) {
                return fail(frames, 1007);
            }
            if !complete {
                return Expected { frames, close: None };
            }
            if fin {
                let (text, bytes) = message.take().unwrap_or_default();
                if text && std::str::from_utf8(&bytes).is_err() {
                    return fail(frames, 1007);
                }
                frames.push((if text { 1 } else { 2 }, bytes));
            }
        } else if !complete {
            return Expected { frames, close: None };
        } else if opcode == 9 {
            frames.push((0xA, payload));
        } else if opcode == 8 {
            return match payload.len() {
                0 => Expected {
                    frames,
                    close: Some(None),
                },
                1 => fail(frames, 1002),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                    if !allowed {
                        fail(frames, 1002)
                    } else if std::str::from_utf8(&payload[2..]).is_err() {
                        fail(frames, 1007)
                    } else {
                        fail(frames, if code == 1010 { 1000 } else { code })
                    }
                }
            };
        }
        pos += at + available;
    }
}

/// The server's frames after the 101, as the model describes them.
fn observed(wire: &[u8]) -> Expected {
    let (mut frames, mut close, mut pos) = (Vec::new(), None, 0);
    while pos < wire.len() {
        let header = &wire[pos..];
        assert!(header.len() >= 2, "a truncated frame at the end of the output");
        assert!(
            header[0] & 0x80 != 0 && header[1] & 0x80 == 0,
            "server frames are final and unmasked"
        );
        let (len, at) = match header[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([header[2], header[3]])), 4),
            127 => (header[2..10].iter().fold(0usize, |n, &x| n << 8 | usize::from(x)), 10),
            n => (usize::from(n), 2),
        };
        let payload = header.get(at..at + len).expect("a whole frame").to_vec();
        pos += at + len;
        match header[0] & 0x0f {
            8 => {
                close = Some(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])));
                assert_eq!(pos, wire.len(), "frames after the server's close");
            }
            opcode => frames.push((opcode, payload)),
        }
    }
    Expected { frames, close }
}

/// An opened echo connection fed `data` after its upgrade, compared with `model` (below).
///
/// Input: one control byte (bits 0-5 seed the chunk sizes, 0: one chunk; bit 6 lends
/// each chunk's buffer rather than copying it), then the client's bytes. The output is drained after every chunk, so nothing waits on
/// backpressure; the input ends with EOF.
pub fn reference(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let config = Config::builder()
        .max_frame_size(LIMIT)
        .max_message_size(LIMIT)
        .water_marks(8 << 20, 1 << 20)
        .max_backlog(16 << 20)
        .build()
        .expect("config");
    let now = epoch();
    let mut conn = Connection::new(Arc::new(config), now);
    conn.handle_input(now, REQUEST);
    if let Some((Event::UpgradeRequest(_), mut commands)) = conn.poll_event() {
        commands.accept(now, Accept::new()).expect("accept");
    }
    let mut response = Vec::new();
    transmit_all(&mut conn, &mut response);
    let mut wire = Vec::new();
    let pump = |conn: &mut Connection, wire: &mut Vec<u8>| {
        while let Some((event, mut commands)) = conn.poll_event() {
            let _ = match event {
                Event::Text(text) => commands.send_text(text),
                Event::Binary(data) => commands.send_binary(data),
                _ => Ok(()),
            };
        }
        transmit_all(conn, wire);
    };
    // Bit 6: each chunk goes through `lend_input` (decoded where it lies, as the event
    // loops hand their read buffer in) rather than `handle_input`.
    let lend = control & 0x40 != 0;
    let mut buffer = Vec::new();
    for chunk in chunks(input, control & 0x3F) {
        if lend {
            buffer.extend_from_slice(chunk);
            conn.lend_input(now, &mut buffer);
            pump(&mut conn, &mut wire);
            conn.give_back_input(&mut buffer);
            assert!(buffer.is_empty(), "the read buffer comes back empty");
        } else {
            conn.handle_input(now, chunk);
            pump(&mut conn, &mut wire);
        }
    }
    conn.handle_eof(now);
    pump(&mut conn, &mut wire);
    assert!(conn.should_close_transport(), "not closed after EOF");
    assert_eq!(
        observed(&wire),
        model(input),
        "the server differs from the RFC 6455 model"
    );
}
