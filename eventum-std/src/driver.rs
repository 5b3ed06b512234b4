//! The per-connection threads: a reader that feeds the session, and a writer that owns
//! the output, the timers and the mailbox. The session sits behind a mutex that neither
//! holds while it waits on the socket.

use std::io::ErrorKind;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use eventum_core::driver::{ReadBuffer, Session};

use crate::transport::Transport;

/// Most bytes copied out of the session for one write.
const WRITE_CHUNK: usize = 64 * 1024;
/// How long one blocking write may take before the writer looks at its timers again.
const WRITE_SLICE: Duration = Duration::from_millis(250);
/// Upper bound on one wait, so a missed wake-up costs at most this much.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// What the two threads of a connection share.
struct Shared {
    session: Mutex<Session>,
    /// The connection is over: the reader stops.
    done: AtomicBool,
}

impl Shared {
    /// Handlers' panics are caught inside the core, so a poisoned lock can only come from
    /// a bug in this crate; the session itself stays consistent.
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker that unparks the calling thread.
pub(crate) fn unpark_me() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// Serves one admitted connection on the calling thread (the writer) and one more thread
/// (the reader) until it is over.
pub(crate) fn drive<T: Transport>(session: Session, stream: T) -> std::io::Result<()> {
    let reader_stream = stream.try_clone()?;
    let _ = stream.set_write_timeout(Some(WRITE_SLICE));
    let writer = unpark_me();
    session.set_waker(&writer);
    let shared = Arc::new(Shared {
        session: Mutex::new(session),
        done: AtomicBool::new(false),
    });
    let reader = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("eventum-read".into())
            .spawn(move || read_loop(&shared, reader_stream, &writer))?
    };
    write_loop(&shared, stream, reader.thread());
    shared.done.store(true, Ordering::Release);
    reader.thread().unpark();
    let _ = reader.join();
    // The last reference: dropping the session unregisters it and frees its slot.
    drop(shared);
    Ok(())
}

fn read_loop<T: Transport>(shared: &Shared, mut stream: T, writer: &Waker) {
    let mut buf = ReadBuffer::default();
    while !shared.done.load(Ordering::Acquire) {
        if !shared.lock().wants_read() {
            // Output is backed up, a request waits for its decision, or input ended:
            // the writer unparks us when that changes.
            std::thread::park_timeout(MAX_WAIT);
            continue;
        }
        let result = stream.read(buf.space());
        if matches!(&result, Err(e) if e.kind() == ErrorKind::Interrupted) {
            continue;
        }
        let now = Instant::now();
        let mut session = shared.lock();
        match result {
            Ok(n) => buf.feed(&mut session, now, n),
            Err(_) => session.handle_transport_error(now),
        }
        drop(session);
        writer.wake_by_ref();
    }
}

fn write_loop<T: Transport>(shared: &Shared, mut stream: T, reader: &Thread) {
    // Bytes copied out of the session (its output's front) and how many are written;
    // they are reported as transmitted only once written.
    let (mut pending, mut written, mut unreported) = (Vec::new(), 0, 0);
    let mut unflushed = false;
    loop {
        let wait = {
            let mut session = shared.lock();
            let now = Instant::now();
            session.transmitted(std::mem::take(&mut unreported));
            if session.has_mail() {
                session.handle_mail(now);
            }
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
            if session.should_close_transport() {
                break;
            }
            if pending.is_empty() {
                let transmit = session.poll_transmit();
                for chunk in transmit.chunks() {
                    let room = WRITE_CHUNK.saturating_sub(pending.len());
                    pending.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
            let deadline = session.poll_timeout();
            pending
                .is_empty()
                .then(|| deadline.map_or(MAX_WAIT, |t| t.saturating_duration_since(now)))
        };
        // Writing may have let the core want input again (below its low-water mark).
        reader.unpark();
        if let Some(wait) = wait {
            if std::mem::take(&mut unflushed) && stream.flush().is_err() {
                // Buffering transports (TLS) hold written bytes until flushed.
                shared.lock().handle_transport_error(Instant::now());
                continue;
            }
            std::thread::park_timeout(wait.min(MAX_WAIT));
            continue;
        }
        match stream.write(&pending[written..]) {
            Ok(n) if n > 0 => {
                (written, unreported, unflushed) = (written + n, n, true);
                if written == pending.len() {
                    (pending, written) = (Vec::new(), 0);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            _ => shared.lock().handle_transport_error(Instant::now()),
        }
    }
    // The server closes the TCP connection first (RFC 6455 §7.1.1).
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.shutdown(Shutdown::Both);
}
