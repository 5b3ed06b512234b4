//! The per-connection task: the kit's driver loop over an async byte stream.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use eventum_core::driver::Session;
use smol::future::{self, FutureExt};
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::Timer;

/// Most output chunks handed to one vectored write.
const WRITE_SLICES: usize = 32;
/// Bytes read at once, into the executor thread's buffer.
const READ_SIZE: usize = 64 * 1024;

thread_local! {
    /// One read buffer per executor thread: what a read brings goes to the session before
    /// the poll returns, so connections keep no buffer between reads.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

/// What woke the driver.
enum Wake {
    Mail,
    Timer,
    Wrote(io::Result<usize>),
    Flushed(io::Result<()>),
    /// Bytes read (already handed to the session), 0 at the end of the stream.
    Read(io::Result<usize>),
}

/// Serves one admitted connection until it is over. All protocol state lives in the
/// session, so a future dropped at any await point loses nothing but unread bytes, and
/// dropping the session ends the connection cleanly. The session is boxed: an async fn's
/// future keeps its arguments apart from its locals, and the callers' futures nest it, so
/// a session by value was held three times in every connection's task.
pub(crate) async fn drive<S>(mut session: Box<Session>, mut stream: S, close_timeout: Duration) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // One timer for the connection's life, moved only when the deadline comes earlier:
    // a wake-up before a later deadline is harmless (handle_timeout does nothing).
    let (mut timer, mut armed) = (Timer::never(), None::<Instant>);
    let (mut unflushed, mut reads_in_a_row) = (false, 0u32);
    loop {
        if session.should_close_transport() {
            // The server closes the TCP connection first (RFC 6455 §7.1.1); a transport
            // that cannot even close (a TLS peer that does not read) gets the close timeout.
            let _ = stream
                .close()
                .or(async {
                    Timer::after(close_timeout).await;
                    Ok(())
                })
                .await;
            return Ok(());
        }
        // A client that always has bytes ready must not keep this executor thread from
        // its other tasks: yield now and then.
        if reads_in_a_row >= 16 {
            reads_in_a_row = 0;
            future::yield_now().await;
        }
        if let Some(deadline) = session.poll_timeout().filter(|d| armed.is_none_or(|a| *d < a)) {
            timer.set_at(deadline);
            armed = Some(deadline);
        }
        // One poll over everything the connection waits for, in priority order (mail and
        // timers first, so a busy reader cannot starve them). Each outcome is acted on
        // before the next poll, so nothing a transport accepted is ever written twice.
        let wake = poll_fn(|cx| {
            session.set_waker(cx.waker());
            if session.has_mail() {
                return Poll::Ready(Wake::Mail);
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            let transmit = session.poll_transmit();
            let mut stream = Pin::new(&mut stream);
            if !transmit.is_empty() {
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                let filled = transmit.io_slices(&mut slices);
                if let Poll::Ready(written) = stream.as_mut().poll_write_vectored(cx, &slices[..filled]) {
                    return Poll::Ready(Wake::Wrote(written));
                }
            } else if unflushed {
                // Buffering transports (TLS) hold written bytes until flushed.
                if let Poll::Ready(flushed) = stream.as_mut().poll_flush(cx) {
                    return Poll::Ready(Wake::Flushed(flushed));
                }
            }
            if session.wants_read() {
                if let Poll::Ready(read) = poll_read(&mut session, stream, cx) {
                    return Poll::Ready(Wake::Read(read));
                }
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        // Counts reads in a row; anything else resets the count.
        reads_in_a_row = (reads_in_a_row + 1) * u32::from(matches!(wake, Wake::Read(_)));
        match wake {
            Wake::Mail => session.handle_mail(now),
            Wake::Timer => {
                armed = None;
                session.handle_timeout(now);
            }
            Wake::Wrote(Ok(0) | Err(_)) | Wake::Flushed(Err(_)) | Wake::Read(Err(_)) => {
                session.handle_transport_error(now)
            }
            Wake::Wrote(Ok(n)) => {
                session.transmitted(n);
                unflushed = true;
            }
            Wake::Flushed(Ok(())) => unflushed = false,
            Wake::Read(Ok(0)) => session.handle_eof(now),
            Wake::Read(Ok(_)) => {}
        }
    }
}

/// Reads into the thread's buffer and hands what came to the session at once.
fn poll_read<S: AsyncRead + Unpin>(
    session: &mut Session,
    stream: Pin<&mut S>,
    cx: &mut std::task::Context<'_>,
) -> Poll<io::Result<usize>> {
    READ_BUFFER.with(|shared| {
        // A handler that somehow polls another connection on this thread gets a buffer
        // of its own rather than a panic.
        let mut own = Vec::new();
        let mut borrowed = shared.try_borrow_mut();
        let buf = match borrowed.as_mut() {
            Ok(buf) => buf.as_mut_slice(),
            Err(_) => {
                own.resize(READ_SIZE, 0);
                own.as_mut_slice()
            }
        };
        let read = stream.poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            if n > 0 {
                session.handle_input(Instant::now(), &buf[..n.min(buf.len())]);
            }
        }
        read
    })
}
