//! [`Session`]: one connection of an app, as an adapter drives it.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Write};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crate::app::dispatch::Dispatcher;
use crate::app::{Command, ConnectionHandle, ConnectionId, Flags, Mailbox};
use crate::close::CloseCode;
use crate::config::SlowConsumerPolicy;
use crate::connection::Connection;
use crate::error::CloseError;
use crate::event::State;
use crate::handshake::Request;
use crate::observe;
use crate::outbound::Transmit;

use super::Endpoint;

/// One connection of an app, admitted by an [`Endpoint`]. Drive it exactly like a
/// [`Connection`]: give it input, end of stream, time and mail; write its output; sleep
/// until its deadline, readable bytes, or its waker. Handlers run inside the input calls,
/// and what they ask of other connections (rooms, broadcasts, sends by id) is handed to
/// the endpoint's hub before the call returns.
///
/// Dropping a session at any point ends the connection cleanly: its disconnect hook runs
/// (once) if it was open, it leaves every room, its handles start failing with
/// [`HandleError::Closed`](crate::app::HandleError::Closed), and its slot is freed.
///
/// ```
/// use eventum_core::app::{App, Route};
/// use eventum_core::driver::Endpoint;
/// use std::time::Instant;
///
/// let app = App::builder().route(Route::new("/echo")).on_text(|ctx, text| {
///     let _ = ctx.send_text(text);
/// }).build();
/// let endpoint = Endpoint::new(app);
/// let mut session = endpoint.admit(Instant::now(), None).unwrap();
/// session.handle_input(Instant::now(), b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
/// assert!(session.poll_transmit().first().starts_with(b"HTTP/1.1 101 "));
/// ```
pub struct Session {
    conn: Connection,
    dispatcher: Dispatcher,
    endpoint: Endpoint,
}

thread_local! {
    /// The buffer the mailbox's commands are taken into, one per thread rather than one
    /// per session: a session holds none between mail (32 bytes of every idle connection,
    /// and the capacity of the last batch), and no batch allocates once the thread's
    /// buffer and the mailbox's have grown (they trade places at each take).
    static MAIL: Cell<VecDeque<Command>> = const { Cell::new(VecDeque::new()) };
}

/// A thread's mail buffer is given back only up to this capacity.
const MAIL_KEPT: usize = 64;

impl Session {
    pub(crate) fn new(
        endpoint: Endpoint,
        handle: ConnectionHandle,
        now: Instant,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        let config = Arc::clone(endpoint.app().config());
        Session {
            conn: Connection::new(config, now),
            dispatcher: Dispatcher::new(handle, peer, now),
            endpoint,
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.dispatcher.id()
    }

    // --- inputs ------------------------------------------------------------------------

    /// Takes bytes from the transport and runs the handlers they trigger.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.conn.handle_input(now, data);
        self.process(now);
    }

    /// [`handle_input`](Self::handle_input) for a driver that reads into a `Vec` of its
    /// own: once the connection is open and no earlier input is pending, the bytes are
    /// decoded and handled where they lie, and only the start of an unfinished frame is
    /// copied out before this returns, rather than every read being copied in. On return
    /// `buffer` is empty and keeps its capacity, also when the connection ended.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::driver::Endpoint;
    /// use std::time::Instant;
    ///
    /// let app = App::builder().route(Route::new("/echo")).on_text(|ctx, text| {
    ///     let _ = ctx.send_text(text);
    /// }).build();
    /// let mut session = Endpoint::new(app).admit(Instant::now(), None).unwrap();
    /// let mut buffer = Vec::with_capacity(64 * 1024);
    /// buffer.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    ///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    /// session.handle_input_buffer(Instant::now(), &mut buffer);
    /// let response = session.poll_transmit().len();
    /// session.transmitted(response);
    /// // A masked "Hi", then the first byte of the next frame.
    /// buffer.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2, 0x81]);
    /// session.handle_input_buffer(Instant::now(), &mut buffer);
    /// assert!(buffer.is_empty() && buffer.capacity() >= 64 * 1024);
    /// assert_eq!(session.poll_transmit().first(), b"\x81\x02Hi");
    /// ```
    pub fn handle_input_buffer(&mut self, now: Instant, buffer: &mut Vec<u8>) {
        self.conn.lend_input(now, buffer);
        self.process(now);
        self.conn.give_back_input(buffer);
    }

    /// The transport's read side ended.
    pub fn handle_eof(&mut self, now: Instant) {
        self.conn.handle_eof(now);
        self.process(now);
    }

    /// Acts on passed deadlines: protocol timers and acknowledgement timeouts. Calling it
    /// early or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        let app = self.endpoint.shared().app.inner();
        self.dispatcher.expire_acks(app, &mut self.conn, now);
        self.process(now);
    }

    /// The transport failed (a write error, a reset): pending output is dropped and the
    /// connection ends now (its disconnect hook runs).
    pub fn handle_transport_error(&mut self, now: Instant) {
        self.conn.handle_transport_error(now);
        self.process(now);
    }

    /// Carries out what arrived in the mailbox (frames from broadcasts, handles and sends
    /// by id; closes; the server's shutdown). Call it when the waker fires; calling it
    /// with an empty mailbox is harmless.
    pub fn handle_mail(&mut self, now: Instant) {
        self.conn.note_time(now);
        self.apply_mail(now);
        self.process(now);
    }

    // --- outputs -----------------------------------------------------------------------

    /// The bytes waiting for the wire; see [`Connection::poll_transmit`].
    pub fn poll_transmit(&self) -> Transmit<'_> {
        self.conn.poll_transmit()
    }

    /// Marks the first `n` bytes of [`poll_transmit`](Self::poll_transmit) as written.
    pub fn transmitted(&mut self, n: usize) {
        self.conn.transmitted(n);
    }

    /// The write step for a non-blocking `writer`: vectored writes of
    /// [`poll_transmit`](Self::poll_transmit) until it would block or nothing is left, then
    /// a flush (a buffering transport such as TLS holds what it was given until then). A
    /// failed write or flush, or a write that takes nothing, ends the connection as
    /// [`handle_transport_error`](Self::handle_transport_error) does. Returns the bytes
    /// written. Like `rustls`' `write_tls`, this is I/O the caller hands in; an async
    /// driver writes [`poll_transmit`](Self::poll_transmit) itself.
    ///
    /// ```
    /// # use eventum_core::app::App;
    /// # use eventum_core::driver::Endpoint;
    /// # use std::time::Instant;
    /// let endpoint = Endpoint::new(App::builder().build());
    /// let mut session = endpoint.admit(Instant::now(), None).unwrap();
    /// session.handle_input(Instant::now(), b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    /// let mut wire = Vec::new();
    /// let written = session.write_to(Instant::now(), &mut wire);
    /// assert_eq!(written, wire.len());
    /// assert!(wire.starts_with(b"HTTP/1.1 4"));
    /// ```
    pub fn write_to<W: Write + ?Sized>(&mut self, now: Instant, writer: &mut W) -> usize {
        /// Most output chunks handed to one vectored write.
        const WRITE_SLICES: usize = 32;
        let mut written = 0;
        loop {
            let transmit = self.poll_transmit();
            if transmit.is_empty() {
                break;
            }
            let first = transmit.first();
            let wrote = if first.len() == transmit.len() {
                // One chunk holds it all (small frames share one): a plain write, which
                // spares a kernel the checks of a vector, and this the array of slices.
                writer.write(first)
            } else {
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                let filled = transmit.io_slices(&mut slices);
                writer.write_vectored(&slices[..filled])
            };
            match wrote {
                Ok(n) if n > 0 => {
                    self.transmitted(n);
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return written,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => self.handle_transport_error(now),
            }
        }
        match writer.flush() {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => self.handle_transport_error(now),
        }
        written
    }

    /// The earliest deadline: the connection's timers and pending acknowledgements.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.conn.poll_timeout(), self.dispatcher.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets the waker woken when mail arrives (from a handle, the hub or the server) for
    /// [`handle_mail`](Self::handle_mail). An async driver passes its task's waker each
    /// time it waits; a thread passes one that unparks it; an event loop one that marks
    /// the connection and wakes the loop.
    pub fn set_waker(&self, waker: &Waker) {
        self.mailbox().set_waker(waker);
    }

    /// Whether mail waits for [`handle_mail`](Self::handle_mail).
    pub fn has_mail(&self) -> bool {
        self.mailbox().has_mail()
    }

    // --- getters -----------------------------------------------------------------------

    /// See [`Connection::wants_read`].
    pub fn wants_read(&self) -> bool {
        self.conn.wants_read()
    }

    /// See [`Connection::should_close_transport`].
    pub fn should_close_transport(&self) -> bool {
        self.conn.should_close_transport()
    }

    /// See [`Connection::state`].
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// See [`Connection::buffered_amount`].
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// The upgrade request, once read.
    pub fn request(&self) -> Option<&Request> {
        self.conn.request()
    }

    /// Whether the app accepted the upgrade and the connection has not ended.
    pub fn is_open(&self) -> bool {
        self.dispatcher.is_open()
    }

    /// The rooms the connection is in.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.dispatcher.rooms()
    }

    /// The connection's flags.
    pub fn flags(&self) -> &Flags {
        self.dispatcher.flags()
    }

    // --- internals ---------------------------------------------------------------------

    fn mailbox(&self) -> &Mailbox {
        self.dispatcher.handle().mailbox()
    }

    /// Runs the handlers for every event, then hands their actions to the hub. Mail those
    /// actions sent to this very connection (its own broadcasts) is applied at once, and its
    /// consequences dispatched, a bounded number of rounds.
    fn process(&mut self, now: Instant) {
        for round in 1.. {
            let shared = self.endpoint.shared();
            self.dispatcher
                .process(shared.app.inner(), &mut self.conn, now, self.endpoint.is_stopping());
            let id = self.dispatcher.id();
            let mut sent = false;
            for action in self.dispatcher.actions().drain(..) {
                shared.hub.apply(id, action);
                sent = true;
            }
            if !sent || round == 3 || !self.mailbox().has_mail() {
                break;
            }
            self.apply_mail(now);
        }
        if matches!(self.conn.state(), State::Closing | State::Closed) {
            self.mailbox().refuse();
        }
        observe::traffic(self.conn.take_traffic());
    }

    fn apply_mail(&mut self, now: Instant) {
        let mut mail = MAIL.take();
        let overflowed = self.dispatcher.handle().mailbox().drain_into(&mut mail);
        while let Some(command) = mail.pop_front() {
            let mut commands = self.conn.commands();
            let result = match command {
                Command::Deliver(frame) => commands.deliver(now, &frame).map_err(|e| e.to_string()),
                Command::Close(code, reason) => commands.close(now, code, &reason).map_err(|e| e.to_string()),
                Command::Shutdown => match commands.close(now, CloseCode::GOING_AWAY, "server shutting down") {
                    Err(CloseError::NotOpen) => {
                        commands.transport_failed(now);
                        Ok(())
                    }
                    other => other.map_err(|e| e.to_string()),
                },
                Command::Abort => {
                    commands.transport_failed(now);
                    Ok(())
                }
            };
            if let Err(e) = result {
                log::debug!("connection {}: mail not carried out: {e}", self.id());
            }
        }
        if mail.capacity() <= MAIL_KEPT {
            MAIL.set(mail);
        }
        // What was accepted went out first; then the policy for what was refused.
        if overflowed && self.endpoint.app().config().slow_consumer() == SlowConsumerPolicy::Close {
            log::debug!(
                "connection {}: mailbox overflowed; closing as a slow consumer",
                self.id()
            );
            self.conn.commands().close_slow_consumer(now);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.dispatcher.is_finished() {
            // The driver stopped before the connection ended (a cancelled future, a
            // panic in the adapter): end it here, at the last instant it was told.
            let now = self.conn.input_time();
            self.conn.handle_transport_error(now);
            self.process(now);
        }
        // Bytes written since the last input.
        observe::traffic(self.conn.take_traffic());
        let shared = self.endpoint.shared();
        shared.hub.unregister(self.id());
        self.mailbox().close();
        shared.release();
    }
}

/// An async driver keeps `&Session` across awaits on a multi-threaded executor.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
    assert_send_sync::<Endpoint>();
};

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("state", &self.conn.state())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::time::Instant;

    use crate::app::App;
    use crate::driver::Endpoint;
    use crate::event::State;

    /// Takes at most `room` bytes in all, then would block; or fails every write.
    struct Socket {
        taken: Vec<u8>,
        room: usize,
        broken: bool,
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.room - self.taken.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// One real instant as the tests' clock (the core itself never reads one).
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn refused_session() -> super::Session {
        let endpoint = Endpoint::new(App::builder().build());
        let now = epoch();
        let mut session = endpoint.admit(now, None).expect("a free slot");
        session.handle_input(now, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
        session
    }

    #[test]
    fn write_to_stops_when_the_writer_would_block_and_resumes_where_it_stopped() {
        let mut session = refused_session();
        let response = session.poll_transmit().len();
        assert!(response > 10);
        let mut socket = Socket {
            taken: Vec::new(),
            room: 10,
            broken: false,
        };
        assert_eq!(session.write_to(epoch(), &mut socket), 10);
        assert_eq!(session.poll_transmit().len(), response - 10, "the rest waits");
        socket.room = usize::MAX;
        assert_eq!(session.write_to(epoch(), &mut socket), response - 10);
        assert!(socket.taken.starts_with(b"HTTP/1.1 4"));
        assert!(session.poll_transmit().is_empty());
    }

    #[test]
    fn write_to_ends_the_connection_when_the_writer_fails() {
        let mut session = refused_session();
        let mut socket = Socket {
            taken: Vec::new(),
            room: usize::MAX,
            broken: true,
        };
        assert_eq!(session.write_to(epoch(), &mut socket), 0);
        assert_eq!(session.state(), State::Closed);
        assert!(session.poll_transmit().is_empty(), "unsent output is dropped");
        assert!(session.should_close_transport());
    }
}
