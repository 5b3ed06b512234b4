//! Core micro-benchmarks, each eventum workload beside the same workload for tungstenite
//! (driven over an in-memory stream, no sockets) or, for unmasking, beside a plain copy of
//! the same buffer. Every benchmark runs in several short passes (`EVENTUM_BENCH_PASSES`,
//! default 3); after the run a table of ratios (reference median / eventum median within a
//! pass, then the median over passes) is printed and saved to
//! `<criterion dir>/eventum-ratios.md`.
//!
//! `cargo bench -p eventum-benches` (add `-- <filter>` for one group; see benches/README.md).
#![allow(clippy::disallowed_methods)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::hint::black_box;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use eventum_benches::report::{self, Comparison};
use eventum_benches::{client_deflate, client_frames, json_message, MemStream, BROWSER_REQUEST};
use eventum_core::app::{App, Route};
use eventum_core::driver::{Endpoint, Session};
use eventum_core::frame::{apply_mask, OpCode};
use eventum_core::handshake::{Accept, DeflateConfig};
use eventum_core::{Config, Connection, Event, SharedFrame};
use serde::Deserialize;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Bytes, Message};

/// Payload sizes of the decode and encode workloads.
const SIZES: [usize; 4] = [16, 1024, 64 * 1024, 1 << 20];

/// Messages per iteration for `size`-byte payloads: about 1 MiB of payload.
fn count_for(size: usize) -> usize {
    ((1 << 20) / size).max(1)
}

/// Limits that admit the 1 MiB workloads, with room to queue a whole iteration's output;
/// uncompressed (the browser request offers permessage-deflate), as tungstenite runs.
fn config() -> Arc<Config> {
    config_with(DeflateConfig::disabled())
}

fn config_with(compression: DeflateConfig) -> Arc<Config> {
    Arc::new(
        Config::builder()
            .max_frame_size(2 << 20)
            .max_message_size(2 << 20)
            .water_marks(8 << 20, 1 << 20)
            .max_backlog(16 << 20)
            .compression(compression)
            .build()
            .expect("valid benchmark limits"),
    )
}

/// An eventum connection past its handshake.
fn open_connection(config: &Arc<Config>) -> Connection {
    let now = Instant::now();
    let mut conn = Connection::new(Arc::clone(config), now);
    conn.handle_input(now, BROWSER_REQUEST);
    while conn.poll_event().is_some() {}
    conn.commands().accept(now, Accept::new()).expect("upgrade accepted");
    transmit_connection(&mut conn, &mut Vec::new());
    conn
}

/// Appends everything the connection has for the wire to `sink`, as a driver writes it;
/// returns how many bytes.
fn transmit_connection(conn: &mut Connection, sink: &mut Vec<u8>) -> usize {
    let transmit = conn.poll_transmit();
    transmit.chunks().for_each(|chunk| sink.extend_from_slice(chunk));
    let n = transmit.len();
    conn.transmitted(n);
    n
}

/// The same for a session.
fn transmit_session(session: &mut Session, sink: &mut Vec<u8>) -> usize {
    let transmit = session.poll_transmit();
    transmit.chunks().for_each(|chunk| sink.extend_from_slice(chunk));
    let n = transmit.len();
    session.transmitted(n);
    n
}

/// A session of `app` past its handshake (the endpoint is leaked: benches run once).
fn open_session(app: &App) -> Session {
    let now = Instant::now();
    let mut session = Endpoint::new(app.clone()).admit(now, None).expect("a free slot");
    session.handle_input(now, BROWSER_REQUEST);
    let mut sink = Vec::new();
    transmit_session(&mut session, &mut sink);
    assert!(sink.starts_with(b"HTTP/1.1 101 "), "the app accepts the upgrade");
    session
}

/// A tungstenite server socket over `input` (already past the handshake).
fn tungstenite_server(input: Vec<u8>) -> WebSocket<MemStream> {
    WebSocket::from_raw_socket(MemStream::new(input), Role::Server, None)
}

/// Reads every message tungstenite has until the stream would block.
fn tungstenite_read_all(ws: &mut WebSocket<MemStream>, mut each: impl FnMut(&mut WebSocket<MemStream>, Message)) {
    loop {
        match ws.read() {
            Ok(message) => each(ws, message),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("tungstenite: {e}"),
        }
    }
}

// --- unmask ---------------------------------------------------------------------------

/// A cache line: the unmask buffers start at one, or `MISALIGNED` bytes past one.
const LINE: usize = 64;
/// Where a payload starts in a line for `apply_mask_at_16`: after a frame header in a read
/// buffer it can start anywhere, and a wide store across two lines costs two.
const MISALIGNED: usize = 16;

/// `len` bytes of `byte` starting `skew` bytes past a cache line, in `storage`. Where malloc
/// puts a buffer varies from run to run, so each benchmark says where its buffer starts:
/// left to malloc, the unmask measured 0.45× or 1.0× of the copy from one pass to the next.
fn at_line(storage: &mut Vec<u8>, len: usize, skew: usize, byte: u8) -> &mut [u8] {
    *storage = vec![byte; len + 2 * LINE];
    let start = storage.as_ptr().align_offset(LINE) + skew;
    &mut storage[start..start + len]
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [1024usize, 64 * 1024, 1 << 20] {
        let (mut buf_storage, mut src_storage) = (Vec::new(), Vec::new());
        let buf = at_line(&mut buf_storage, size, 0, 0x5a);
        let src = at_line(&mut src_storage, size, 0, 0xa5);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut *buf), black_box([1, 2, 3, 4]), 0))
        });
        group.bench_with_input(BenchmarkId::new("copy", size), &size, |b, _| {
            b.iter(|| black_box(&mut *buf).copy_from_slice(black_box(&*src)))
        });
        let mut skewed_storage = Vec::new();
        let skewed = at_line(&mut skewed_storage, size, MISALIGNED, 0x5a);
        group.bench_with_input(BenchmarkId::new("apply_mask_at_16", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut *skewed), black_box([1, 2, 3, 4]), 0))
        });
    }
    group.finish();
}

// --- decode: the server receives masked client frames ---------------------------------

fn decode_group(c: &mut Criterion, name: &str, opcode: OpCode) {
    let mut group = c.benchmark_group(name);
    let config = config();
    for size in SIZES {
        let count = count_for(size);
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let input = client_frames(opcode, &payload, count);
        group.throughput(Throughput::Elements(count as u64));

        let mut conn = open_connection(&config);
        let eventum_iter = |conn: &mut Connection| {
            conn.handle_input(Instant::now(), &input);
            let (mut n, mut bytes) = (0, 0);
            while let Some((event, _)) = conn.poll_event() {
                match event {
                    Event::Binary(data) => bytes += data.len(),
                    Event::Text(text) => bytes += text.len(),
                    other => panic!("unexpected {other:?}"),
                }
                n += 1;
            }
            (n, bytes)
        };
        assert_eq!(eventum_iter(&mut conn), (count, count * size));
        group.bench_with_input(BenchmarkId::new("eventum", size), &size, |b, _| {
            b.iter(|| black_box(eventum_iter(&mut conn)))
        });

        let mut ws = tungstenite_server(input.clone());
        let tungstenite_iter = |ws: &mut WebSocket<MemStream>| {
            ws.get_mut().rewind();
            let (mut n, mut bytes) = (0, 0);
            tungstenite_read_all(ws, |_, message| {
                match message {
                    Message::Binary(data) => bytes += data.len(),
                    Message::Text(text) => bytes += text.len(),
                    other => panic!("unexpected {other:?}"),
                }
                n += 1;
            });
            (n, bytes)
        };
        assert_eq!(tungstenite_iter(&mut ws), (count, count * size));
        group.bench_with_input(BenchmarkId::new("tungstenite", size), &size, |b, _| {
            b.iter(|| black_box(tungstenite_iter(&mut ws)))
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    decode_group(c, "decode", OpCode::Binary);
}

/// Text messages: the same frames as `decode`, plus UTF-8 validation.
fn decode_text(c: &mut Criterion) {
    decode_group(c, "decode_text", OpCode::Text);
}

/// One `std::str::from_utf8` pass over the payloads `decode_text` validates: the yardstick
/// for what each validation pass costs.
fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for size in SIZES {
        let count = count_for(size);
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::new("from_utf8", size), &size, |b, _| {
            b.iter(|| {
                let mut ok = 0;
                for _ in 0..count {
                    ok += usize::from(std::str::from_utf8(black_box(&payload)).is_ok());
                }
                ok
            })
        });
    }
    group.finish();
}

// --- encode: the server sends messages --------------------------------------------------

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let config = config();
    for size in SIZES {
        let count = count_for(size);
        let payload = vec![7u8; size];
        let header = if size < 126 {
            2
        } else if size < 65536 {
            4
        } else {
            10
        };
        let wire_len = count * (header + size);
        group.throughput(Throughput::Elements(count as u64));

        // eventum: queue the frames, then drain the output as a driver writes it.
        let mut conn = open_connection(&config);
        let mut sink = Vec::with_capacity(wire_len);
        let eventum_iter = |conn: &mut Connection, sink: &mut Vec<u8>| {
            for _ in 0..count {
                conn.commands().send_binary(&payload).expect("queued");
            }
            sink.clear();
            transmit_connection(conn, sink)
        };
        assert_eq!(eventum_iter(&mut conn, &mut sink), wire_len);
        group.bench_with_input(BenchmarkId::new("eventum", size), &size, |b, _| {
            b.iter(|| black_box(eventum_iter(&mut conn, &mut sink)))
        });

        // tungstenite: its best case, a shared `Bytes` (no copy to make the message).
        let mut ws = tungstenite_server(Vec::new());
        let bytes = Bytes::from(payload.clone());
        let tungstenite_iter = |ws: &mut WebSocket<MemStream>| {
            ws.get_mut().output.clear();
            for _ in 0..count {
                ws.write(Message::Binary(bytes.clone())).expect("written");
            }
            ws.flush().expect("flushed");
            ws.get_ref().output.len()
        };
        assert_eq!(tungstenite_iter(&mut ws), wire_len);
        group.bench_with_input(BenchmarkId::new("tungstenite", size), &size, |b, _| {
            b.iter(|| black_box(tungstenite_iter(&mut ws)))
        });
    }
    group.finish();
}

// --- handshake: parse a browser's upgrade request and write the 101 --------------------

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    let config = Arc::new(Config::default());
    let app = eventum_demo::echo_app();
    let now = Instant::now();
    let mut sink = Vec::with_capacity(512);

    let connection_iter = |sink: &mut Vec<u8>| {
        let mut conn = Connection::new(Arc::clone(&config), now);
        conn.handle_input(now, black_box(BROWSER_REQUEST));
        match conn.poll_event() {
            Some((Event::UpgradeRequest(_), mut commands)) => commands.accept(now, Accept::new()).expect("accepted"),
            other => panic!("unexpected {other:?}"),
        }
        sink.clear();
        transmit_connection(&mut conn, sink)
    };
    let endpoint = Endpoint::new(app);
    let session_iter = |sink: &mut Vec<u8>| {
        let mut session = endpoint.admit(now, None).expect("a free slot");
        session.handle_input(now, black_box(BROWSER_REQUEST));
        sink.clear();
        transmit_session(&mut session, sink)
    };
    let tungstenite_iter = || {
        let ws = tungstenite::accept(MemStream::new(black_box(BROWSER_REQUEST))).expect("accepted");
        ws.get_ref().output.len()
    };
    for (what, len) in [
        ("eventum-connection", connection_iter(&mut sink)),
        ("eventum-session", session_iter(&mut sink)),
        ("tungstenite", tungstenite_iter()),
    ] {
        assert!(len > 100, "{what} wrote a response");
    }
    assert!(sink.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));

    group.bench_function(BenchmarkId::new("eventum-connection", "browser"), |b| {
        b.iter(|| black_box(connection_iter(&mut sink)))
    });
    group.bench_function(BenchmarkId::new("eventum-session", "browser"), |b| {
        b.iter(|| black_box(session_iter(&mut sink)))
    });
    group.bench_function(BenchmarkId::new("tungstenite", "browser"), |b| {
        b.iter(|| black_box(tungstenite_iter()))
    });
    group.finish();
}

// --- events: a JSON event into a typed handler -----------------------------------------

/// The event in both of the envelope's forms: flat (the original framework's), and with its
/// payload in `data` (eventum.js's).
const EVENT_FORMS: [(&str, &str); 2] = [
    ("move", r#"{"event":"move","x":1,"y":2}"#),
    ("move-data", r#"{"event":"move","data":{"x":1,"y":2}}"#),
];
const EVENTS_PER_ITER: usize = 1000;

#[derive(Deserialize)]
struct Move {
    x: i64,
    y: i64,
}

/// The `data` form's payload, as a hand-written handler reads it.
#[derive(Deserialize)]
struct WithData {
    data: Move,
}

/// The fields a hand-written dispatcher reads first (as eventum's envelope does).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
}

static MOVED: AtomicU64 = AtomicU64::new(0);

fn on_move(m: Move) {
    MOVED.fetch_add(black_box(m.x + m.y) as u64, Ordering::Relaxed);
}

type Handlers = HashMap<&'static str, Box<dyn Fn(&str)>>;

/// The same dispatch written by hand: read the name, find the handler, parse its type.
fn hand_dispatch(handlers: &Handlers, text: &str) {
    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(text) else {
        return;
    };
    if let Some(handler) = handlers.get(envelope.event.as_ref()) {
        handler(text);
    }
}

fn events(c: &mut Criterion) {
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(EVENTS_PER_ITER as u64));
    let app = App::builder()
        .route(Route::new("/{*path}"))
        .on_typed("move", |_ctx, m: Move| on_move(m))
        .build();
    for (form, json) in EVENT_FORMS {
        let input = client_frames(OpCode::Text, json.as_bytes(), EVENTS_PER_ITER);
        let mut handlers: Handlers = HashMap::new();
        handlers.insert(
            "move",
            match form {
                "move" => Box::new(|text| {
                    if let Ok(m) = serde_json::from_str::<Move>(text) {
                        on_move(m);
                    }
                }),
                _ => Box::new(|text| {
                    if let Ok(WithData { data }) = serde_json::from_str::<WithData>(text) {
                        on_move(data);
                    }
                }),
            },
        );
        let check = |what: &str, run: &mut dyn FnMut()| {
            let before = MOVED.load(Ordering::Relaxed);
            run();
            let moved = MOVED.load(Ordering::Relaxed) - before;
            assert_eq!(
                moved,
                3 * EVENTS_PER_ITER as u64,
                "{what} dispatched every {form} event"
            );
        };

        let mut session = open_session(&app);
        let mut sink = Vec::new();
        let session_iter = |session: &mut Session, sink: &mut Vec<u8>| {
            session.handle_input(Instant::now(), &input);
            sink.clear();
            transmit_session(session, sink)
        };
        check("the session", &mut || {
            assert_eq!(session_iter(&mut session, &mut sink), 0)
        });
        group.bench_function(BenchmarkId::new("eventum-session", form), |b| {
            b.iter(|| black_box(session_iter(&mut session, &mut sink)))
        });

        let mut conn = open_connection(&config());
        let conn_iter = |conn: &mut Connection| {
            conn.handle_input(Instant::now(), &input);
            while let Some((event, _)) = conn.poll_event() {
                if let Event::Text(text) = event {
                    hand_dispatch(&handlers, text);
                }
            }
        };
        check("the connection", &mut || conn_iter(&mut conn));
        group.bench_function(BenchmarkId::new("eventum-connection+dispatch", form), |b| {
            b.iter(|| conn_iter(&mut conn))
        });

        let mut ws = tungstenite_server(input.clone());
        let tungstenite_iter = |ws: &mut WebSocket<MemStream>| {
            ws.get_mut().rewind();
            tungstenite_read_all(ws, |_, message| {
                if let Message::Text(text) = message {
                    hand_dispatch(&handlers, text.as_str());
                }
            });
        };
        check("tungstenite", &mut || tungstenite_iter(&mut ws));
        group.bench_function(BenchmarkId::new("tungstenite+dispatch", form), |b| {
            b.iter(|| tungstenite_iter(&mut ws))
        });
    }
    group.finish();
}

// --- echo: bytes in, bytes out ---------------------------------------------------------

const ECHO_TEXT: &str = "0123456789abcdef";
/// Messages per iteration; they arrive `batch` per read.
const ECHO_PER_ITER: usize = 100;

fn echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo");
    group.throughput(Throughput::Elements(ECHO_PER_ITER as u64));
    let reply_len = ECHO_PER_ITER * (2 + ECHO_TEXT.len());
    let app = eventum_demo::echo_app();
    for batch in [1usize, ECHO_PER_ITER] {
        let reads = ECHO_PER_ITER / batch;
        let input = client_frames(OpCode::Text, ECHO_TEXT.as_bytes(), batch);
        let mut sink = Vec::with_capacity(reply_len);

        let mut conn = open_connection(&config());
        let conn_iter = |conn: &mut Connection, sink: &mut Vec<u8>| {
            sink.clear();
            for _ in 0..reads {
                conn.handle_input(Instant::now(), &input);
                while let Some((event, mut sender)) = conn.poll_event() {
                    if let Event::Text(text) = event {
                        sender.send_text(text).expect("queued");
                    }
                }
                transmit_connection(conn, sink);
            }
            sink.len()
        };
        assert_eq!(conn_iter(&mut conn, &mut sink), reply_len);
        group.bench_with_input(BenchmarkId::new("eventum-connection", batch), &batch, |b, _| {
            b.iter(|| black_box(conn_iter(&mut conn, &mut sink)))
        });

        let mut session = open_session(&app);
        let session_iter = |session: &mut Session, sink: &mut Vec<u8>| {
            sink.clear();
            for _ in 0..reads {
                session.handle_input(Instant::now(), &input);
                transmit_session(session, sink);
            }
            sink.len()
        };
        assert_eq!(session_iter(&mut session, &mut sink), reply_len);
        group.bench_with_input(BenchmarkId::new("eventum-session", batch), &batch, |b, _| {
            b.iter(|| black_box(session_iter(&mut session, &mut sink)))
        });

        // tungstenite: read, write each message back, flush once per read.
        let mut ws = tungstenite_server(input.clone());
        let tungstenite_iter = |ws: &mut WebSocket<MemStream>| {
            ws.get_mut().output.clear();
            let mut written = 0;
            for _ in 0..reads {
                ws.get_mut().rewind_input();
                tungstenite_read_all(ws, |ws, message| ws.write(message).expect("written"));
                ws.flush().expect("flushed");
                written = ws.get_ref().output.len();
            }
            written
        };
        assert_eq!(tungstenite_iter(&mut ws), reply_len);
        group.bench_with_input(BenchmarkId::new("tungstenite", batch), &batch, |b, _| {
            b.iter(|| black_box(tungstenite_iter(&mut ws)))
        });
    }
    group.finish();
}

// --- permessage-deflate ------------------------------------------------------------------

const DEFLATE_SIZES: [usize; 2] = [1024, 16 * 1024];
/// Messages per iteration of the compressed echo.
const DEFLATE_PER_ITER: usize = 20;

/// Echo of JSON messages through a connection that agreed permessage-deflate (the client
/// compresses each message on its own, as the default negotiation asks; the server inflates,
/// echoes and compresses), beside the same messages on an uncompressed connection.
fn deflate_echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_echo");
    group.throughput(Throughput::Elements(DEFLATE_PER_ITER as u64));
    for size in DEFLATE_SIZES {
        let message = json_message(size);
        let compressed = client_deflate(message.as_bytes());
        let mut deflated_input = client_frames(OpCode::Text, &compressed, DEFLATE_PER_ITER);
        // RSV1 on every frame: each is a whole compressed message.
        let frame_len = deflated_input.len() / DEFLATE_PER_ITER;
        for frame in deflated_input.chunks_mut(frame_len) {
            frame[0] |= 0x40;
        }
        let plain_input = client_frames(OpCode::Text, message.as_bytes(), DEFLATE_PER_ITER);
        for (name, compression, input) in [
            ("eventum-deflate", DeflateConfig::default(), &deflated_input),
            ("eventum-plain", DeflateConfig::disabled(), &plain_input),
        ] {
            let mut conn = open_connection(&config_with(compression));
            let mut sink = Vec::new();
            let iter = |conn: &mut Connection, sink: &mut Vec<u8>| {
                sink.clear();
                conn.handle_input(Instant::now(), input);
                let mut echoed = 0;
                while let Some((event, mut sender)) = conn.poll_event() {
                    if let Event::Text(text) = event {
                        sender.send_text(text).expect("queued");
                        echoed += 1;
                    }
                }
                transmit_connection(conn, sink);
                echoed
            };
            assert_eq!(
                iter(&mut conn, &mut sink),
                DEFLATE_PER_ITER,
                "{name} echoed every message"
            );
            if name == "eventum-deflate" {
                assert!(sink.len() < plain_input.len() / 3, "{name}: {} bytes out", sink.len());
            }
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| black_box(iter(&mut conn, &mut sink)))
            });
        }
    }
    group.finish();
}

/// Members of the broadcast workload.
const BROADCAST_MEMBERS: usize = 64;

/// One JSON message delivered to 64 connections: with permessage-deflate (no context
/// takeover, so it is compressed once and the compressed frame shared), and without.
fn deflate_broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_broadcast");
    group.throughput(Throughput::Elements(BROADCAST_MEMBERS as u64));
    for size in DEFLATE_SIZES {
        let message = json_message(size);
        for (name, compression) in [
            ("eventum-deflate", DeflateConfig::default()),
            ("eventum-plain", DeflateConfig::disabled()),
        ] {
            let config = config_with(compression);
            let mut members: Vec<Connection> = (0..BROADCAST_MEMBERS).map(|_| open_connection(&config)).collect();
            let iter = |members: &mut [Connection]| {
                // A new frame each time, as each broadcast is a new message.
                let frame = SharedFrame::text(&message);
                let now = Instant::now();
                let mut bytes = 0;
                for conn in members.iter_mut() {
                    conn.commands().deliver(now, &frame).expect("delivered");
                    bytes += conn.buffered_amount();
                    let n = conn.buffered_amount();
                    conn.transmitted(n);
                }
                bytes
            };
            let bytes = iter(&mut members);
            if name == "eventum-deflate" {
                assert!(bytes < BROADCAST_MEMBERS * size / 3, "{name}: {bytes} bytes out");
            }
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| black_box(iter(&mut members)))
            });
        }
    }
    group.finish();
}

/// The DEFLATE backends on the same JSON: compress (raw, level 6, sync flush) and inflate
/// back. zlib-rs (through flate2, eventum's choice) beside miniz_oxide (flate2's default
/// backend, used directly: a workspace builds flate2 with one backend only).
fn deflate_backend(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_backend");
    for size in DEFLATE_SIZES {
        let message = json_message(size);
        group.throughput(Throughput::Bytes(size as u64));
        let mut compress = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut decompress = flate2::Decompress::new(false);
        let (mut packed, mut unpacked) = (Vec::with_capacity(2 * size), Vec::with_capacity(2 * size));
        let mut zlib_rs = || {
            packed.clear();
            unpacked.clear();
            compress.reset();
            decompress.reset(false);
            compress
                .compress_vec(message.as_bytes(), &mut packed, flate2::FlushCompress::Sync)
                .expect("compresses");
            decompress
                .decompress_vec(&packed, &mut unpacked, flate2::FlushDecompress::Sync)
                .expect("inflates");
            unpacked.len()
        };
        assert_eq!(zlib_rs(), size);
        group.bench_with_input(BenchmarkId::new("zlib-rs", size), &size, |b, _| {
            b.iter(|| black_box(zlib_rs()))
        });

        let miniz = || {
            let packed = miniz_oxide::deflate::compress_to_vec(message.as_bytes(), 6);
            let unpacked = miniz_oxide::inflate::decompress_to_vec(&packed).expect("inflates");
            unpacked.len()
        };
        assert_eq!(miniz(), size);
        group.bench_with_input(BenchmarkId::new("miniz_oxide", size), &size, |b, _| {
            b.iter(|| black_box(miniz()))
        });
    }
    group.finish();
}

// --- main: run, then print the ratios -------------------------------------------------

/// Short runs, repeated over several passes (see `main`): about 5 minutes in all.
fn criterion_config() -> Criterion {
    Criterion::default()
        .output_directory(&report::criterion_dir())
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = unmask, decode, decode_text, utf8, encode, handshake, events, echo,
        deflate_echo, deflate_broadcast, deflate_backend
}

fn comparisons() -> Vec<Comparison> {
    let mut rows = Vec::new();
    for size in [1024usize, 64 * 1024, 1 << 20] {
        rows.push(Comparison::new("unmask", size, "apply_mask", "copy").target(0.8));
        rows.push(Comparison::new("unmask", size, "apply_mask_at_16", "copy"));
    }
    for group in ["decode", "decode_text", "encode"] {
        for size in SIZES {
            let row = Comparison::new(group, size, "eventum", "tungstenite");
            rows.push(if group == "decode" && size == 16 {
                row.target(3.0)
            } else {
                row
            });
        }
    }
    rows.push(Comparison::new("handshake", "browser", "eventum-connection", "tungstenite").target(1.0));
    rows.push(Comparison::new("handshake", "browser", "eventum-session", "tungstenite").target(1.0));
    for (form, _) in EVENT_FORMS {
        rows.push(Comparison::new("events", form, "eventum-session", "tungstenite+dispatch").target(1.5));
        rows.push(Comparison::new(
            "events",
            form,
            "eventum-session",
            "eventum-connection+dispatch",
        ));
    }
    for batch in [1, ECHO_PER_ITER] {
        rows.push(Comparison::new("echo", batch, "eventum-connection", "tungstenite"));
        rows.push(Comparison::new("echo", batch, "eventum-session", "tungstenite"));
    }
    for size in DEFLATE_SIZES {
        // What compression costs: below 1.0, by how much compressed messages are slower.
        rows.push(Comparison::new(
            "deflate_echo",
            size,
            "eventum-deflate",
            "eventum-plain",
        ));
        rows.push(Comparison::new(
            "deflate_broadcast",
            size,
            "eventum-deflate",
            "eventum-plain",
        ));
        rows.push(Comparison::new("deflate_backend", size, "zlib-rs", "miniz_oxide"));
    }
    rows
}

/// What text costs over binary, in `std::str::from_utf8` passes over the same payloads:
/// (decode_text - decode) / from_utf8, per implementation (medians over passes).
fn text_overhead(passes: &[report::Pass]) -> Option<String> {
    let mut out = String::from(
        "UTF-8 validation cost, estimated from timings (median ns per iteration; passes = (text - binary) / \
         one from_utf8 pass; noisy on a shared machine, where instruction counts are better):\n\n\
         | size | from_utf8 | eventum binary | eventum text | eventum passes | tungstenite binary | tungstenite text | tungstenite passes |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for size in SIZES {
        let param = size.to_string();
        let get = |group: &str, function: &str| report::median_over(passes, group, function, &param);
        let Some(check) = get("utf8", "from_utf8") else {
            continue;
        };
        let mut cells = vec![format!("{:.0}", check.median_ns)];
        for who in ["eventum", "tungstenite"] {
            match (get("decode", who), get("decode_text", who)) {
                (Some(binary), Some(text)) => {
                    any = true;
                    let passes = (text.median_ns - binary.median_ns) / check.median_ns;
                    cells.push(format!("{:.0}", binary.median_ns));
                    cells.push(format!("{:.0}", text.median_ns));
                    cells.push(format!("**{passes:.2}**"));
                }
                _ => cells.extend(["-".to_owned(), "-".to_owned(), "-".to_owned()]),
            }
        }
        out.push_str(&format!("| {size} | {} |\n", cells.join(" | ")));
    }
    any.then_some(out)
}

/// Passes over all benchmarks: `EVENTUM_BENCH_PASSES`, default 3; one when criterion only
/// tests, lists or profiles (no `--bench`, or `--list` / `--profile-time`).
fn passes() -> usize {
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list" || a == "--profile-time");
    if !measuring {
        return 1;
    }
    std::env::var("EVENTUM_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

fn main() {
    let dir = report::criterion_dir();
    let mut results = Vec::new();
    let total = passes();
    for pass in 1..=total {
        println!("\n=== pass {pass} of {total} ===");
        let since = SystemTime::now();
        benches();
        results.push(report::collect(&dir, since));
    }
    Criterion::default().configure_from_args().final_summary();
    let Some(table) = report::table(&comparisons(), &results) else {
        return;
    };
    let mut text = format!(
        "Ratios: reference median time / eventum median time for the same work, taken within each of \
         {} passes, then the median over passes (above 1 = eventum faster):\n\n{table}",
        results.len()
    );
    if let Some(overhead) = text_overhead(&results) {
        text = format!("{text}\n{overhead}");
    }
    println!("\n{text}");
    let path = dir.join("eventum-ratios.md");
    match std::fs::write(&path, &text) {
        Ok(()) => println!("saved to {}", path.display()),
        Err(e) => eprintln!("cannot save {}: {e}", path.display()),
    }
}
