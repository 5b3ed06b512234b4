//! One connection's shared state: its session behind a mutex, its command queue, and the
//! public handle over that queue.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;

use eventum_core::app::{Command, CommandQueue, ConnectionId, HandleError, Session};

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

/// A session shared by its reader thread and its writer thread.
pub(crate) struct Shared {
    pub(crate) id: ConnectionId,
    session: Mutex<Session>,
    /// Held from taking a batch of actions out of the session until the hub has applied
    /// them, so the reader's and the writer's batches reach the hub in session order.
    pub(crate) actions: Mutex<()>,
    pub(crate) queue: Queue,
    /// The reader thread, unparked when reading may resume.
    pub(crate) reader: OnceLock<Thread>,
}

impl Shared {
    pub(crate) fn new(session: Session, queue: Queue) -> Arc<Self> {
        Arc::new(Shared {
            id: session.id(),
            session: Mutex::new(session),
            actions: Mutex::new(()),
            queue,
            reader: OnceLock::new(),
        })
    }

    /// Locks the session. Handlers' panics are caught inside the core, so a poisoned lock
    /// can only come from a bug in this crate; the session itself stays consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_actions(&self) -> MutexGuard<'_, ()> {
        self.actions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wake_reader(&self) {
        if let Some(reader) = self.reader.get() {
            reader.unpark();
        }
    }
}

/// A cloneable, thread-safe handle to one connection served by eventum-std: send to it
/// or close it from any thread, e.g. when work started by an event handler finishes.
/// Calls queue a command for the connection's writer thread and never wait for the
/// network or for the connection's lock, so they are safe from inside its own handlers.
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
pub type ConnectionHandle = eventum_core::app::ConnectionHandle<Queue>;

/// The command queue of one connection (bounded; a full queue marks the connection
/// overwhelmed and the slow-consumer policy applies). It holds no part of the session, so
/// a handle kept after the connection ends pins nothing but the queue.
#[derive(Clone)]
pub struct Queue {
    pub(crate) jobs: Sender<Job>,
    pub(crate) state: Arc<QueueState>,
}

/// What the writer thread reads besides the queued jobs.
#[derive(Default)]
pub(crate) struct QueueState {
    /// A command was dropped because the queue was full.
    pub(crate) overflowed: AtomicBool,
    /// The connection has ended.
    pub(crate) closed: AtomicBool,
    /// A server command that must get through a full queue (shutdown, abort).
    pub(crate) urgent: Mutex<Option<Command>>,
    /// Commands queued and not yet taken by the writer. The channel is unbounded (an idle
    /// connection's queue costs a few bytes, not a preallocated ring); this count is the bound.
    pub(crate) waiting: AtomicUsize,
    /// A wake-up is queued already (the reader sends at most one at a time).
    pub(crate) wake_queued: AtomicBool,
}

impl Queue {
    pub(crate) fn new(jobs: Sender<Job>) -> Self {
        Queue {
            jobs,
            state: Arc::default(),
        }
    }

    /// Wakes the writer; wake-ups already queued are not repeated.
    pub(crate) fn wake(&self) {
        if !self.state.wake_queued.swap(true, Ordering::AcqRel) && self.jobs.send(Job::Wake).is_err() {
            self.state.wake_queued.store(false, Ordering::Release);
        }
    }

    /// Notes that the writer took a job off the channel.
    pub(crate) fn taken(&self, job: &Job) {
        match job {
            Job::Wake => self.state.wake_queued.store(false, Ordering::Release),
            Job::Run(_) => {
                self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    pub(crate) fn take_urgent(&self) -> Option<Command> {
        self.state.urgent.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl CommandQueue for Queue {
    /// Queues a command without waiting; a full queue marks the connection overwhelmed.
    fn push(&self, command: Command) -> Result<(), HandleError> {
        if self.is_closed() {
            return Err(HandleError::Closed);
        }
        if self.state.waiting.fetch_add(1, Ordering::AcqRel) >= COMMAND_CAPACITY {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            self.state.overflowed.store(true, Ordering::Relaxed);
            return Err(HandleError::Full);
        }
        self.jobs.send(Job::Run(command)).map_err(|_| {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            HandleError::Closed
        })
    }

    fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }

    /// Hands the writer a server command even when the queue is full.
    fn push_urgent(&self, command: Command) {
        *self.state.urgent.lock().unwrap_or_else(|e| e.into_inner()) = Some(command);
        self.wake();
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
