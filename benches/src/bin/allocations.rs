//! Heap allocations per operation, counted exactly (no timing, so the figure is the same on
//! a busy machine): one handshake of a Chromium upgrade request through `Connection` and
//! through a `Session` of the echo app, one 16-byte echo through that session, one JSON event
//! into a typed handler, and tungstenite's handshake of the same request for reference; and
//! what an idle session holds: its size inline and the heap bytes it keeps after its handshake.
//!
//! ```text
//! cargo run --release -p eventum-benches --bin allocations
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use eventum_benches::{client_frames, MemStream, BROWSER_REQUEST};

/// The load generator's upgrade request: what each of `compare.sh`'s idle connections sends.
const PLAIN_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
use eventum_core::app::{App, Route};
use eventum_core::driver::{Endpoint, Session};
use eventum_core::frame::OpCode;
use eventum_core::handshake::{Accept, DeflateConfig};
use eventum_core::{Config, Connection, Event};

/// The system allocator, counting this thread's allocations (reallocations included).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated and not freed on this thread (requested sizes, no allocator overhead).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add_live(bytes: usize, sign: i64) {
    LIVE.with(|n| n.set(n.get() + sign * bytes as i64));
}

// SAFETY: every call is passed on unchanged to the system allocator; the count is a
// thread-local `Cell` with no destructor, so counting never allocates or re-enters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        add_live(layout.size(), 1);
        // SAFETY: the caller's obligations are the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(layout.size(), -1);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        add_live(new_size, 1);
        add_live(layout.size(), -1);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per run of `op`: the median of a few runs after a warm-up (lazy statics,
/// thread-locals and grown buffers are then in place).
fn per_run(mut op: impl FnMut()) -> u64 {
    for _ in 0..3 {
        op();
    }
    let mut counts: Vec<u64> = (0..5)
        .map(|_| {
            let before = ALLOCATIONS.with(Cell::get);
            op();
            ALLOCATIONS.with(Cell::get) - before
        })
        .collect();
    counts.sort_unstable();
    counts[counts.len() / 2]
}

/// Writes what the session has to send into `sink`.
fn drain(session: &mut Session, sink: &mut Vec<u8>) {
    let transmit = session.poll_transmit();
    transmit.chunks().for_each(|chunk| sink.extend_from_slice(chunk));
    let n = transmit.len();
    session.transmitted(n);
}

fn main() {
    let now = Instant::now();
    let config = Arc::new(Config::default());
    let mut sink = Vec::with_capacity(4096);

    let handshake = |config: &Arc<Config>| {
        let mut conn = Connection::new(Arc::clone(config), now);
        conn.handle_input(now, black_box(BROWSER_REQUEST));
        match conn.poll_event() {
            Some((Event::UpgradeRequest(_), mut commands)) => commands.accept(now, Accept::new()).expect("accepted"),
            other => panic!("unexpected {other:?}"),
        }
        let transmit = conn.poll_transmit();
        let n = transmit.len();
        conn.transmitted(n);
        black_box(conn);
    };
    // The browser offers permessage-deflate, which the default configuration accepts: the
    // compressor's state is allocated then. tungstenite does not compress.
    let connection = per_run(|| handshake(&config));
    let uncompressed = Arc::new(
        Config::builder()
            .compression(DeflateConfig::disabled())
            .build()
            .expect("a valid configuration"),
    );
    let connection_uncompressed = per_run(|| handshake(&uncompressed));

    // The same handshake stage by stage (after a warm-up), to see where they come from.
    let count = || ALLOCATIONS.with(Cell::get);
    let mut stages = Vec::new();
    for _ in 0..4 {
        stages.clear();
        let mut at = count();
        let mut stage = |name: &'static str| {
            let now = count();
            stages.push((name, now - at));
            at = count();
        };
        let mut conn = Connection::new(Arc::clone(&config), now);
        stage("Connection::new");
        conn.handle_input(now, black_box(BROWSER_REQUEST));
        stage("handle_input (the head parsed)");
        let event = conn.poll_event();
        stage("poll_event (the upgrade request)");
        match event {
            Some((Event::UpgradeRequest(_), mut commands)) => commands.accept(now, Accept::new()).expect("accepted"),
            other => panic!("unexpected {other:?}"),
        }
        stage("accept (the 101 built)");
        let transmit = conn.poll_transmit();
        let n = transmit.len();
        conn.transmitted(n);
        stage("poll_transmit + transmitted");
        drop(conn);
    }

    let endpoint = Endpoint::new(eventum_demo::echo_app());
    let session = per_run(|| {
        let mut session = endpoint.admit(now, None).expect("a free slot");
        session.handle_input(now, black_box(BROWSER_REQUEST));
        sink.clear();
        drain(&mut session, &mut sink);
        black_box(session);
    });

    let mut open = endpoint.admit(now, None).expect("a free slot");
    open.handle_input(now, BROWSER_REQUEST);
    drain(&mut open, &mut sink);
    assert!(sink.starts_with(b"HTTP/1.1 101 "), "the echo app accepts the upgrade");
    let frame = client_frames(OpCode::Binary, &[0x5a; 16], 1);
    let echo = per_run(|| {
        open.handle_input(now, black_box(&frame));
        sink.clear();
        drain(&mut open, &mut sink);
        assert!(!sink.is_empty(), "echoed");
    });
    let (mut echo_input, mut echo_output) = (0, 0);
    for _ in 0..4 {
        let before = count();
        open.handle_input(now, black_box(&frame));
        let read = count();
        sink.clear();
        drain(&mut open, &mut sink);
        (echo_input, echo_output) = (read - before, count() - read);
    }

    // A JSON event into a typed handler (the criterion `events` benchmark's message).
    #[derive(serde::Deserialize)]
    struct Move {
        x: i64,
        y: i64,
    }
    let typed_app = App::builder()
        .route(Route::new("/{*path}"))
        .on_typed("move", |_ctx, m: Move| {
            black_box(m.x + m.y);
        })
        .build();
    let typed_endpoint = Endpoint::new(typed_app);
    let mut typed = typed_endpoint.admit(now, None).expect("a free slot");
    typed.handle_input(now, BROWSER_REQUEST);
    sink.clear();
    drain(&mut typed, &mut sink);
    assert!(sink.starts_with(b"HTTP/1.1 101 "), "the typed app accepts the upgrade");
    let event = client_frames(OpCode::Text, br#"{"event":"move","x":1,"y":2}"#, 1);
    let typed_event = per_run(|| {
        typed.handle_input(now, black_box(&event));
        drain(&mut typed, &mut sink);
    });

    // What an idle session keeps: the heap bytes still allocated after its handshake
    // (averaged over many sessions, so shared structures that grow in steps, like the hub's
    // table, count their share), beside its size inline.
    let idle_endpoint = Endpoint::new(eventum_demo::echo_app());
    let mut held = |count: usize| {
        let mut sessions = Vec::with_capacity(count);
        let before = LIVE.with(Cell::get);
        for _ in 0..count {
            let mut session = idle_endpoint.admit(now, None).expect("a free slot");
            session.handle_input(now, black_box(PLAIN_REQUEST));
            sink.clear();
            drain(&mut session, &mut sink);
            sessions.push(session);
        }
        let held = LIVE.with(Cell::get) - before;
        drop(sessions);
        held as f64 / count as f64
    };
    held(100);
    let idle_heap = held(1000);
    let live = || LIVE.with(Cell::get);
    let at_start = live();
    let mut idle = idle_endpoint.admit(now, None).expect("a free slot");
    let admitted = live();
    idle.handle_input(now, black_box(PLAIN_REQUEST));
    sink.clear();
    drain(&mut idle, &mut sink);
    let (idle_admit, idle_upgrade) = (admitted - at_start, live() - admitted);
    drop(idle);

    let tungstenite = per_run(|| {
        let ws = tungstenite::accept(MemStream::new(black_box(BROWSER_REQUEST))).expect("accepted");
        black_box(ws);
    });

    println!("allocations per handshake, Connection:          {connection}");
    println!("  the same without compression:                {connection_uncompressed}");
    for (name, n) in &stages {
        println!("  {name:<34} {n}");
    }
    println!("allocations per handshake, Session (echo app):  {session}");
    println!("allocations per 16 B echo, Session (echo app):  {echo}");
    println!("  handle_input (read, handled, queued)     {echo_input}");
    println!("  poll_transmit + transmitted              {echo_output}");
    println!("allocations per typed JSON event, Session:     {typed_event}");
    println!("allocations per handshake, tungstenite::accept: {tungstenite}");
    println!(
        "an idle session (echo app, no compression offered): {} B inline, {idle_heap:.0} B on the heap",
        std::mem::size_of::<Session>()
    );
    println!("  admitted                                 {idle_admit} B");
    println!("  upgraded (head kept, app data, 101 out)  {idle_upgrade} B");
}
