//! Embedding eventum-core in a hand-written readiness loop (mio, edge-triggered epoll):
//! the echo app served with no adapter at all, in one thread. The same few steps fit any
//! event loop: read → handle_input, write the output, sleep until the next deadline.
//!
//! `cargo run -p eventum-std --example custom_loop [ADDRESS]` (default 127.0.0.1:9003)

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::Instant;

use eventum_core::app::{Action, Session};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);

struct Conn {
    stream: TcpStream,
    session: Session,
    /// Readiness not yet used up: edge-triggered events do not repeat, so remember it.
    readable: bool,
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let app = eventum_demo::echo_app();
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(
        addr.parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
    )?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("custom-loop echo on ws://{}/", listener.local_addr()?);
    app.startup();

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next_token = 1;
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Sleep until the earliest deadline of any connection.
        let now = Instant::now();
        let timeout = conns
            .values()
            .filter_map(|c| c.session.poll_timeout())
            .min()
            .map(|t| t.saturating_duration_since(now));
        poll.poll(&mut events, timeout)?;

        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, peer)) => {
                            let token = Token(next_token);
                            next_token += 1;
                            poll.registry()
                                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                            let session = app.session(Instant::now(), Some(peer));
                            conns.insert(
                                token,
                                Conn {
                                    stream,
                                    session,
                                    readable: false,
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // A client gave up before we accepted it: take the next one.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                        // Out of descriptors and the like: try again on the next edge.
                        Err(e) => {
                            eprintln!("accept failed: {e}");
                            break;
                        }
                    }
                }
            } else if let Some(conn) = conns.get_mut(&event.token()) {
                conn.readable |= event.is_readable() || event.is_read_closed();
            }
        }

        let now = Instant::now();
        for conn in conns.values_mut() {
            if conn.session.poll_timeout().is_some_and(|t| t <= now) {
                conn.session.handle_timeout(now);
            }
            drive(conn, &mut buf, now);
            // The echo app sends nothing to other connections; an app with rooms would
            // hand these to an eventum_core::app::Hub whose mailboxes queue into this loop.
            while let Some(action) = conn.session.poll_action() {
                if !matches!(action, Action::Join { .. } | Action::Leave { .. }) {
                    eprintln!("dropping {action:?}: this loop delivers no cross-connection messages");
                }
            }
        }
        conns.retain(|_, conn| {
            let done = conn.session.should_close_transport();
            if done {
                // The server closes TCP first; dropping the stream deregisters it.
                let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            }
            !done
        });
    }
}

/// Moves bytes both ways until the socket would block or the core wants to pause.
fn drive(conn: &mut Conn, buf: &mut [u8], now: Instant) {
    loop {
        let mut progress = false;
        while conn.readable && conn.session.wants_read() {
            match conn.stream.read(buf) {
                Ok(0) => {
                    conn.session.handle_eof(now);
                    conn.readable = false;
                }
                Ok(n) => conn.session.handle_input(now, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.session.abort(now);
                    conn.readable = false;
                }
            }
            progress = true;
        }
        while !conn.session.output().is_empty() {
            match conn.stream.write(conn.session.output()) {
                Ok(0) => conn.session.abort(now),
                Ok(n) => {
                    conn.session.consume_output(n);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => conn.session.abort(now),
            }
        }
        // Writing may have let the core want input again (below its low-water mark).
        if !(progress && conn.readable && conn.session.wants_read()) {
            return;
        }
    }
}
