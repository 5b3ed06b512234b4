//! Replays the checked-in fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz entry
//! points, so every seed and every past crash stays a regression test on stable Rust.
//!
//! `cargo test -p eventum-core --test fuzz_corpus -- --ignored regenerate_seed_corpus`
//! rewrites the seeds from the generator below (files it does not name are left alone).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use eventum_core::frame::{encode_client_frame, OpCode};
use eventum_core::fuzzing;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("handshake", fuzzing::handshake),
    ("frame_header", fuzzing::frame_header),
    ("unmask", fuzzing::unmask),
    ("connection", fuzzing::connection),
    ("deflate", fuzzing::deflate),
    ("session", fuzzing::session),
    ("reference", fuzzing::reference),
    ("envelope", fuzzing::envelope),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs every file of `dir` through `target`; fails if there is none or any panics.
fn replay(dir: &Path, target: Target) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("readable corpus file");
            catch_unwind(AssertUnwindSafe(|| target(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn handshake_corpus() {
    replay(&corpus_dir("handshake"), fuzzing::handshake);
}

#[test]
fn frame_header_corpus() {
    replay(&corpus_dir("frame_header"), fuzzing::frame_header);
}

#[test]
fn unmask_corpus() {
    replay(&corpus_dir("unmask"), fuzzing::unmask);
}

#[test]
fn connection_corpus() {
    replay(&corpus_dir("connection"), fuzzing::connection);
}

#[test]
fn deflate_corpus() {
    replay(&corpus_dir("deflate"), fuzzing::deflate);
}

#[test]
fn reference_corpus() {
    replay(&corpus_dir("reference"), fuzzing::reference);
}

#[test]
fn session_corpus() {
    replay(&corpus_dir("session"), fuzzing::session);
}

#[test]
fn envelope_corpus() {
    replay(&corpus_dir("envelope"), fuzzing::envelope);
}

#[test]
fn empty_and_tiny_inputs() {
    for (_, target) in TARGETS {
        for data in [&[][..], &[0], &[0xFF], &[0x81, 0x80]] {
            target(data);
        }
    }
}

/// Runs one input file under the test harness (a plain backtrace, no sanitizer):
/// `FUZZ_INPUT=connection:$PWD/fuzz/artifacts/connection/crash-... cargo test -p eventum-core
/// --test fuzz_corpus replay_input -- --ignored` (an absolute path: tests run in `eventum-core/`).
#[test]
#[ignore = "needs FUZZ_INPUT=<target>:<file>"]
fn replay_input() {
    let spec = std::env::var("FUZZ_INPUT").expect("FUZZ_INPUT=<target>:<file>");
    let (name, file) = spec.split_once(':').expect("FUZZ_INPUT=<target>:<file>");
    let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).expect("a known target");
    target(&std::fs::read(file).expect("readable input"));
}

// --- regressions: crash inputs found by the fuzzers --------------------------------------

/// Replays one crash input from `fuzz/regressions/<target>/<name>`.
fn regression(target: Target, path: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(path);
    let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    target(&data);
}

/// A peer's close with code 1010 (which only a client may send) is echoed by the server.
/// Input: one 10-byte read, a masked close frame with payload `03 f2 ",7"`.
#[test]
fn close_code_1010_is_not_echoed() {
    regression(fuzzing::connection, "connection/close_code_1010_echoed");
}

/// Application pings bypass `max_backlog`: on a stalled transport, 4 pushes of 4004 bytes then
/// 200 `ping(b"fz")` buffer 16772 bytes against a 16384-byte backlog, and nothing stops more.
/// Input: `a2`, `a3` x4, `a1` x200.
#[test]
fn application_pings_respect_the_backlog() {
    regression(fuzzing::connection, "connection/app_ping_ignores_backlog");
}

/// While our close waits for its answer, a pong that would pass `max_backlog` makes the core
/// queue a second close frame (1008 "slow consumer") after the first (RFC 6455 §5.5.1: one
/// close only). Input: `a2 a5` (stalled, greedy driver), `a3` x4, `a0`, then six reads of a
/// masked 100-byte ping.
#[test]
fn no_second_close_frame_while_closing() {
    regression(fuzzing::connection, "connection/second_close_while_closing");
}

/// A finding in the `deflate` target's own checker, not in the core: a compressed echo whose
/// inflated size filled the checker's buffer exactly was reported as "no progress". Input:
/// settings `08` (threshold 0), then fragments of a compressed text message.
#[test]
fn deflate_checker_output_filled_exactly() {
    regression(fuzzing::deflate, "deflate/output_filled_exactly");
}

// --- the seed generator -----------------------------------------------------------------

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// What Chromium sends for `new WebSocket("ws://localhost:8080/chat")`.
const CHROMIUM_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: localhost:8080\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://localhost:8080\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// What Firefox sends for `new WebSocket("ws://localhost:8080/chat?room=1", ["chat", "superchat"])`.
const FIREFOX_REQUEST: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: localhost:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\nAccept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nSec-WebSocket-Version: 13\r\n\
Origin: http://localhost:8080\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Key: E4WSEcseoWr4csPLS2QJHA==\r\n\
Connection: keep-alive, Upgrade\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-origin\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n";

fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(&mut out, fin, opcode, payload, KEY);
    out
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    masked(true, OpCode::Close, &[&code.to_be_bytes()[..], reason].concat())
}

/// `bytes` as `connection` reads of at most `size` (1..=128) bytes each.
fn reads(bytes: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(size) {
        out.push(u8::try_from(chunk.len() - 1).expect("read of at most 128 bytes"));
        out.extend_from_slice(chunk);
    }
    out
}

/// A request with `line` replacing the line that starts like it (or added before the end).
fn rfc_with(name: &str, line: &str) -> Vec<u8> {
    let mut lines: Vec<&str> = RFC_REQUEST.trim_end().split("\r\n").collect();
    match lines.iter().position(|l| l.starts_with(name)) {
        Some(i) if line.is_empty() => {
            lines.remove(i);
        }
        Some(i) => lines[i] = line,
        None => lines.push(line),
    }
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

fn handshake_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let hello = masked(true, OpCode::Text, b"Hello");
    let huge = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(3000));
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let with = |control: u8, head: &[u8]| [&[control][..], head].concat();
    vec![
        ("rfc6455_sample", with(0, RFC_REQUEST.as_bytes())),
        ("rfc6455_sample_bytewise", with(1, RFC_REQUEST.as_bytes())),
        ("chromium", with(7, CHROMIUM_REQUEST.as_bytes())),
        ("firefox", with(13, FIREFOX_REQUEST.as_bytes())),
        (
            "pipelined_frames",
            with(0, &[RFC_REQUEST.as_bytes(), &hello, &close(1000, b"")].concat()),
        ),
        (
            "version_8",
            with(0, &rfc_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")),
        ),
        ("no_key", with(0, &rfc_with("Sec-WebSocket-Key", ""))),
        (
            "short_key",
            with(0, &rfc_with("Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ=")),
        ),
        (
            "two_keys",
            with(0, &rfc_with("X", "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==")),
        ),
        ("no_host", with(0, &rfc_with("Host", ""))),
        (
            "connection_keep_alive",
            with(0, &rfc_with("Connection", "Connection: keep-alive")),
        ),
        ("post", with(0, RFC_REQUEST.replacen("GET", "POST", 1).as_bytes())),
        (
            "http10",
            with(0, RFC_REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1).as_bytes()),
        ),
        (
            "absolute_target",
            with(0, RFC_REQUEST.replacen("/chat", "http://a/chat", 1).as_bytes()),
        ),
        ("huge_header", with(0, huge.as_bytes())),
        (
            "too_many_headers",
            with(5, format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()),
        ),
        ("plain_http", with(0, b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n")),
        (
            "plain_http_fallback",
            with(0x80, b"GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ),
        ("incomplete_then_timeout", with(3, &RFC_REQUEST.as_bytes()[..60])),
        ("incomplete_then_eof", with(0x40, &RFC_REQUEST.as_bytes()[..60])),
        ("bare_lf", with(0, RFC_REQUEST.replace("\r\n", "\n").as_bytes())),
        (
            "tls_client_hello",
            with(0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        ),
    ]
}

fn frame_header_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut bin256 = vec![0x82, 0x7E, 0x01, 0x00];
    bin256.extend_from_slice(&[0xAB; 256]);
    vec![
        ("rfc_unmasked_hello", b"\x81\x05Hello".to_vec()),
        ("rfc_masked_hello", masked(true, OpCode::Text, b"Hello")),
        ("rfc_fragment_1", b"\x01\x03Hel".to_vec()),
        ("rfc_fragment_2", b"\x80\x02lo".to_vec()),
        ("rfc_unmasked_ping", b"\x89\x05Hello".to_vec()),
        ("rfc_masked_pong", masked(true, OpCode::Pong, b"Hello")),
        ("rfc_binary_256", bin256),
        ("rfc_binary_64k_header", vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
        (
            "masked_64bit_len",
            vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
        ("length_top_bit", vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1]),
        (
            "non_minimal_16bit",
            vec![0x81, 0xFE, 0, 5, 1, 2, 3, 4, b'a', b'b', b'c', b'd', b'e'],
        ),
        ("rsv1", vec![0xC1, 0x80, 0, 0, 0, 0]),
        ("rsv2_rsv3", vec![0xB1, 0x80, 0, 0, 0, 0]),
        ("reserved_opcode_3", vec![0x83, 0x80, 0, 0, 0, 0]),
        ("reserved_opcode_b", vec![0x8B, 0x80, 0, 0, 0, 0]),
        ("fragmented_ping", vec![0x09, 0x80, 0, 0, 0, 0]),
        ("control_too_long", vec![0x89, 0xFE, 0, 126]),
        ("close_1byte", masked(true, OpCode::Close, &[3])),
    ]
}

fn unmask_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |offset: u64, split: u8, len: usize| {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        [&KEY[..], &offset.to_le_bytes(), &[split], &payload].concat()
    };
    vec![
        (
            "rfc_hello",
            [&KEY[..], &[0; 8], &[0], &[0x7f, 0x9f, 0x4d, 0x51, 0x58]].concat(),
        ),
        ("empty", seed(0, 0, 0)),
        ("len7_offset1", seed(1, 128, 7)),
        ("len9_offset2", seed(2, 40, 9)),
        ("len100_offset3", seed(3, 200, 100)),
        ("len1000_offset_max", seed(u64::MAX, 99, 1000)),
        ("len4096_split_end", seed(6, 255, 4096)),
    ]
}

fn connection_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &[u8]| masked(true, OpCode::Text, s);
    let ping = |s: &[u8]| masked(true, OpCode::Ping, s);
    let fragmented = [
        masked(false, OpCode::Text, b"Hel"),
        ping(b"p1"),
        masked(false, OpCode::Continuation, b"lo, "),
        masked(true, OpCode::Pong, b"unsolicited"),
        ping(b""),
        masked(true, OpCode::Continuation, "wörld".as_bytes()),
    ]
    .concat();
    let big: Vec<u8> = (0..20_000).map(|i| i as u8).collect();
    let long_len = [&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3][..], &KEY, b"abc"].concat();
    let too_big = [&[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1][..], &KEY].concat();
    let bye = close(1000, b"bye");
    let stall_pushes = [vec![0xA2], vec![0xA3; 5], reads(&text(b"late"), 128)].concat();
    vec![
        ("rfc_hello", reads(&text(b"Hello"), 128)),
        ("rfc_hello_bytewise", reads(&text(b"Hello"), 1)),
        (
            "rfc_fragmented_hello",
            reads(
                &[
                    masked(false, OpCode::Text, b"Hel"),
                    masked(true, OpCode::Continuation, b"lo"),
                ]
                .concat(),
                128,
            ),
        ),
        ("fragmented_with_pings", reads(&fragmented, 7)),
        ("binary_256", reads(&masked(true, OpCode::Binary, &[0xAB; 256]), 100)),
        (
            "binary_20000_too_large_to_echo",
            reads(&masked(true, OpCode::Binary, &big), 128),
        ),
        ("binary_64bit_length", reads(&long_len, 128)),
        ("frame_over_limit", reads(&too_big, 128)),
        ("close_normal", reads(&[text(b"hi"), bye.clone()].concat(), 128)),
        ("close_empty", reads(&masked(true, OpCode::Close, b""), 128)),
        ("close_1byte", reads(&masked(true, OpCode::Close, &[3]), 128)),
        ("close_code_1005", reads(&close(1005, b""), 128)),
        ("close_code_999", reads(&close(999, b""), 128)),
        ("close_code_5000", reads(&close(5000, b"x"), 128)),
        ("close_code_4999", reads(&close(4999, "résumé".as_bytes()), 128)),
        ("close_reason_invalid_utf8", reads(&close(1000, b"\xff\xfe"), 128)),
        (
            "text_invalid_utf8",
            reads(
                &text(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
                128,
            ),
        ),
        (
            "text_invalid_utf8_across_fragments",
            reads(
                &[
                    masked(false, OpCode::Text, b"\xce"),
                    masked(true, OpCode::Continuation, b"\x41"),
                ]
                .concat(),
                3,
            ),
        ),
        ("unmasked_frame", reads(b"\x81\x05Hello", 128)),
        ("reserved_opcode", reads(&[0x83, 0x80, 0, 0, 0, 0], 128)),
        (
            "continuation_without_message",
            reads(&masked(true, OpCode::Continuation, b"x"), 128),
        ),
        (
            "server_close_answered",
            [vec![0xA0], reads(&[text(b"dropped"), bye].concat(), 128)].concat(),
        ),
        ("server_close_unanswered", vec![0xA0, 0x85]),
        ("keepalive_ping_then_1011", vec![0x9F, 0x9F]),
        (
            "keepalive_answered",
            [vec![0x9F], reads(&masked(true, OpCode::Pong, b""), 128), vec![0x9F]].concat(),
        ),
        (
            "app_ping_and_partial_writes",
            [vec![0xA2, 0xA1, 0xA4, 0xA1, 0xFF], reads(&ping(b"x"), 2)].concat(),
        ),
        ("slow_consumer_push", stall_pushes),
        (
            "ping_flood_stalled",
            [vec![0xA2], reads(&ping(&[7; 125]).repeat(150), 128)].concat(),
        ),
        (
            "ping_flood_greedy",
            [vec![0xA2, 0xA5], reads(&ping(&[7; 100]).repeat(200), 128)].concat(),
        ),
    ]
}

/// Client byte streams for the `reference` target (control byte: chunk seed).
fn reference_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let with = |control: u8, parts: &[&[u8]]| [&[control][..], &parts.concat()].concat();
    let text = |t: &[u8]| masked(true, OpCode::Text, t);
    let big = vec![b'x'; 70_000];
    vec![
        (
            "echo_ping_close",
            with(
                0,
                &[&text(b"Hello"), &masked(true, OpCode::Ping, b"p"), &close(1000, b"bye")],
            ),
        ),
        (
            "fragments_and_ping",
            with(
                3,
                &[
                    &masked(false, OpCode::Text, "h\u{e9}".as_bytes()),
                    &masked(true, OpCode::Ping, b""),
                    &masked(true, OpCode::Continuation, b"llo"),
                ],
            ),
        ),
        (
            "invalid_utf8_fragment",
            with(
                1,
                &[
                    &masked(false, OpCode::Text, &[0xce, 0xba, 0xf4, 0x90]),
                    &masked(true, OpCode::Continuation, b"x"),
                ],
            ),
        ),
        ("unmasked", with(0, &[&text(b"ok"), &[0x81, 0x02, b'n', b'o']])),
        ("reserved_opcode", with(2, &[&[0x83, 0x80, 1, 2, 3, 4]])),
        ("too_big", with(0, &[&masked(true, OpCode::Binary, &big)])),
        ("close_1010_and_bad_code", with(0, &[&close(1010, b"")])),
        ("close_invalid_code", with(0, &[&close(1005, b"")])),
        ("close_bad_reason", with(0, &[&close(1000, &[0xff])])),
        (
            "truncated_frame",
            with(5, &[&text(b"whole"), &masked(true, OpCode::Text, b"cut short")[..8]]),
        ),
        (
            "continuation_without_start",
            with(0, &[&masked(true, OpCode::Continuation, b"x")]),
        ),
    ]
}

/// A client message compressed as RFC 7692 §7.2.1 says (raw DEFLATE, sync flush, tail cut).
fn compressed(message: &[u8], compress: &mut flate2::Compress) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    compress
        .compress_vec(message, &mut out, flate2::FlushCompress::Sync)
        .expect("compresses");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "room for the whole flush");
    out.truncate(out.len() - 4);
    out
}

/// A masked frame with RSV1 (a compressed message's first frame).
fn rsv1(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked(fin, opcode, payload);
    frame[0] |= 0x40;
    frame
}

/// The `deflate` target: a settings byte, then `connection`'s commands, with compressed
/// client messages (RFC 7692's vectors among them) in every shape the codec must handle.
fn deflate_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let fresh = || flate2::Compress::new(flate2::Compression::default(), false);
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let json: String = (0..40).map(|i| format!(r#"{{"event":"say","n":{i}}}"#)).collect();
    let json_z = compressed(json.as_bytes(), &mut fresh());
    let mut keep = fresh();
    let first = compressed(b"context is kept, context is kept", &mut keep);
    let again = compressed(b"context is kept, context is kept", &mut keep);
    let bomb = compressed(&vec![0u8; 256 << 10], &mut fresh());
    let bad_utf8 = compressed(b"ok \xff\xfe", &mut fresh());
    let (a, b) = json_z.split_at(json_z.len() / 2);
    let frames = |parts: &[&[u8]]| parts.concat();
    let with =
        |settings: u8, size: usize, wire: &[u8], tail: &[u8]| [&[settings][..], &reads(wire, size), tail].concat();
    vec![
        ("rfc7692_hello", with(0, 128, &rsv1(true, OpCode::Text, &hello), &[])),
        (
            "rfc7692_hello_stored_and_fragmented",
            with(
                0,
                5,
                &frames(&[
                    &rsv1(
                        true,
                        OpCode::Text,
                        &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o'],
                    ),
                    &rsv1(false, OpCode::Text, &hello[..3]),
                    &masked(true, OpCode::Continuation, &hello[3..]),
                ]),
                &[],
            ),
        ),
        (
            "json_fragmented_with_ping",
            with(
                8,
                17,
                &frames(&[
                    &rsv1(false, OpCode::Text, a),
                    &masked(true, OpCode::Ping, b"p"),
                    &masked(true, OpCode::Continuation, b),
                ]),
                &[],
            ),
        ),
        (
            "client_context_takeover",
            with(
                2,
                128,
                &frames(&[&rsv1(true, OpCode::Binary, &first), &rsv1(true, OpCode::Binary, &again)]),
                &[],
            ),
        ),
        (
            "server_context_takeover_and_broadcast",
            with(1 | 8, 64, &rsv1(true, OpCode::Text, &json_z), &[0xA3, 0xA3, 0xA2, 0xA3]),
        ),
        (
            "small_window_and_closes",
            with(4, 128, &rsv1(true, OpCode::Text, &json_z), &[0xA0]),
        ),
        ("bomb", with(0, 128, &rsv1(true, OpCode::Binary, &bomb), &[])),
        (
            "invalid_utf8_inflated",
            with(0, 128, &rsv1(true, OpCode::Text, &bad_utf8), &[]),
        ),
        (
            "reserved_block_type",
            with(0, 128, &rsv1(true, OpCode::Text, &[0x06, 0x00]), &[]),
        ),
        ("rsv1_on_ping", with(0, 128, &rsv1(true, OpCode::Ping, b""), &[])),
        (
            "rsv1_on_continuation",
            with(
                0,
                128,
                &frames(&[
                    &rsv1(false, OpCode::Text, &hello[..3]),
                    &rsv1(true, OpCode::Continuation, &hello[3..]),
                ]),
                &[],
            ),
        ),
        (
            "plain_message_between",
            with(
                0,
                128,
                &frames(&[&masked(true, OpCode::Text, b"plain"), &rsv1(true, OpCode::Text, &hello)]),
                &[],
            ),
        ),
    ]
}

/// Client events of the `session` target's sample app, then a close.
/// Envelopes of every shape, and the edges where a hand-written reader could part from
/// serde_json: escapes, duplicates, `null`s, numbers out of range, nesting at the limits.
fn envelope_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
    vec![
        ("flat", r#"{"event":"join","room":"a"}"#.to_owned()),
        (
            "data_id",
            r#" {"id":{"k":[1]},"event":"get","data":{"a":[1,2.5e3,"x"]}} "#.to_owned(),
        ),
        ("ack", r#"{"ack":3,"data":null}"#.to_owned()),
        ("ack_not_u64", r#"{"ack":-1}"#.to_owned()),
        (
            "escaped",
            r#"{"\u0065vent":"a\"b\u00e9","d\u0061ta":"\ud83d\ude00"}"#.to_owned(),
        ),
        ("lone_surrogate", r#"{"event":"\ud800","x":"\udc00"}"#.to_owned()),
        ("duplicate", r#"{"event":"a","data":1,"data":2}"#.to_owned()),
        ("nulls", r#"{"event":null,"id":null,"ack":null,"data":null}"#.to_owned()),
        ("out_of_range", r#"{"event":"a","id":1e400,"x":1e400}"#.to_owned()),
        ("wrong_types", r#"{"event":["a"],"ack":"1"}"#.to_owned()),
        ("truncated", r#"{"event":"a","data":[1,{"b":"#.to_owned()),
        ("not_an_object", r#"[{"event":"a"}]"#.to_owned()),
        ("id_deep", format!(r#"{{"event":"a","id":{}}}"#, nested(127))),
        ("data_deep", format!(r#"{{"event":"a","data":{}}}"#, nested(127))),
        ("too_deep", format!(r#"{{"event":"a","x":{}}}"#, nested(200))),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.into_bytes()))
    .collect()
}

fn session_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let text = |t: &str| masked(true, OpCode::Text, t.as_bytes());
    let events = [
        r#"{"event":"join","room":"a"}"#,
        r#"{"event":"say","room":"a","text":"hi"}"#,
        r#"{"event":"say","room":"lobby","text":"to the lobby"}"#,
        r#"{"event":"echo","id":7,"x":[1,2]}"#,
        r#"{"event":"ask"}"#,
        r#"{"ack":1,"data":"yes"}"#,
        r#"{"event":"all"}"#,
        r#"{"event":"dm","to":1}"#,
        r#"{"event":"later"}"#,
        r#"{"event":"leave","room":"a"}"#,
        r#"{"event":"join","room":5}"#,
    ];
    let chat: Vec<u8> = events.iter().flat_map(|e| text(e)).collect();
    let fragmented = [
        masked(false, OpCode::Text, br#"{"event":"sa"#),
        masked(true, OpCode::Ping, b"p"),
        masked(true, OpCode::Continuation, br#"y","room":"lobby","text":"x"}"#),
    ]
    .concat();
    let with = |control: u8, parts: &[&[u8]]| [&[control][..], &parts.concat()].concat();
    vec![
        ("chat_then_close", with(0, &[&chat, &close(1000, b"bye")])),
        ("chat_in_small_chunks", with(3, &[&chat, &close(1001, b"")])),
        ("chat_dropped_midway", with(0x40 | 5, &[&chat, &chat])),
        ("ack_times_out", with(0x80 | 9, &[&text(r#"{"event":"ask"}"#), &chat])),
        ("fragmented_event", with(1, &[&fragmented, &close(1000, b"")])),
        ("handler_panics", with(0, &[&text(r#"{"event":"boom"}"#), &chat])),
        (
            "app_closes",
            with(2, &[&text(r#"{"event":"close"}"#), &close(3000, b"")]),
        ),
        (
            "binary_and_invalid",
            with(
                4,
                &[
                    &masked(true, OpCode::Binary, &[0, 1, 2]),
                    &text("not json"),
                    &[0x81, 0x05],
                ],
            ),
        ),
    ]
}

#[test]
#[ignore = "writes the seed corpus; run by hand after changing the generator"]
fn regenerate_seed_corpus() {
    let sets = [
        ("handshake", handshake_seeds()),
        ("frame_header", frame_header_seeds()),
        ("unmask", unmask_seeds()),
        ("connection", connection_seeds()),
        ("deflate", deflate_seeds()),
        ("session", session_seeds()),
        ("reference", reference_seeds()),
        ("envelope", envelope_seeds()),
    ];
    for (target, seeds) in sets {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (name, data) in seeds {
            std::fs::write(dir.join(name), data).expect("seed written");
        }
    }
}
