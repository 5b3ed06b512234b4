//! Overload on both adapters: a mailbox that overflows while its connection's handler is
//! busy (each slow-consumer policy), and a shutdown that meets 50 busy connections and
//! clients still connecting.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventum_core::app::{App, ConnectionId, Route};
use eventum_core::{CloseCause, Config, SlowConsumerPolicy};
use eventum_e2e::tungstenite::Message;
use eventum_e2e::{
    for_both_adapters, generous, upgrade_request, wait_until, Adapter, Client, Gate, Options, RecvError, WAIT,
};

for_both_adapters!(
    mailbox_overflow_closes_with_1008_under_the_close_policy,
    mailbox_overflow_drops_and_keeps_the_connection_under_the_drop_policy,
    shutdown_meets_busy_connections_and_racing_connects,
);

/// Bytes a connection's mailbox (and output) may hold in these tests.
const BACKLOG: usize = 64 << 10;
/// Each message sent through the handle.
const CHUNK: usize = 8 << 10;

/// `/ws`: `block` waits at the gate, then sends "unblocked"; any other text is echoed.
/// Records every disconnect's code and cause.
/// Every disconnect's close code and cause, in order.
type Closes = Arc<Mutex<Vec<(u16, CloseCause)>>>;

fn gated_app(policy: SlowConsumerPolicy, gate: &Arc<Gate>) -> (App, Closes) {
    let closed = Arc::new(Mutex::new(Vec::new()));
    let (gate, seen) = (Arc::clone(gate), Arc::clone(&closed));
    let config = Config::builder()
        .water_marks(BACKLOG / 2, BACKLOG / 4)
        .max_backlog(BACKLOG)
        .slow_consumer(policy)
        .build()
        .expect("a valid config");
    let app = App::builder()
        .config(config)
        .route(Route::new("/ws"))
        .on_text(move |ctx, text| {
            if text == "block" {
                gate.wait();
                let _ = ctx.send_text("unblocked");
            } else if text == "id" {
                let _ = ctx.send_text(&ctx.id().0.to_string());
            } else {
                let _ = ctx.send_text(text);
            }
        })
        .on_disconnect(move |_, closed| {
            seen.lock().expect("closed").push((closed.code.0, closed.cause.clone()));
        })
        .build();
    (app, closed)
}

/// Opens a connection, blocks its handler, and fills its mailbox through a handle from
/// this thread until a send is refused. Returns the client and how many sends were
/// accepted (asserting that the mailbox did overflow).
fn overflow(server: &eventum_e2e::TestServer, gate: &Gate) -> (Client, usize) {
    let mut client = server.client("/ws");
    client.send_text("id");
    let id: u64 = client.recv_text().parse().expect("an id");
    let handle = server.connection(id).expect("a handle");
    assert_eq!(handle.id(), ConnectionId(id));
    client.send_text("block");
    assert!(wait_until(WAIT, || gate.waiting() == 1), "the handler blocked");
    let chunk = "m".repeat(CHUNK);
    let mut accepted = 0;
    while handle.send_text(&chunk).is_ok() {
        accepted += 1;
        assert!(accepted <= BACKLOG / CHUNK, "the mailbox took more than its bound");
    }
    assert!(accepted > 0, "the mailbox took nothing before it was full");
    (client, accepted)
}

fn mailbox_overflow_closes_with_1008_under_the_close_policy(adapter: Adapter) {
    let gate = Arc::new(Gate::default());
    let (app, closed) = gated_app(SlowConsumerPolicy::Close, &gate);
    let server = adapter.start(app);
    let (mut client, _) = overflow(&server, &gate);
    gate.release();
    let (code, _) = client.expect_close_frame();
    assert_eq!(code, 1008, "{adapter:?}");
    assert!(server.wait_connections(0));
    assert!(wait_until(WAIT, || closed.lock().expect("closed").len() == 1));
    assert_eq!(closed.lock().expect("closed")[0], (1008, CloseCause::SlowConsumer));
    server.shutdown();
}

fn mailbox_overflow_drops_and_keeps_the_connection_under_the_drop_policy(adapter: Adapter) {
    let gate = Arc::new(Gate::default());
    let (app, closed) = gated_app(SlowConsumerPolicy::Drop, &gate);
    let server = adapter.start(app);
    let (mut client, accepted) = overflow(&server, &gate);
    gate.release();
    // Everything accepted arrives, whole; what was refused does not.
    let (mut unblocked, mut chunks) = (false, 0);
    while !unblocked || chunks < accepted {
        match client.recv() {
            Message::Text(text) if text.as_str() == "unblocked" => unblocked = true,
            Message::Text(text) if text.len() == CHUNK => chunks += 1,
            other => panic!("{adapter:?}: unexpected {other:?}"),
        }
    }
    assert_eq!(chunks, accepted);
    // Still open, and the mailbox takes mail again.
    client.send_text("still here");
    assert_eq!(client.recv_text(), "still here");
    match client.try_recv(Duration::from_millis(200)) {
        Err(RecvError::Timeout) => {}
        other => panic!("{adapter:?}: nothing more was queued, got {other:?}"),
    }
    assert!(closed.lock().expect("closed").is_empty(), "no disconnect under Drop");
    assert_eq!(server.connections(), 1);
    server.shutdown();
    assert_eq!(closed.lock().expect("closed").len(), 1);
}

/// An upgrade request on a fresh TCP connection: the status code of the answer, or
/// `None` when the connection was refused, reset or closed without one.
fn try_upgrade(addr: std::net::SocketAddr) -> Option<(u16, TcpStream)> {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream.write_all(&upgrade_request("/ws")).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    let status = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
    Some((status, stream))
}

fn shutdown_meets_busy_connections_and_racing_connects(adapter: Adapter) {
    const BUSY: usize = 50;
    let disconnects = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&disconnects);
    let app = App::builder()
        .route(Route::new("/ws"))
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .on_disconnect(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    let options = Options {
        shutdown_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let server = adapter.start_with(app, options);
    let addr = server.addr();
    let echoed = Arc::new(AtomicUsize::new(0));
    let busy: Vec<_> = (0..BUSY)
        .map(|i| {
            let mut client = server.client("/ws");
            let echoed = Arc::clone(&echoed);
            std::thread::spawn(move || {
                // Echo until the server's close: its code ends the loop.
                for n in 0.. {
                    client.send_text(&format!("{i}:{n}"));
                    match client.try_recv(WAIT) {
                        Ok(Message::Text(text)) if text.as_str() == format!("{i}:{n}") => {}
                        Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                        other => panic!("client {i}: unexpected {other:?}"),
                    }
                    if n == 0 {
                        echoed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                None
            })
        })
        .collect();
    assert!(
        wait_until(WAIT, || echoed.load(Ordering::SeqCst) == BUSY),
        "every busy client echoed before the stop"
    );
    // Clients that keep connecting while the server stops, each answered 101 (then closed
    // with the rest), 503, or refused once the listener is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let connecting = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut upgraded, mut refused, mut held) = (0, 0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match try_upgrade(addr) {
                    Some((101, stream)) => {
                        upgraded += 1;
                        held.push(stream);
                    }
                    Some((503, _)) | None => refused += 1,
                    Some((status, _)) => panic!("a racing connect was answered {status}"),
                }
            }
            (upgraded, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    server.shutdown();
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(
        took < generous(Duration::from_secs(3)),
        "{adapter:?}: shutdown took {took:?}"
    );
    for (i, client) in busy.into_iter().enumerate() {
        assert_eq!(
            client.join().expect("busy client"),
            Some(1001),
            "{adapter:?}: client {i}"
        );
    }
    let (upgraded, refused) = connecting.join().expect("connecting client");
    assert!(upgraded + refused > 0, "the racing connects ran");
    assert_eq!(
        disconnects.load(Ordering::SeqCst),
        BUSY + upgraded,
        "{adapter:?}: one disconnect per upgraded connection ({upgraded} racing)"
    );
}
