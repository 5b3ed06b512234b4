//! Reaching a connection from anywhere: its mailbox (used by the hub) and the public,
//! cloneable [`ConnectionHandle`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eventum_core::app::{Command, ConnectionId, Mailbox};
use eventum_core::{CloseCode, SharedFrame};

/// How many commands may wait for one connection before it counts as overwhelmed.
pub(crate) const MAILBOX_CAPACITY: usize = 1024;

/// The sending end of a connection's command queue.
#[derive(Clone)]
pub(crate) struct Inbox {
    pub(crate) tx: async_channel::Sender<Command>,
    /// Set when a frame had to be dropped because the queue was full.
    pub(crate) overflowed: Arc<AtomicBool>,
}

impl Inbox {
    pub(crate) fn send(&self, command: Command) -> Result<(), HandleError> {
        match self.tx.try_send(command) {
            Ok(()) => Ok(()),
            Err(async_channel::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Relaxed);
                Err(HandleError::Full)
            }
            Err(async_channel::TrySendError::Closed(_)) => Err(HandleError::Closed),
        }
    }
}

impl Mailbox for Inbox {
    fn deliver(&self, frame: &SharedFrame) {
        let _ = self.send(Command::Frame(frame.clone()));
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
/// task or thread, e.g. when a database call started by an event handler finishes.
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
#[derive(Clone)]
pub struct ConnectionHandle {
    pub(crate) id: ConnectionId,
    pub(crate) inbox: Inbox,
}

impl ConnectionHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Queues a text message.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), HandleError> {
        self.inbox.send(Command::Text(text.into()))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.inbox.send(Command::Binary(data.into()))
    }

    /// Queues an encoded frame (e.g. one built once for many connections).
    pub fn send_frame(&self, frame: SharedFrame) -> Result<(), HandleError> {
        self.inbox.send(Command::Frame(frame))
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), HandleError> {
        self.inbox.send(Command::Close(code, reason.into()))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inbox.tx.is_closed()
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
