//! One connection's shared state: its session behind a mutex, its command queue, and the
//! public handle to it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;

use eventum_core::app::{Command, ConnectionId, Mailbox, Session};
use eventum_core::{CloseCode, SharedFrame};

/// How many commands may wait for one connection before it counts as overwhelmed.
pub(crate) const COMMAND_CAPACITY: usize = 1024;

/// Work for a connection's writer thread, which owns the timers and the output.
#[derive(Debug)]
pub(crate) enum Job {
    /// The reader changed the session (input handled): look at its output and deadline.
    Wake,
    /// A command from a handle, the hub or the server.
    Run(Command),
}

/// A session shared by its reader thread, its writer thread and every handle.
pub(crate) struct Shared {
    pub(crate) id: ConnectionId,
    session: Mutex<Session>,
    pub(crate) jobs: SyncSender<Job>,
    /// Set when a command was dropped because the queue was full.
    pub(crate) overflowed: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// The reader thread, unparked when reading may resume.
    pub(crate) reader: OnceLock<Thread>,
}

impl Shared {
    pub(crate) fn new(session: Session, jobs: SyncSender<Job>) -> Arc<Self> {
        Arc::new(Shared {
            id: session.id(),
            session: Mutex::new(session),
            jobs,
            overflowed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            reader: OnceLock::new(),
        })
    }

    /// Locks the session. Handlers' panics are caught inside the core, so a poisoned lock
    /// can only come from a bug in this crate; the session itself stays consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a command without waiting; a full queue marks the connection overwhelmed.
    pub(crate) fn send(&self, command: Command) -> Result<(), HandleError> {
        match self.jobs.try_send(Job::Run(command)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Relaxed);
                Err(HandleError::Full)
            }
            Err(TrySendError::Disconnected(_)) => Err(HandleError::Closed),
        }
    }

    pub(crate) fn wake_reader(&self) {
        if let Some(reader) = self.reader.get() {
            reader.unpark();
        }
    }
}

/// Why a handle could not queue a command.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The connection has ended.
    Closed,
    /// The connection's queue is full (the client is not keeping up); the command was
    /// dropped and the slow-consumer policy applies.
    Full,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandleError::Closed => "the connection has ended",
            HandleError::Full => "the connection's queue is full",
        })
    }
}

impl std::error::Error for HandleError {}

/// A cloneable, thread-safe handle to one connection: send to it or close it from any
/// thread, e.g. when work started by an event handler finishes. Calls queue a command for
/// the connection's writer thread and never wait for the network or for the connection's
/// lock, so they are safe from inside its own handlers too.
///
/// Handlers find it in the connection's typed state:
///
/// ```no_run
/// use eventum_core::app::{App, Route};
/// use eventum_std::ConnectionHandle;
///
/// let app = App::builder()
///     .route(Route::new("/ws"))
///     .on("lookup", |ctx, _event| {
///         let handle = ctx.state().get::<ConnectionHandle>().cloned().expect("set by eventum-std");
///         std::thread::spawn(move || {
///             let answer = "42"; // e.g. the result of a database query
///             let _ = handle.send_text(answer);
///         });
///     })
///     .build();
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct ConnectionHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ConnectionHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.shared.id
    }

    /// Queues a text message.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), HandleError> {
        self.shared.send(Command::Text(text.into()))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.shared.send(Command::Binary(data.into()))
    }

    /// Queues an encoded frame (e.g. one built once for many connections).
    pub fn send_frame(&self, frame: SharedFrame) -> Result<(), HandleError> {
        self.shared.send(Command::Frame(frame))
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), HandleError> {
        self.shared.send(Command::Close(code, reason.into()))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl Mailbox for ConnectionHandle {
    fn deliver(&self, frame: &SharedFrame) {
        let _ = self.shared.send(Command::Frame(frame.clone()));
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}
