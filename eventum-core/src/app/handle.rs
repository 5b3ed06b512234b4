//! Reaching a connection from anywhere: a cloneable handle over whatever queue the
//! adapter uses to carry [`Command`]s to the connection's driver.

use std::fmt;

use crate::close::CloseCode;
use crate::outbound::SharedFrame;

use super::{Command, ConnectionId, Mailbox};

/// The adapter's queue of commands for one connection (a channel to its driver task or
/// thread). Pushing never waits.
pub trait CommandQueue: Clone + Send + Sync {
    /// Queues a command; fails when the connection has ended or its queue is full.
    fn push(&self, command: Command) -> Result<(), HandleError>;
    /// Whether the connection has ended.
    fn is_closed(&self) -> bool;
    /// Queues a server command (shutdown, abort) even past the queue's bound.
    fn push_urgent(&self, command: Command);
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
/// task or thread, e.g. when work started by an event handler finishes. Every call
/// queues a [`Command`] for the connection's driver and returns at once; messages are
/// sent under the slow-consumer policy, like broadcasts. Each adapter names its own
/// `ConnectionHandle` type over its queue and puts one in every connection's typed state.
#[derive(Clone)]
pub struct ConnectionHandle<Q> {
    id: ConnectionId,
    queue: Q,
}

impl<Q: CommandQueue> ConnectionHandle<Q> {
    /// A handle for connection `id` over the adapter's `queue`.
    pub fn new(id: ConnectionId, queue: Q) -> Self {
        ConnectionHandle { id, queue }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Queues a text message.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), HandleError> {
        self.queue.push(Command::Text(text.into()))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.queue.push(Command::Binary(data.into()))
    }

    /// Queues an encoded frame (e.g. one built once for many connections).
    pub fn send_frame(&self, frame: SharedFrame) -> Result<(), HandleError> {
        self.queue.push(Command::Frame(frame))
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), HandleError> {
        self.queue.push(Command::Close(code, reason.into()))
    }

    /// Queues any command (the server uses this for `Shutdown`).
    pub fn command(&self, command: Command) -> Result<(), HandleError> {
        self.queue.push(command)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// The adapter's queue.
    pub fn queue(&self) -> &Q {
        &self.queue
    }
}

impl<Q: CommandQueue> Mailbox for ConnectionHandle<Q> {
    fn deliver(&self, frame: &SharedFrame) {
        // A full queue is recorded by the adapter's queue; the policy applies there.
        let _ = self.queue.push(Command::Frame(frame.clone()));
    }
}

impl<Q> fmt::Debug for ConnectionHandle<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
