//! The smol adapter's command queue and its [`ConnectionHandle`].

use std::sync::atomic::{AtomicBool, Ordering};
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

/// The sending end of a connection's command channel (bounded; a full channel marks the
/// connection overwhelmed and the slow-consumer policy applies).
#[derive(Clone, Debug)]
pub struct Inbox {
    pub(crate) tx: async_channel::Sender<Command>,
    pub(crate) overflowed: Arc<AtomicBool>,
}

impl CommandQueue for Inbox {
    fn push(&self, command: Command) -> Result<(), HandleError> {
        match self.tx.try_send(command) {
            Ok(()) => Ok(()),
            Err(async_channel::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Relaxed);
                Err(HandleError::Full)
            }
            Err(async_channel::TrySendError::Closed(_)) => Err(HandleError::Closed),
        }
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
