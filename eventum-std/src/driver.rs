//! The per-connection thread: it owns its session and waits with one `poll(2)` for its
//! socket, its mail (an eventfd the mailbox wakes) and its next deadline. Handlers run on
//! it, so one that blocks delays only its own connection.

use std::io::{self, ErrorKind, IoSlice};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Instant;

use eventum_core::driver::{ReadBuffer, Session};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};

use crate::transport::Transport;

/// Reads per pass before mail and timers get their turn again.
const READS_PER_PASS: usize = 16;
/// Most output chunks handed to one vectored write.
const WRITE_SLICES: usize = 32;

/// Wakes a connection's thread out of its poll: the mailbox calls it when mail arrives.
struct MailSignal(OwnedFd);

impl Wake for MailSignal {
    fn wake(self: Arc<Self>) {
        // A full counter (2^64 - 2 wake-ups unread) already wakes the poll.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }
}

/// Serves one admitted connection on the calling thread until it is over.
pub(crate) fn drive<T: Transport>(mut session: Session, mut stream: T) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let signal = Arc::new(MailSignal(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?));
    session.set_waker(&Waker::from(Arc::clone(&signal)));
    let mut buf = ReadBuffer::default();
    // Readiness not used up yet: cleared only by `WouldBlock`, so bytes a transport
    // buffered (TLS) are read as soon as the session wants them, without waiting for poll.
    let (mut readable, mut unflushed) = (true, false);
    loop {
        let now = Instant::now();
        if session.has_mail() {
            session.handle_mail(now);
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        let mut reads = 0;
        while readable && session.wants_read() && reads < READS_PER_PASS {
            reads += 1;
            let space = buf.space();
            let asked = space.len();
            match stream.read(space) {
                Ok(n) => {
                    buf.feed(&mut session, Instant::now(), n);
                    // A short read from a socket drained it: skip the read that would block.
                    readable = n > 0 && !(n < asked && stream.short_read_drains());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => session.handle_transport_error(Instant::now()),
            }
        }
        let blocked = write(&mut session, &mut stream, &mut unflushed);
        if session.should_close_transport() {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            stream.close_notify();
            let _ = stream.shutdown(Shutdown::Write);
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut interest = PollFlags::empty();
        interest.set(PollFlags::IN, session.wants_read() && !readable);
        interest.set(PollFlags::OUT, blocked);
        // More input waiting: only look, do not sleep.
        let more = readable && session.wants_read();
        let timeout = match (more, session.poll_timeout()) {
            (true, _) => Some(Timespec::default()),
            (false, deadline) => deadline.and_then(|t| Timespec::try_from(t.saturating_duration_since(now)).ok()),
        };
        let mut fds = [PollFd::new(&stream, interest), PollFd::new(&signal.0, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        readable |= fds[0]
            .revents()
            .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR);
        if fds[1].revents().contains(PollFlags::IN) {
            let _ = rustix::io::read(&signal.0, &mut [0u8; 8]);
        }
    }
}

/// Writes output until the transport would block (then returns true) or none is left.
fn write<T: Transport>(session: &mut Session, stream: &mut T, unflushed: &mut bool) -> bool {
    loop {
        let transmit = session.poll_transmit();
        if transmit.is_empty() {
            break;
        }
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        let filled = transmit.io_slices(&mut slices);
        match stream.write_vectored(&slices[..filled]) {
            Ok(n) if n > 0 => {
                session.transmitted(n);
                *unflushed = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => session.handle_transport_error(Instant::now()),
        }
    }
    if *unflushed {
        // Buffering transports (TLS) hold written bytes until flushed.
        match stream.flush() {
            Ok(()) => *unflushed = false,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => session.handle_transport_error(Instant::now()),
        }
    }
    false
}
