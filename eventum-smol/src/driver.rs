//! The per-connection task: the kit's driver loop over an async byte stream.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use eventum_core::driver::{ReadBuffer, Session};
use smol::future::{self, FutureExt};
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::Timer;

/// Most output chunks handed to one vectored write.
const WRITE_SLICES: usize = 32;

/// What woke the driver.
enum Wake {
    Mail,
    Timer,
    Wrote(io::Result<usize>),
    Flushed(io::Result<()>),
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
    let mut buf = ReadBuffer::default();
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
                if let Poll::Ready(read) = stream.poll_read(cx, buf.space()) {
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
            Wake::Read(Ok(n)) => buf.feed(&mut session, now, n),
        }
    }
}
