//! [`ReadBuffer`]: how much to read at once, sized for idle and busy connections alike.

use std::time::Instant;

use super::Session;

/// The first read size: an idle connection keeps this little.
const MIN: usize = 512;
/// The largest read size, reached by doubling after every read that filled the buffer.
const MAX: usize = 64 * 1024;

/// A connection's read buffer as the kit's adapters size it: 512 bytes at first, doubled
/// after every read that filled it (up to 64 KiB), and released whenever the session
/// wants no input, so idle and paused connections keep no buffer.
///
/// ```
/// use eventum_core::app::App;
/// use eventum_core::driver::{Endpoint, ReadBuffer};
/// use std::time::Instant;
///
/// let endpoint = Endpoint::new(App::builder().build());
/// let mut session = endpoint.admit(Instant::now(), None).unwrap();
/// let mut buf = ReadBuffer::default();
/// let space = buf.space();
/// assert_eq!(space.len(), 512);
/// let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"; // as if read from a socket
/// space[..request.len()].copy_from_slice(request);
/// buf.feed(&mut session, Instant::now(), request.len());
/// assert!(session.poll_transmit().first().starts_with(b"HTTP/1.1 400 ")); // not an upgrade
/// ```
#[derive(Debug, Default)]
pub struct ReadBuffer {
    buf: Vec<u8>,
}

impl ReadBuffer {
    /// The space to read into (allocated on first use).
    pub fn space(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf.resize(MIN, 0);
        }
        &mut self.buf
    }

    /// Hands the first `n` bytes of [`space`](Self::space) to the session at `now` (end of
    /// stream when `n` is 0), then resizes for the next read.
    pub fn feed(&mut self, session: &mut Session, now: Instant, n: usize) {
        if n == 0 {
            session.handle_eof(now);
        } else {
            session.handle_input(now, &self.buf[..n.min(self.buf.len())]);
        }
        if !session.wants_read() {
            self.buf = Vec::new();
        } else if n == self.buf.len() && n < MAX {
            self.buf.resize(n * 2, 0);
        }
    }
}
