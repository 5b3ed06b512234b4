//! eventum in a hand-written mio (epoll) loop: the chat app, rooms and broadcasts included,
//! with no adapter, in one thread. The loop reads, writes, sleeps until the next deadline,
//! and wakes when a connection has mail; the core's driver kit does the rest.
//! `cargo run -p eventum-std --example custom_loop [ADDRESS]` (default 127.0.0.1:9003)

use std::io::{self, Read, Write};
use std::{collections::HashMap, sync::Arc, sync::Mutex, task::Wake, task::Waker, time::Instant};

use eventum_core::{app::App, driver::Endpoint, driver::Session};
use mio::{net::TcpListener, net::TcpStream, Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);

/// Wakes the loop when mail arrives for connection `.0` (a broadcast from another one, a
/// handle, shutdown) and notes it in `.1`.
struct MailWaker(Token, Arc<Mutex<Vec<Token>>>, Arc<mio::Waker>);

impl Wake for MailWaker {
    fn wake(self: Arc<Self>) {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).push(self.0);
        let _ = self.2.wake();
    }
}

struct Conn {
    stream: TcpStream,
    session: Session,
    /// Readiness not yet used up: edge-triggered events do not repeat, so remember it.
    readable: bool,
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let listener = std::net::TcpListener::bind(addr)?;
    println!("custom-loop chat on http://{}/", listener.local_addr()?);
    serve(listener, eventum_demo::chat_app())
}

/// Serves `app` on `listener` until an I/O error of the loop itself.
pub fn serve(listener: std::net::TcpListener, app: App) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let endpoint = Endpoint::new(app);
    let mut poll = Poll::new()?;
    let wake_loop = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
    let woken = Arc::new(Mutex::new(Vec::new()));
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    endpoint.app().startup();
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let (mut next_token, mut events, mut buf) = (2, Events::with_capacity(256), vec![0u8; 16 * 1024]);
    loop {
        // Sleep until the earliest deadline of any connection, readiness, or mail.
        let now = Instant::now();
        let deadline = conns.values().filter_map(|c| c.session.poll_timeout()).min();
        poll.poll(&mut events, deadline.map(|t| t.saturating_duration_since(now)))?;
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    let (mut stream, peer) = match listener.accept() {
                        Ok(accepted) => accepted,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // A client gave up before we accepted it: take the next one.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                        // Out of descriptors and the like: try again on the next edge.
                        Err(_) => break,
                    };
                    let Ok(session) = endpoint.admit(now, Some(peer)).map_err(|busy| stream.write(busy.response()))
                    else {
                        continue; // over the limit: 503 written (best effort), stream dropped
                    };
                    let token = Token(next_token);
                    next_token += 1;
                    poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                    let waker = MailWaker(token, Arc::clone(&woken), Arc::clone(&wake_loop));
                    session.set_waker(&Waker::from(Arc::new(waker)));
                    conns.insert(token, Conn { stream, session, readable: false });
                },
                WAKE => {}
                token => {
                    if let Some(conn) = conns.get_mut(&token) {
                        conn.readable |= event.is_readable() || event.is_read_closed();
                    }
                }
            }
        }
        // Taken out first: the mail may wake others, and their wakers take this lock.
        let tokens = std::mem::take(&mut *woken.lock().unwrap_or_else(|e| e.into_inner()));
        for token in tokens {
            if let Some(conn) = conns.get_mut(&token) {
                conn.session.handle_mail(now);
            }
        }
        for conn in conns.values_mut() {
            if conn.session.poll_timeout().is_some_and(|t| t <= now) {
                conn.session.handle_timeout(now);
            }
            drive(conn, &mut buf, now);
        }
        // The server closes TCP first; dropping the stream deregisters it, and dropping
        // the session leaves its rooms and frees its slot.
        conns.retain(|_, conn| !conn.session.should_close_transport());
    }
}

/// Moves bytes both ways until the socket would block or the core wants to pause.
fn drive(conn: &mut Conn, buf: &mut [u8], now: Instant) {
    loop {
        let mut progress = false;
        while conn.readable && conn.session.wants_read() {
            match conn.stream.read(buf) {
                // After either, the session wants no more input.
                Ok(0) => conn.session.handle_eof(now),
                Ok(n) => conn.session.handle_input(now, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => conn.session.handle_transport_error(now),
            }
            progress = true;
        }
        progress |= conn.session.write_to(now, &mut conn.stream) > 0;
        // Writing may have let the core want input again (below its low-water mark).
        if !(progress && conn.readable && conn.session.wants_read()) {
            return;
        }
    }
}
