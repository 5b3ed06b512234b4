//! The smol adapter's command queue and its [`ConnectionHandle`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use eventum_core::app::{Command, CommandQueue, HandleError};

/// How many commands may wait for one connection before it counts as overwhelmed.
pub(crate) const MAILBOX_CAPACITY: usize = 1024;

/// A cloneable, thread-safe handle to one connection served by eventum-smol: send to it
/// or close it from any task or thread, e.g. when a database call started by an event
/// handler finishes.
///
/// Handlers find it in the connection's typed state:
///
/// ```no_run
/// use eventum_core::app::{App, Route};
/// use eventum_smol::ConnectionHandle;
///
/// let app = App::builder()
///     .route(Route::new("/ws"))
///     .on("lookup", |ctx, _event| {
///         let handle = ctx.state().get::<ConnectionHandle>().cloned().expect("set by eventum-smol");
///         smol::spawn(async move {
///             let answer = "42"; // e.g. the result of a database query
///             let _ = handle.send_text(answer);
///         })
///         .detach();
///     })
///     .build();
/// # let _ = app;
/// ```
pub type ConnectionHandle = eventum_core::app::ConnectionHandle<Inbox>;

/// The sending end of a connection's command channel. The channel itself is unbounded,
/// so an idle connection's queue costs a few bytes, not a preallocated ring; the bound is
/// a count of commands waiting: past it the queue is full, and the slow-consumer policy
/// applies.
#[derive(Clone, Debug)]
pub struct Inbox {
    pub(crate) tx: async_channel::Sender<Command>,
    pub(crate) state: Arc<InboxState>,
}

#[derive(Debug, Default)]
pub(crate) struct InboxState {
    /// A command was refused because the queue was full.
    pub(crate) overflowed: AtomicBool,
    /// Commands sent and not yet taken by the driver.
    pub(crate) waiting: AtomicUsize,
}

impl CommandQueue for Inbox {
    fn push(&self, command: Command) -> Result<(), HandleError> {
        if self.state.waiting.fetch_add(1, Ordering::AcqRel) >= MAILBOX_CAPACITY {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            self.state.overflowed.store(true, Ordering::Relaxed);
            return Err(HandleError::Full);
        }
        self.tx.try_send(command).map_err(|_| {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            HandleError::Closed
        })
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn push_urgent(&self, command: Command) {
        self.state.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(command).is_err() {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
