//! RFC 6455 framing rules over a real socket, on both adapters (Autobahn covers them in
//! CI too; these run with the suite and name the rule each one checks): fragmented
//! messages with control frames between the fragments, close-code validation, UTF-8
//! checked as fragments arrive, reserved bits and opcodes, and a peer that resets while
//! the server writes to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_e2e::{for_both_adapters, masked_frame, wait_until, Adapter, RawClient, RawFrame, TestServer, WAIT};

for_both_adapters!(
    fragments_with_control_frames_between_them_are_reassembled,
    close_codes_are_validated,
    utf8_fails_as_soon_as_a_fragment_breaks_it,
    reserved_bits_and_opcodes_fail_the_connection,
    a_peer_that_resets_mid_write_ends_cleanly,
);

/// Echoes text and binary on `/echo`; records each connection's close code as the
/// disconnect hook saw it. `flood` answers with 32 MiB in 64 KiB messages.
fn start(adapter: Adapter) -> (TestServer, Arc<Mutex<Vec<u16>>>) {
    let codes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&codes);
    let app = App::builder()
        .route(Route::new("/echo"))
        .on_text(|ctx, text| {
            if text == "flood" {
                let chunk = vec![7u8; 64 * 1024];
                for _ in 0..512 {
                    let _ = ctx.send_binary(&chunk);
                }
            } else {
                let _ = ctx.send_text(text);
            }
        })
        .on_binary(|ctx, data| {
            let _ = ctx.send_binary(data);
        })
        .on_disconnect(move |_, closed| seen.lock().expect("codes").push(closed.code.0))
        .build();
    (adapter.start(app), codes)
}

/// A masked client frame with `first` as its first byte: FIN, RSV1-3 and the opcode.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = masked_frame(first & 0x0f, payload);
    bytes[0] = first;
    bytes
}

fn next(raw: &mut RawClient, what: &str) -> RawFrame {
    match raw.read_frame(WAIT) {
        Ok(Some(frame)) => frame,
        other => panic!("{what}: expected a frame, got {other:?}"),
    }
}

/// Reads until the server's close frame: its code. Data frames before it fail the test
/// (nothing after a violation may be delivered); then the server must end the TCP
/// connection.
fn expect_close(raw: &mut RawClient, what: &str) -> u16 {
    let close = next(raw, what);
    assert_eq!(close.opcode, 0x8, "{what}: expected a close frame, got {close:?}");
    let code = close
        .close_code()
        .unwrap_or_else(|| panic!("{what}: a close without a code"));
    match raw.read_frame(WAIT) {
        Ok(None) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the server to end the connection, got {other:?}"),
    }
    code
}

/// RFC 6455 §5.4: control frames may come between the fragments of a message; the
/// message is delivered whole, the ping answered at once.
fn fragments_with_control_frames_between_them_are_reassembled(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut raw = RawClient::connect(server.addr(), "/echo");
    raw.send_raw(&frame(0x01, b"Hel")); // text, not final
    raw.send_raw(&frame(0x89, b"p")); // ping
    raw.send_raw(&frame(0x00, b"l")); // continuation, not final
    raw.send_raw(&frame(0x8A, b"unsolicited")); // pong: ignored
    raw.send_raw(&frame(0x80, b"o")); // continuation, final
    let pong = next(&mut raw, "pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"p"[..]), "{pong:?}");
    let echo = next(&mut raw, "echo");
    assert_eq!(
        (echo.opcode, echo.fin, echo.payload.as_slice()),
        (0x1, true, &b"Hello"[..])
    );
    // Binary in three fragments, a ping with an empty payload between two of them.
    raw.send_raw(&frame(0x02, &[1, 2]));
    raw.send_raw(&frame(0x89, b""));
    raw.send_raw(&frame(0x00, &[3]));
    raw.send_raw(&frame(0x80, &[4, 5]));
    let pong = next(&mut raw, "empty pong");
    assert_eq!((pong.opcode, pong.payload.len()), (0xA, 0));
    let echo = next(&mut raw, "binary echo");
    assert_eq!((echo.opcode, echo.payload), (0x2, vec![1, 2, 3, 4, 5]));
    server.shutdown();
}

/// RFC 6455 §7.4: a close carries a code a client may send, and a UTF-8 reason; the
/// server echoes a valid code and fails the connection with 1002 (1007 for the reason)
/// otherwise.
fn close_codes_are_validated(adapter: Adapter) {
    let (server, codes) = start(adapter);
    let close = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    let cases: [(&str, Vec<u8>, u16); 10] = [
        ("1000 with a reason", close(1000, b"bye"), 1000),
        ("4001, a private code", close(4001, b""), 4001),
        ("3000, a registered code", close(3000, b""), 3000),
        ("1005, never sent", close(1005, b""), 1002),
        ("1006, never sent", close(1006, b""), 1002),
        ("1015, never sent", close(1015, b""), 1002),
        ("999, below the range", close(999, b""), 1002),
        ("2000, reserved", close(2000, b""), 1002),
        ("5000, above the range", close(5000, b""), 1002),
        ("a reason that is not UTF-8", close(1000, &[0xff, 0xfe]), 1007),
    ];
    for (what, payload, expected) in &cases {
        let mut raw = RawClient::connect(server.addr(), "/echo");
        raw.send_raw(&frame(0x88, payload));
        assert_eq!(expect_close(&mut raw, what), *expected, "{adapter:?}: {what}");
    }
    // A one-byte close payload cannot hold a code.
    let mut raw = RawClient::connect(server.addr(), "/echo");
    raw.send_raw(&frame(0x88, &[0x03]));
    assert_eq!(expect_close(&mut raw, "a one-byte close"), 1002);
    assert!(server.wait_connections(0));
    assert!(
        wait_until(WAIT, || codes.lock().expect("codes").len() == cases.len() + 1),
        "one disconnect per connection: {:?}",
        codes.lock().expect("codes")
    );
    server.shutdown();
}

/// RFC 6455 §8.1: invalid UTF-8 fails the connection (1007) as soon as it is seen, not
/// when the message ends; a code point split across fragments is fine.
fn utf8_fails_as_soon_as_a_fragment_breaks_it(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut raw = RawClient::connect(server.addr(), "/echo");
    raw.send_raw(&frame(0x01, &[b'h', 0xC3])); // "h" and the first byte of "é"
    raw.send_raw(&frame(0x80, &[0xA9])); // its second byte, final
    let echo = next(&mut raw, "a split code point");
    assert_eq!(echo.payload, "hé".as_bytes());
    // Valid so far, then a byte that cannot follow: no final fragment is ever sent.
    raw.send_raw(&frame(0x01, b"fine"));
    raw.send_raw(&frame(0x00, &[0xF0, 0x28]));
    assert_eq!(expect_close(&mut raw, "invalid UTF-8 mid-message"), 1007, "{adapter:?}");
    server.shutdown();
}

/// RFC 6455 §5.2 and §5.5: reserved bits without an extension that defines them,
/// reserved opcodes, fragmented or oversized control frames, a continuation with
/// nothing to continue and a new message inside a fragmented one all fail the
/// connection with 1002.
fn reserved_bits_and_opcodes_fail_the_connection(adapter: Adapter) {
    let (server, _) = start(adapter);
    let cases: [(&str, Vec<u8>); 9] = [
        ("RSV1 without permessage-deflate", frame(0xC1, b"x")),
        ("RSV2", frame(0xA1, b"x")),
        ("RSV3", frame(0x91, b"x")),
        ("reserved data opcode 0x3", frame(0x83, b"x")),
        ("reserved control opcode 0xB", frame(0x8B, b"x")),
        ("a fragmented ping", frame(0x09, b"x")),
        ("a ping of 126 bytes", frame(0x89, &[0u8; 126])),
        ("a continuation with nothing to continue", frame(0x80, b"x")),
        (
            "a text frame inside a fragmented message",
            [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
        ),
    ];
    for (what, bytes) in &cases {
        let mut raw = RawClient::connect(server.addr(), "/echo");
        raw.send_raw(bytes);
        assert_eq!(expect_close(&mut raw, what), 1002, "{adapter:?}: {what}");
    }
    assert!(server.wait_connections(0));
    server.shutdown();
}

/// A client that asks for 32 MiB, reads a little and resets: the server's writes fail,
/// the connection ends once (1006, its disconnect hook), nothing else is disturbed.
fn a_peer_that_resets_mid_write_ends_cleanly(adapter: Adapter) {
    let (server, codes) = start(adapter);
    let mut raw = RawClient::connect(server.addr(), "/echo");
    raw.send_raw(&frame(0x81, b"flood"));
    let first = next(&mut raw, "the flood's first message");
    assert_eq!(first.payload.len(), 64 * 1024, "the flood flowed");
    raw.reset();
    assert!(
        wait_until(WAIT, || codes.lock().expect("codes").len() == 1),
        "the reset connection ended"
    );
    assert_eq!(*codes.lock().expect("codes"), [1006]);
    assert!(server.wait_connections(0));
    let mut other = RawClient::connect(server.addr(), "/echo");
    other.send_raw(&frame(0x81, b"still here"));
    assert_eq!(next(&mut other, "echo after the reset").payload, b"still here");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        codes.lock().expect("codes").len(),
        1,
        "one disconnect for one connection"
    );
    server.shutdown();
}
