//! The per-connection threads: a reader that feeds the session, and a writer that owns
//! the output, the timers and the command queue.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventum_core::app::{Action, Session};
use eventum_core::{CloseCode, SlowConsumerPolicy};

use crate::conn::{ConnectionHandle, Job, Queue, Shared, COMMAND_CAPACITY};
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
    let (commands, inbox) = sync_channel(COMMAND_CAPACITY);
    let session = server.app.session(Instant::now(), peer);
    let shared = Shared::new(session, commands);
    let handle = ConnectionHandle::new(shared.id, Queue(Arc::clone(&shared)));
    shared.lock().state_mut().insert(handle.clone());
    server.hub.register(shared.id, handle);

    let reader = {
        let shared = Arc::clone(&shared);
        let server = Arc::clone(server);
        std::thread::Builder::new()
            .name(format!("eventum-read-{}", shared.id))
            .spawn(move || read_loop(&server, &shared, reader_stream))?
    };
    let _ = shared.reader.set(reader.thread().clone());
    write_loop(server, &shared, stream, &inbox);

    shared.closed.store(true, Ordering::Release);
    shared.wake_reader();
    let _ = reader.join();
    server.hub.unregister(shared.id);
    // The session holds a handle to itself for its handlers: drop it to free the session.
    shared.lock().state_mut().remove::<ConnectionHandle>();
    Ok(())
}

fn read_loop<T: Transport>(server: &ServerShared, shared: &Shared, mut stream: T) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if !shared.lock().wants_read() {
            // Output is backed up, a request waits for its decision, or input ended:
            // the writer unparks us when that changes.
            std::thread::park_timeout(MAX_WAIT);
            continue;
        }
        let result = stream.read(&mut buf);
        let now = Instant::now();
        let actions = {
            let mut session = shared.lock();
            match result {
                Ok(0) => session.handle_eof(now),
                Ok(n) => session.handle_input(now, &buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => session.abort(now),
            }
            take_actions(&mut session)
        };
        apply(server, shared, actions);
        let _ = shared.jobs.try_send(Job::Wake);
    }
}

fn write_loop<T: Transport>(server: &ServerShared, shared: &Shared, mut stream: T, inbox: &Receiver<Job>) {
    let slow_policy = server.app.config().slow_consumer();
    let mut received: Option<Job> = None;
    loop {
        // Under the session lock: commands, timers, then one write. Holding the lock while
        // writing makes input processing for this one connection wait on a client that
        // does not read, which is the backpressure it deserves; handles never take it.
        let (idle_wait, actions) = {
            let mut session = shared.lock();
            let now = Instant::now();
            for job in received
                .take()
                .into_iter()
                .chain(std::iter::from_fn(|| inbox.try_recv().ok()))
            {
                if let Job::Run(command) = job {
                    if let Err(e) = session.apply_command(now, command) {
                        log::debug!("connection {}: {e}", shared.id);
                    }
                }
            }
            if shared.overflowed.swap(false, Ordering::Relaxed) && slow_policy == SlowConsumerPolicy::Close {
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
                let actions = take_actions(&mut session);
                drop(session);
                apply(server, shared, actions);
                // The server closes the TCP connection first (RFC 6455 §7.1.1).
                let _ = stream.flush();
                let _ = stream.shutdown(Shutdown::Write);
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            let output = session.output();
            let idle_wait = if output.is_empty() {
                let wait = session
                    .poll_timeout()
                    .map_or(MAX_WAIT, |t| t.saturating_duration_since(now));
                Some(wait.min(MAX_WAIT))
            } else {
                match stream.write(output) {
                    Ok(0) => session.abort(now),
                    Ok(n) => session.consume_output(n),
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => session.abort(now),
                }
                None
            };
            (idle_wait, take_actions(&mut session))
        };
        apply(server, shared, actions);
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

fn take_actions(session: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| session.poll_action()).collect()
}

/// Delivers actions with no session lock held, so deliveries to this very connection
/// cannot deadlock.
fn apply(server: &ServerShared, shared: &Shared, actions: Vec<Action>) {
    for action in actions {
        server.hub.apply(shared.id, action);
    }
}
