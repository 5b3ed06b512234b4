//! The per-connection threads: a reader that feeds the session, and a writer that owns
//! the output, the timers and the command queue.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventum_core::app::{Action, Command, CommandQueue, Session};
use eventum_core::{CloseCode, SlowConsumerPolicy};

use crate::conn::{ConnectionHandle, Job, Queue, Shared};
use crate::server::ServerShared;
use crate::transport::Transport;

/// Bytes read from the transport per call.
const READ_CHUNK: usize = 16 * 1024;
/// How long one blocking write may take before the writer looks at its timers again.
const WRITE_SLICE: Duration = Duration::from_millis(250);
/// Upper bound on one wait, so a missed wake-up costs at most this much.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Serves one connection on the calling thread (the writer) and one more thread (the
/// reader) until it is over.
pub(crate) fn drive<T: Transport>(server: &Arc<ServerShared>, stream: T, peer: Option<SocketAddr>) -> io::Result<()> {
    let reader_stream = stream.try_clone()?;
    let _ = stream.set_write_timeout(Some(WRITE_SLICE));
    let (jobs, inbox) = channel();
    let queue = Queue::new(jobs);
    let session = server.app.session(Instant::now(), peer);
    let shared = Shared::new(session, queue.clone());
    let handle = ConnectionHandle::new(shared.id, queue);
    shared.lock().state_mut().insert(handle.clone());
    server.hub.register(shared.id, handle);
    // From here on, every way out (errors, panics) goes through the guard's teardown.
    let teardown = Teardown {
        server,
        shared: &shared,
    };
    if server.stopping.load(std::sync::atomic::Ordering::Acquire) {
        // Accepted while the server stops: it will not be in shutdown's list.
        shared.queue.push_urgent(Command::Shutdown);
    }

    let reader = {
        let shared = Arc::clone(&shared);
        let server = Arc::clone(server);
        std::thread::Builder::new()
            .name(format!("eventum-read-{}", shared.id))
            .spawn(move || read_loop(&server, &shared, reader_stream))?
    };
    let _ = shared.reader.set(reader.thread().clone());
    write_loop(server, &shared, stream, &inbox);
    drop(teardown);
    let _ = reader.join();
    Ok(())
}

/// Ends a connection however its driver stops: marks it closed, wakes its reader, leaves
/// the hub, and breaks the session's reference to its own handle.
struct Teardown<'a> {
    server: &'a ServerShared,
    shared: &'a Shared,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let shared = self.shared;
        shared.queue.state.closed.store(true, Ordering::Release);
        shared.wake_reader();
        let mut session = shared.lock();
        self.server.hub.unregister(shared.id, session.rooms());
        session.state_mut().remove::<ConnectionHandle>();
    }
}

fn read_loop<T: Transport>(server: &ServerShared, shared: &Shared, mut stream: T) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if shared.queue.state.closed.load(Ordering::Acquire) {
            return;
        }
        if !shared.lock().wants_read() {
            // Output is backed up, a request waits for its decision, or input ended:
            // the writer unparks us when that changes.
            std::thread::park_timeout(MAX_WAIT);
            continue;
        }
        let result = stream.read(&mut buf);
        if matches!(&result, Err(e) if e.kind() == ErrorKind::Interrupted) {
            continue;
        }
        let now = Instant::now();
        with_actions(server, shared, |session| match result {
            Ok(0) => session.handle_eof(now),
            Ok(n) => session.handle_input(now, &buf[..n]),
            Err(_) => session.abort(now),
        });
        shared.queue.wake();
    }
}

fn write_loop<T: Transport>(server: &ServerShared, shared: &Shared, mut stream: T, inbox: &Receiver<Job>) {
    let slow_policy = server.app.config().slow_consumer();
    let mut received: Option<Job> = None;
    let mut unflushed = false;
    loop {
        // Under the session lock: commands, timers, then one write. Holding the lock while
        // writing makes input processing for this one connection wait on a client that
        // does not read, which is the backpressure it deserves; handles never take it.
        let (idle_wait, close_now) = with_actions(server, shared, |session| {
            let now = Instant::now();
            let queued = received
                .take()
                .into_iter()
                .chain(std::iter::from_fn(|| inbox.try_recv().ok()));
            for job in queued {
                shared.queue.taken(&job);
                if let Job::Run(command) = job {
                    run_command(session, now, command);
                }
            }
            if let Some(command) = shared.queue.take_urgent() {
                run_command(session, now, command);
            }
            if shared.queue.state.overflowed.swap(false, Ordering::Relaxed) && slow_policy == SlowConsumerPolicy::Close
            {
                log::debug!(
                    "connection {}: command queue overflowed; closing as a slow consumer",
                    shared.id
                );
                let _ = session.close(now, CloseCode::POLICY, "slow consumer");
            }
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
            if session.should_close_transport() {
                return (None, true);
            }
            let output = session.output();
            if output.is_empty() {
                if std::mem::take(&mut unflushed) && stream.flush().is_err() {
                    // Buffering transports (TLS) hold written bytes until flushed.
                    session.abort(now);
                    return (None, false);
                }
                let wait = session
                    .poll_timeout()
                    .map_or(MAX_WAIT, |t| t.saturating_duration_since(now));
                return (Some(wait.min(MAX_WAIT)), false);
            }
            match stream.write(output) {
                Ok(0) => session.abort(now),
                Ok(n) => {
                    session.consume_output(n);
                    unflushed = true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => session.abort(now),
            }
            (None, false)
        });
        if close_now {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Write);
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        shared.wake_reader();
        if let Some(wait) = idle_wait {
            match inbox.recv_timeout(wait) {
                Ok(job) => received = Some(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

fn run_command(session: &mut Session, now: Instant, command: Command) {
    if let Err(e) = session.apply_command(now, command) {
        log::debug!("connection {}: {e}", session.id());
    }
}

/// Runs `f` on the session, then hands the actions it produced to the hub, in order with
/// the other thread's batches and with no session lock held (deliveries to this very
/// connection only queue a command, so they cannot deadlock).
fn with_actions<R>(server: &ServerShared, shared: &Shared, f: impl FnOnce(&mut Session) -> R) -> R {
    let _ordered = shared.lock_actions();
    let (result, actions) = {
        let mut session = shared.lock();
        let result = f(&mut session);
        let actions: Vec<Action> = std::iter::from_fn(|| session.poll_action()).collect();
        (result, actions)
    };
    for action in actions {
        server.hub.apply(shared.id, action);
    }
    result
}
