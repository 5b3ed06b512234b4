//! The per-connection driver task: the core's loop over an async byte stream.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use eventum_core::app::{Command, Session};
use eventum_core::{CloseCode, SlowConsumerPolicy};
use smol::future::{self, FutureExt};
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::Timer;

use crate::handle::{ConnectionHandle, Inbox};
use crate::server::Shared;

/// The read buffer starts small, so idle connections stay cheap, and doubles up to the
/// largest size whenever a read fills it.
const READ_CHUNK_MIN: usize = 512;
const READ_CHUNK_MAX: usize = 64 * 1024;

/// What woke the driver.
enum Wake {
    Wrote(io::Result<usize>),
    Flushed(io::Result<()>),
    Read(io::Result<usize>),
    Command(Command),
    Timer,
}

/// Serves one connection until it is over. All protocol state lives in the session, so
/// a future dropped at any await point loses nothing but the bytes not yet read.
pub(crate) async fn drive<S>(shared: Arc<Shared>, stream: S, peer: Option<SocketAddr>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, rx) = async_channel::unbounded();
    let inbox = Inbox {
        tx,
        state: Arc::default(),
    };
    let inbox_state = Arc::clone(&inbox.state);
    let mut session = shared.app.session(Instant::now(), peer);
    let id = session.id();
    let handle = ConnectionHandle::new(id, inbox);
    session.state_mut().insert(handle.clone());
    shared.hub.register(id, handle);
    let _registration = Registration {
        shared: &shared,
        session_id: id,
    };
    if shared.stopping.load(Ordering::Acquire) {
        // Accepted while the server stops: it will not be in shutdown's list.
        run_command(&mut session, Instant::now(), Command::Shutdown);
    }
    let slow_policy = shared.app.config().slow_consumer();
    let close_timeout = shared.app.config().close_timeout();

    let (mut reader, mut writer) = smol::io::split(stream);
    let mut buf = Vec::new();
    let mut unflushed = false;
    let mut reads_in_a_row = 0u32;
    loop {
        while let Some(action) = session.poll_action() {
            shared.hub.apply(id, action);
        }
        if session.should_close_transport() {
            // The server closes the TCP connection first (RFC 6455 §7.1.1); a transport
            // that cannot even close (a TLS peer that does not read) gets the close timeout.
            let _ = writer
                .close()
                .or(async {
                    Timer::after(close_timeout).await;
                    Ok(())
                })
                .await;
            return Ok(());
        }
        // A client that always has bytes ready must not keep this executor thread from
        // its other tasks: yield now and then.
        if reads_in_a_row >= 16 {
            reads_in_a_row = 0;
            future::yield_now().await;
        }
        let deadline = session.poll_timeout();
        let wants_read = session.wants_read();
        if wants_read && buf.is_empty() {
            buf.resize(READ_CHUNK_MIN, 0);
        }
        let output = session.output();
        let wake = {
            let write = async {
                if !output.is_empty() {
                    Wake::Wrote(writer.write(output).await)
                } else if unflushed {
                    // Buffering transports (TLS) hold written bytes until flushed.
                    Wake::Flushed(writer.flush().await)
                } else {
                    future::pending().await
                }
            };
            let read = async {
                if wants_read {
                    Wake::Read(reader.read(&mut buf).await)
                } else {
                    future::pending().await
                }
            };
            let command = async {
                match rx.recv().await {
                    Ok(command) => {
                        inbox_state.waiting.fetch_sub(1, Ordering::AcqRel);
                        Wake::Command(command)
                    }
                    // Unreachable while the session holds a handle; wait for other wakes.
                    Err(_) => future::pending().await,
                }
            };
            let timer = async {
                match deadline {
                    Some(at) => {
                        Timer::at(at).await;
                        Wake::Timer
                    }
                    None => future::pending().await,
                }
            };
            // Commands and timers first, so a busy reader cannot starve them.
            command.or(timer).or(write).or(read).await
        };
        let now = Instant::now();
        reads_in_a_row = if matches!(wake, Wake::Read(_)) {
            reads_in_a_row + 1
        } else {
            0
        };
        match wake {
            Wake::Wrote(Ok(0)) | Wake::Wrote(Err(_)) | Wake::Flushed(Err(_)) => session.abort(now),
            Wake::Wrote(Ok(n)) => {
                session.consume_output(n);
                unflushed = true;
            }
            Wake::Flushed(Ok(())) => unflushed = false,
            Wake::Read(Ok(0)) => session.handle_eof(now),
            Wake::Read(Ok(n)) => {
                session.handle_input(now, &buf[..n]);
                if n == buf.len() && buf.len() < READ_CHUNK_MAX {
                    buf.resize(buf.len() * 2, 0);
                }
                if !session.wants_read() {
                    // Idle or paused connections keep no read buffer.
                    buf = Vec::new();
                }
            }
            Wake::Read(Err(_)) => session.abort(now),
            Wake::Command(command) => {
                run_command(&mut session, now, command);
                // Take every command waiting, so a burst does not fill the queue.
                while let Ok(command) = rx.try_recv() {
                    inbox_state.waiting.fetch_sub(1, Ordering::AcqRel);
                    run_command(&mut session, now, command);
                }
            }
            Wake::Timer => session.handle_timeout(now),
        }
        if inbox_state.overflowed.swap(false, Ordering::Relaxed) && slow_policy == SlowConsumerPolicy::Close {
            log::debug!("connection {id}: mailbox overflowed; closing as a slow consumer");
            let _ = session.close(now, CloseCode::POLICY, "slow consumer");
        }
    }
}

fn run_command(session: &mut Session, now: Instant, command: Command) {
    if let Err(e) = session.apply_command(now, command) {
        log::debug!("connection {}: {e}", session.id());
    }
}

/// Removes the connection from the hub and the count when its driver ends, however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    session_id: eventum_core::app::ConnectionId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // A session that ended left its rooms through Leave actions already.
        self.shared.hub.unregister(self.session_id, []);
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}
