//! Reaching a connection from anywhere: its bounded [`Mailbox`] of commands, and the
//! portable [`ConnectionHandle`] over it that every adapter hands out.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use crate::close::CloseCode;
use crate::outbound::SharedFrame;

use super::ConnectionId;

/// What one waiting command counts for besides its frame or reason bytes: the queue's own
/// memory, so that a flood of tiny frames is bounded too.
const COMMAND_COST: usize = 64;

/// Work for a connection that arrives from elsewhere (a handle, the hub, the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Deliver an encoded frame (a broadcast, a send by id, a handle's message).
    Deliver(SharedFrame),
    /// Start the close handshake.
    Close(CloseCode, String),
    /// The server is stopping: close with 1001 (or drop a connection not open yet).
    Shutdown,
    /// Drop the connection now (its disconnect hook still runs).
    Abort,
}

/// One connection's queue of [`Command`]s: filled from any thread, drained by the
/// connection's driver. It is bounded in bytes, by the same limit as the connection's
/// output ([`Config::max_backlog`](crate::Config::max_backlog)): a command that would pass
/// it is refused and the connection is marked overwhelmed, and the slow-consumer policy
/// applies when the driver drains it. Counting bytes rather than commands keeps a busy
/// room's many small broadcasts from looking like a slow consumer while the driver is
/// briefly busy. The waker is woken when the queue goes from empty to not empty, so a
/// burst costs the driver one wake-up.
#[derive(Debug)]
pub(crate) struct Mailbox {
    inner: Mutex<Inner>,
    /// Most bytes the waiting commands may hold. (`u32`, as `Inner::bytes`: every
    /// connection has a mailbox, and the two `usize`s made it a size class larger; a
    /// backlog limit above 4 GiB bounds the mailbox at 4 GiB.)
    limit: u32,
    /// Whether commands wait or one was refused: `has_mail` without the lock, which a
    /// driver asks on every pass. Changed only with the lock held, next to what it mirrors.
    pending: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    commands: VecDeque<Command>,
    /// What the waiting commands hold, in bytes (see `COMMAND_COST`); saturates, which
    /// only server commands queued past the limit can reach.
    bytes: u32,
    /// A command was refused because the queue was full.
    overflowed: bool,
    /// The connection has ended: nothing more is accepted.
    closed: bool,
    /// The connection's close has begun: it can send nothing more, so messages and closes
    /// are refused (as `Closed`) while server commands still queue.
    refusing: bool,
    waker: Option<Waker>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox::new(crate::Config::default().max_backlog())
    }
}

impl Command {
    fn cost(&self) -> usize {
        COMMAND_COST
            + match self {
                Command::Deliver(frame) => frame.len(),
                Command::Close(_, reason) => reason.len(),
                Command::Shutdown | Command::Abort => 0,
            }
    }
}

impl Mailbox {
    /// An empty mailbox holding at most `limit` bytes of commands.
    pub(crate) fn new(limit: usize) -> Self {
        Mailbox {
            inner: Mutex::default(),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            pending: AtomicBool::new(false),
        }
    }

    /// Queues a command, within the bound.
    pub(crate) fn push(&self, command: Command) -> Result<(), HandleError> {
        let mut inner = self.lock();
        if inner.closed || inner.refusing {
            return Err(HandleError::Closed);
        }
        if inner.bytes as usize + command.cost() > self.limit as usize {
            crate::observe::delivery_dropped();
            inner.overflowed = true;
            self.pending.store(true, Ordering::Release);
            return Err(HandleError::Full);
        }
        self.queue(inner, command);
        Ok(())
    }

    /// Queues a server command (shutdown, abort) even past the bound.
    pub(crate) fn push_urgent(&self, command: Command) {
        let inner = self.lock();
        if !inner.closed {
            self.queue(inner, command);
        }
    }

    fn queue(&self, mut inner: MutexGuard<'_, Inner>, command: Command) {
        let was_empty = inner.commands.is_empty();
        let cost = u32::try_from(command.cost()).unwrap_or(u32::MAX);
        inner.bytes = inner.bytes.saturating_add(cost);
        inner.commands.push_back(command);
        self.pending.store(true, Ordering::Release);
        let waker = if was_empty { inner.waker.clone() } else { None };
        // Wake with the lock released: the waker is the adapter's code.
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves every waiting command to the back of `into`; returns whether a command was
    /// refused for want of room since the last call.
    pub(crate) fn drain_into(&self, into: &mut VecDeque<Command>) -> bool {
        let mut inner = self.lock();
        if into.is_empty() {
            std::mem::swap(into, &mut inner.commands);
        } else {
            into.append(&mut inner.commands);
        }
        inner.bytes = 0;
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut inner.overflowed)
    }

    pub(crate) fn has_mail(&self) -> bool {
        // Set before the waker is woken, so a driver woken for mail sees it.
        self.pending.load(Ordering::Acquire)
    }

    /// Sets who to wake when mail arrives (kept if it would wake the same task). A new
    /// waker is woken at once when mail already waits, so mail queued before any waker was
    /// set (a shutdown racing the admission, a broadcast to everyone) is never stranded.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut inner = self.lock();
        if inner.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        inner.waker = Some(waker.clone());
        let pending = !inner.commands.is_empty() || inner.overflowed;
        drop(inner);
        if pending {
            waker.wake_by_ref();
        }
    }

    /// The connection's close has begun: refuse messages from now on, so a sender learns
    /// at once that they cannot go out rather than having them accepted and dropped.
    pub(crate) fn refuse(&self) {
        self.lock().refusing = true;
    }

    /// The connection has ended: refuse everything from now on and drop what waits.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.commands = VecDeque::new();
        inner.bytes = 0;
        inner.overflowed = false;
        self.pending.store(false, Ordering::Release);
        inner.waker = None;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The critical sections above cannot panic; recover the data rather than spread a
    /// panic from elsewhere to every sender.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a handle could not queue a command.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The connection has ended.
    Closed,
    /// The connection's mailbox is full (the client is not keeping up); the command was
    /// dropped and the slow-consumer policy applies.
    Full,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandleError::Closed => "the connection has ended",
            HandleError::Full => "the connection's mailbox is full",
        })
    }
}

impl std::error::Error for HandleError {}

/// A cloneable, thread-safe handle to one connection, the same type on every adapter:
/// send to it or close it from any task or thread, e.g. when work started by an event
/// handler finishes. Every call queues a command in the connection's mailbox and returns
/// at once; messages are delivered under the slow-consumer policy, like broadcasts.
///
/// Handlers get it from [`Context::handle`](super::Context::handle):
///
/// ```
/// use eventum_core::app::{App, Route};
///
/// let app = App::builder()
///     .route(Route::new("/ws"))
///     .on("lookup", |ctx, _event| {
///         let handle = ctx.handle();
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
    id: ConnectionId,
    mailbox: Arc<Mailbox>,
}

impl ConnectionHandle {
    pub(crate) fn new(id: ConnectionId, mailbox: Arc<Mailbox>) -> Self {
        ConnectionHandle { id, mailbox }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), HandleError> {
        self.deliver(SharedFrame::text(text))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), HandleError> {
        self.deliver(SharedFrame::binary(data))
    }

    /// Queues an encoded frame (e.g. one built once for many connections).
    pub fn deliver(&self, frame: SharedFrame) -> Result<(), HandleError> {
        self.mailbox.push(Command::Deliver(frame))
    }

    /// Starts the close handshake with `code` and `reason` (checked as
    /// [`Context::close`](super::Context::close) checks them; an invalid pair is logged).
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), HandleError> {
        self.mailbox.push(Command::Close(code, reason.into()))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.id)
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_burst_wakes_once_and_the_byte_bound_marks_overflow() {
        let counter = Arc::new(CountingWaker::default());
        let frame = SharedFrame::text("x"); // 3 bytes: each command costs 67
        let mailbox = Mailbox::new(100 * (COMMAND_COST + frame.len()));
        mailbox.set_waker(&Waker::from(Arc::clone(&counter)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "no mail, no wake-up");
        for _ in 0..100 {
            mailbox.push(Command::Deliver(frame.clone())).unwrap();
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake-up per burst");
        assert_eq!(mailbox.push(Command::Deliver(frame.clone())), Err(HandleError::Full));
        mailbox.push_urgent(Command::Shutdown);
        let mut drained = VecDeque::new();
        assert!(mailbox.drain_into(&mut drained), "the overflow is reported once");
        assert_eq!(drained.len(), 101);
        assert_eq!(drained.back(), Some(&Command::Shutdown));
        assert!(!mailbox.drain_into(&mut VecDeque::new()));
        // Draining frees the room: a big frame fits where tiny ones filled it.
        let big = SharedFrame::binary(&[0u8; 6000]);
        mailbox.push(Command::Deliver(big.clone())).unwrap();
        assert_eq!(mailbox.push(Command::Deliver(big)), Err(HandleError::Full));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        let late = Arc::new(CountingWaker::default());
        mailbox.set_waker(&Waker::from(Arc::clone(&late)));
        assert_eq!(late.0.load(Ordering::SeqCst), 1, "a new waker learns of waiting mail");
        mailbox.close();
        assert!(!mailbox.has_mail());
        assert_eq!(mailbox.push(Command::Abort), Err(HandleError::Closed));
    }
}
