//! The driver kit end to end: one app, unchanged, on both adapters and on the hand-written
//! mio loop of `eventum-std/examples/custom_loop.rs`; a cancelled connection future that
//! still leaves its rooms; and a peer that stops reading without blocking anyone else.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_core::{Config, SharedFrame};
use eventum_e2e::{wait_until, Adapter, Client, Gate, RawClient, WAIT};
use serde_json::{json, Value};

#[allow(dead_code)] // its `main` is the example's; the test runs its `serve`
#[path = "../../eventum-std/examples/custom_loop.rs"]
#[rustfmt::skip] // formatted where it lives, with eventum-std/examples/rustfmt.toml
mod custom_loop;

/// Handlers that finish work later, from another thread, through `ctx.handle()` (the same
/// type on every adapter), and rooms with broadcasts.
fn later_app(disconnects: &Arc<AtomicUsize>) -> App {
    let disconnects = Arc::clone(disconnects);
    App::builder()
        .route(Route::new("/ws"))
        .on("later", |ctx, event| {
            let text = event.data().and_then(Value::as_str).unwrap_or_default().to_owned();
            let handle = ctx.handle();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20)); // e.g. a database call
                handle
                    .send_text(&format!("later: {text}"))
                    .expect("the connection is open");
            });
            let _ = ctx.send_text("queued");
        })
        .on("join", |ctx, event| {
            let room = event.data().and_then(Value::as_str).unwrap_or_default().to_owned();
            ctx.join(&room);
            let _ = ctx.send_text(&format!("joined {room}"));
        })
        .on("say", |ctx, event| {
            let text = event.data().and_then(Value::as_str).unwrap_or_default().to_owned();
            ctx.broadcast_others("r", SharedFrame::text(&text));
        })
        .on("flood", |ctx, event| {
            // Queues `data` MiB for this connection, to fill a peer that does not read.
            let mib = event.data().and_then(Value::as_u64).unwrap_or(1);
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..mib {
                ctx.send_binary(&chunk).expect("within the backlog");
            }
        })
        .on_disconnect(move |_, _| {
            disconnects.fetch_add(1, Ordering::SeqCst);
        })
        .config(
            Config::builder()
                .water_marks(64 << 20, 16 << 20)
                .max_backlog(128 << 20)
                .build()
                .expect("valid limits"),
        )
        .build()
}

fn send_event<S: std::io::Read + std::io::Write>(client: &mut Client<S>, event: &str, data: Value) {
    client.send_json(&json!({"event": event, "data": data}));
}

/// The handler returns first ("queued"), its thread sends later through the handle.
fn assert_sends_later(addr: std::net::SocketAddr, driver: &str) {
    let mut client = Client::connect(addr, "/ws").unwrap_or_else(|e| panic!("{driver}: {e:?}"));
    for i in 0..3 {
        send_event(&mut client, "later", json!(format!("{driver} {i}")));
        assert_eq!(client.recv_text(), "queued", "{driver}");
        assert_eq!(client.recv_text(), format!("later: {driver} {i}"));
    }
    let _ = client.close(1000, "");
}

#[test]
fn one_app_sends_later_through_its_handle_on_every_driver() {
    let disconnects = Arc::new(AtomicUsize::new(0));
    for adapter in Adapter::ALL {
        let server = adapter.start(later_app(&disconnects));
        assert_sends_later(server.addr(), &format!("{adapter:?}"));
        server.shutdown();
    }
    // The custom loop serves forever on its own thread; the test process ends it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let app = later_app(&disconnects);
    std::thread::spawn(move || custom_loop::serve(listener, app));
    assert_sends_later(addr, "custom loop");
    assert!(
        wait_until(WAIT, || disconnects.load(Ordering::SeqCst) == 3),
        "each driver ran the hook"
    );
}

#[test]
fn the_custom_loop_delivers_rooms_and_broadcasts() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let disconnects = Arc::new(AtomicUsize::new(0));
    let app = later_app(&disconnects);
    std::thread::spawn(move || custom_loop::serve(listener, app));
    let mut members: Vec<Client> = (0..3).map(|_| Client::connect(addr, "/ws").expect("upgrade")).collect();
    for member in &mut members {
        send_event(member, "join", json!("r"));
        assert_eq!(member.recv_text(), "joined r");
    }
    send_event(&mut members[0], "say", json!("hello room"));
    for member in &mut members[1..] {
        assert_eq!(member.recv_text(), "hello room");
    }
    members[0].expect_silence(Duration::from_millis(100));
}

/// Dropping a `serve_stream` future mid-session (the docs allow it) ends the connection
/// completely: it leaves every room, its disconnect hook runs once, its slot is freed.
#[test]
fn a_cancelled_smol_connection_leaves_its_rooms_and_disconnects_once() {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let server = eventum_smol::Server::new(later_app(&disconnects));
    let (served, ours) = ::smol::net::unix::UnixStream::pair().expect("a socket pair");
    let (cancel_tx, cancel_rx) = mpsc::channel::<()>();
    let serving = server.clone();
    let task = std::thread::spawn(move || {
        ::smol::block_on(async {
            let serve = serving.serve_stream(served, None);
            let cancel = ::smol::unblock(move || cancel_rx.recv());
            // Whichever ends first: the cancel drops the serve future mid-session.
            ::smol::future::or(async { Some(serve.await) }, async {
                let _ = cancel.await;
                None
            })
            .await
        })
    });
    let ours = {
        let inner: Arc<::smol::Async<std::os::unix::net::UnixStream>> = ours.into();
        let stream = Arc::try_unwrap(inner)
            .expect("sole owner")
            .into_inner()
            .expect("deregistered");
        stream.set_nonblocking(false).expect("blocking");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream
    };
    let mut client = Client::over_stream(ours, "/ws").expect("upgrade");
    send_event(&mut client, "join", json!("r"));
    assert_eq!(client.recv_text(), "joined r");
    send_event(&mut client, "join", json!("s"));
    assert_eq!(client.recv_text(), "joined s");
    assert_eq!(server.endpoint().room_members("r").len(), 1);

    cancel_tx.send(()).expect("the serving thread waits");
    assert!(
        task.join().expect("serving thread").is_none(),
        "the future was cancelled, not finished"
    );
    assert_eq!(disconnects.load(Ordering::SeqCst), 1, "the disconnect hook ran once");
    assert!(server.endpoint().room_members("r").is_empty(), "still in room r");
    assert!(server.endpoint().room_members("s").is_empty(), "still in room s");
    assert_eq!(server.endpoint().connections(), 0, "the slot is free");
}

/// A member that stops reading while megabytes are queued for it still gets its own
/// input handled: its broadcasts reach the others. (The blocking adapter once wrote to
/// the socket while holding the session's lock, so the stalled write locked its reader out.)
fn a_stalled_reader_still_broadcasts(adapter: Adapter) {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let server = adapter.start(later_app(&disconnects));
    let mut other = server.client("/ws");
    send_event(&mut other, "join", json!("r"));
    assert_eq!(other.recv_text(), "joined r");

    let mut stalled = RawClient::connect(server.addr(), "/ws");
    let event = |name: &str, data: Value| json!({"event": name, "data": data}).to_string();
    stalled.send_frame(0x1, event("join", json!("r")).as_bytes());
    // 32 MiB for a peer that never reads: far more than the socket buffers hold, so
    // the server's write blocks, and below the high-water mark, so reading goes on.
    stalled.send_frame(0x1, event("flood", json!(32)).as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3 {
        stalled.send_frame(0x1, event("say", json!(format!("still here {i}"))).as_bytes());
        assert_eq!(other.recv_text(), format!("still here {i}"), "{adapter:?}");
    }
    drop(stalled);
    server.shutdown();
}

#[test]
fn smol_a_stalled_reader_still_broadcasts() {
    a_stalled_reader_still_broadcasts(Adapter::Smol);
}

#[test]
fn std_threads_a_stalled_reader_still_broadcasts() {
    a_stalled_reader_still_broadcasts(Adapter::Std);
}

/// A chat room whose members get 64 KiB of backlog at most, and whose disconnect hook
/// tells the room: closing a slow consumer sends mail to everyone else.
fn small_backlog_app() -> App {
    let config = Config::builder()
        .water_marks(32 << 10, 16 << 10)
        .max_backlog(64 << 10)
        .build()
        .expect("valid limits");
    App::builder()
        .config(config)
        .route(Route::new("/ws"))
        .on("join", |ctx, _| {
            ctx.join("r");
            let _ = ctx.send_text("joined");
        })
        .on("say", |ctx, event| {
            let text = event.data().and_then(Value::as_str).unwrap_or_default().to_owned();
            ctx.broadcast_others("r", SharedFrame::text(&text));
        })
        .on_disconnect(|ctx, _| ctx.broadcast_others("r", SharedFrame::text("left")))
        .build()
}

/// A member that never reads is closed as a slow consumer while its driver takes its mail,
/// and its disconnect hook's broadcast reaches the others (the custom loop once held its
/// wake-up list's lock while taking mail, and deadlocked right here).
fn a_slow_consumer_closed_by_mail_tells_the_room(addr: std::net::SocketAddr, driver: &str) {
    let mut talker = Client::connect(addr, "/ws").unwrap_or_else(|e| panic!("{driver}: {e:?}"));
    send_event(&mut talker, "join", Value::Null);
    assert_eq!(talker.recv_text(), "joined", "{driver}");
    let mut silent = RawClient::connect(addr, "/ws");
    silent.send_frame(0x1, json!({"event": "join"}).to_string().as_bytes());
    // 10 MiB of broadcasts: more than the silent member's socket buffers and its backlog.
    let chunk = "x".repeat(16 << 10);
    for _ in 0..640 {
        send_event(&mut talker, "say", json!(chunk));
    }
    assert_eq!(
        talker.recv_text(),
        "left",
        "{driver}: the room heard of the slow consumer"
    );
    drop(silent);
}

#[test]
fn a_slow_consumer_closed_by_mail_tells_the_room_on_every_driver() {
    for adapter in Adapter::ALL {
        let server = adapter.start(small_backlog_app());
        a_slow_consumer_closed_by_mail_tells_the_room(server.addr(), &format!("{adapter:?}"));
        server.shutdown();
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || custom_loop::serve(listener, small_backlog_app()));
    a_slow_consumer_closed_by_mail_tells_the_room(addr, "custom loop");
}

/// A transport whose every other flush is pending once (as a TLS stream's can be).
struct PendingFlush<S> {
    inner: S,
    pend_next: bool,
}

impl<S: ::smol::io::AsyncRead + Unpin> ::smol::io::AsyncRead for PendingFlush<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: ::smol::io::AsyncWrite + Unpin> ::smol::io::AsyncWrite for PendingFlush<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.pend_next = !self.pend_next;
        if self.pend_next {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Messages from a handle arrive exactly once and in order over a transport whose flush
/// can be pending while mail arrives (the smol driver once raced a written-but-unflushed
/// write against its mail and wrote the same bytes again).
#[test]
fn smol_writes_nothing_twice_over_a_transport_with_pending_flushes() {
    // The race is probabilistic: five connections make a regression all but certain to show.
    for _ in 0..5 {
        count_over_pending_flushes();
    }
}

fn count_over_pending_flushes() {
    const COUNT: usize = 20_000;
    // The sender keeps at most 500 messages ahead of the reader: within the mailbox's bound.
    let received = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&received);
    let app = App::builder()
        .route(Route::new("/ws"))
        .on("count", move |ctx, _| {
            let (handle, progress) = (ctx.handle(), Arc::clone(&progress));
            std::thread::spawn(move || {
                for i in 0..COUNT {
                    while i >= progress.load(Ordering::SeqCst) + 500 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    handle.send_text(&i.to_string()).expect("within the mailbox's bound");
                }
            });
        })
        .build();
    let server = eventum_smol::Server::new(app);
    let (served, ours) = ::smol::net::unix::UnixStream::pair().expect("a socket pair");
    std::thread::spawn(move || {
        let _ = ::smol::block_on(server.serve_stream(
            PendingFlush {
                inner: served,
                pend_next: false,
            },
            None,
        ));
    });
    let inner: Arc<::smol::Async<std::os::unix::net::UnixStream>> = ours.into();
    let ours = Arc::try_unwrap(inner)
        .expect("sole owner")
        .into_inner()
        .expect("deregistered");
    ours.set_nonblocking(false).expect("blocking");
    ours.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut client = Client::over_stream(ours, "/ws").expect("upgrade");
    send_event(&mut client, "count", Value::Null);
    for i in 0..COUNT {
        assert_eq!(client.recv_text(), i.to_string(), "message {i}");
        received.store(i + 1, Ordering::SeqCst);
    }
}

/// `/ws`: the `block` event waits at `gate`, then sends "unblocked"; `echo` sends its
/// data back.
fn blocking_app(gate: &Arc<Gate>) -> App {
    let gate = Arc::clone(gate);
    App::builder()
        .route(Route::new("/ws"))
        .on("block", move |ctx, _| {
            gate.wait();
            let _ = ctx.send_text("unblocked");
        })
        .on("echo", |ctx, event| {
            let text = event.data().and_then(Value::as_str).unwrap_or_default().to_owned();
            let _ = ctx.send_text(&text);
        })
        .build()
}

/// A handler that blocks (a slow database call) holds up only its own connection on
/// eventum-std: another client's echoes complete while it is still blocked. No clock:
/// the handler waits until the test releases it.
#[test]
fn std_threads_a_blocking_handler_stalls_no_other_connection() {
    let gate = Arc::new(Gate::default());
    let app = blocking_app(&gate);
    let server = Adapter::Std.start(app);
    let mut slow = server.client("/ws");
    send_event(&mut slow, "block", Value::Null);
    let mut fast = server.client("/ws");
    for i in 0..20 {
        send_event(&mut fast, "echo", json!(format!("echo {i}")));
        assert_eq!(fast.recv_text(), format!("echo {i}"));
    }
    assert!(!gate.is_open(), "the echoes completed while the handler blocked");
    gate.release();
    assert_eq!(slow.recv_text(), "unblocked");
    server.shutdown();
}

/// eventum-std with a single worker thread: while three handlers block at once, the pool
/// adds workers, so another client's echoes still complete; a fourth thread's work then
/// ends, and shutdown leaves no connection behind. No clock: the handlers wait until the
/// test releases them.
#[test]
fn std_threads_the_pool_grows_while_every_worker_is_blocked() {
    const BLOCKED: usize = 3;
    let gate = Arc::new(Gate::default());
    let app = blocking_app(&gate);
    let running = eventum_std::Server::new(app)
        .threads(1)
        .listen("127.0.0.1:0")
        .expect("listens");
    let addr = running.local_addr();
    let mut slow: Vec<Client> = (0..BLOCKED)
        .map(|_| Client::connect(addr, "/ws").expect("upgrade"))
        .collect();
    for client in &mut slow {
        send_event(client, "block", Value::Null);
    }
    assert!(
        wait_until(WAIT, || gate.waiting() == BLOCKED),
        "every blocking handler started: {} of {BLOCKED}",
        gate.waiting()
    );
    let mut fast = Client::connect(addr, "/ws").expect("upgrade while every handler blocks");
    for i in 0..20 {
        send_event(&mut fast, "echo", json!(format!("echo {i}")));
        assert_eq!(fast.recv_text(), format!("echo {i}"));
    }
    assert!(!gate.is_open(), "the echoes completed while {BLOCKED} handlers blocked");
    gate.release();
    for client in &mut slow {
        assert_eq!(client.recv_text(), "unblocked");
    }
    running.shutdown();
}

/// Handlers that each block a little (a short database call, under the pool's 10 ms stall
/// check) run on both workers, not one after another on one. Both workers are first held
/// at a gate while twenty clients' messages arrive; whichever asks epoll first takes the
/// batch, and the other shares the queue it leaves. (The timer thread also wakes a sleeping
/// worker when work waits in the queue; the scheduler decides whether a worker is asleep
/// at that moment, so no test here can force that case.)
#[test]
fn std_threads_slow_handlers_run_on_more_than_one_worker() {
    const CLIENTS: usize = 20;
    let gate = Arc::new(Gate::default());
    let (in_handler, most_at_once) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let gate = Arc::clone(&gate);
        let (in_handler, most_at_once) = (Arc::clone(&in_handler), Arc::clone(&most_at_once));
        App::builder()
            .route(Route::new("/ws"))
            .on("block", move |ctx, _| {
                gate.wait();
                let _ = ctx.send_text("unblocked");
            })
            .on("work", move |ctx, _| {
                let now = in_handler.fetch_add(1, Ordering::SeqCst) + 1;
                most_at_once.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                in_handler.fetch_sub(1, Ordering::SeqCst);
                let _ = ctx.send_text("done");
            })
            .build()
    };
    let running = eventum_std::Server::new(app)
        .threads(2)
        .max_threads(2)
        .listen("127.0.0.1:0")
        .expect("listens");
    let addr = running.local_addr();
    // Every handshake first: they need the workers the gate will hold.
    let mut blockers: Vec<Client> = (0..2).map(|_| Client::connect(addr, "/ws").expect("upgrade")).collect();
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| Client::connect(addr, "/ws").expect("upgrade"))
        .collect();
    for blocker in &mut blockers {
        send_event(blocker, "block", Value::Null);
    }
    assert!(
        wait_until(WAIT, || gate.waiting() == 2),
        "both workers are held: {} of 2",
        gate.waiting()
    );
    // On loopback a send is in the server's socket when it returns: all twenty wait there.
    for client in &mut clients {
        send_event(client, "work", Value::Null);
    }
    gate.release();
    for client in &mut clients {
        assert_eq!(client.recv_text(), "done");
    }
    for blocker in &mut blockers {
        assert_eq!(blocker.recv_text(), "unblocked");
    }
    assert!(
        most_at_once.load(Ordering::SeqCst) >= 2,
        "the twenty 5 ms handlers ran one at a time on one worker while the other slept"
    );
    running.shutdown();
}

/// Two eventum-std servers in one process: a handler on one sends through a handle to a
/// connection of the other, which has nothing else to do. That server's pool must be
/// woken for it, though the sender is a worker thread (of the other pool).
#[test]
fn std_threads_a_send_from_another_servers_handler_is_delivered() {
    let to: Arc<std::sync::OnceLock<eventum_core::driver::Endpoint>> = Arc::default();
    let relay = Arc::clone(&to);
    let sender = App::builder()
        .route(Route::new("/ws"))
        .on_text(move |ctx, text| {
            let id = eventum_core::app::ConnectionId(text.parse().expect("an id"));
            let handle = relay.get().and_then(|endpoint| endpoint.connection(id));
            let sent = handle.is_some_and(|handle| handle.send_text("relayed").is_ok());
            let _ = ctx.send_text(if sent { "sent" } else { "no such connection" });
        })
        .build();
    let receiver = App::builder()
        .route(Route::new("/ws"))
        .on_text(|ctx, _| {
            let _ = ctx.send_text(&ctx.id().0.to_string());
        })
        .build();
    let sending = eventum_std::Server::new(sender).listen("127.0.0.1:0").expect("listens");
    let receiving = eventum_std::Server::new(receiver)
        .listen("127.0.0.1:0")
        .expect("listens");
    assert!(to.set(receiving.server().endpoint().clone()).is_ok());
    let mut quiet = Client::connect(receiving.local_addr(), "/ws").expect("upgrade");
    quiet.send_text("id?");
    let id = quiet.recv_text();
    let mut asking = Client::connect(sending.local_addr(), "/ws").expect("upgrade");
    asking.send_text(&id);
    assert_eq!(asking.recv_text(), "sent");
    assert_eq!(quiet.recv_text(), "relayed");
    drop((quiet, asking));
    sending.shutdown();
    receiving.shutdown();
}
