//! [`TlsStream`]: rustls over a `std` TCP socket for a thread that waits with `poll(2)`:
//! the TLS handshake, blocking under a deadline, then reads and writes on the
//! non-blocking socket until `WouldBlock`.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

/// How long a closing connection waits for rustls' last bytes to reach the socket.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// A server-side TLS connection over a TCP socket (eventum-std serves it as a transport).
///
/// Reads return the decrypted bytes rustls holds before touching the socket, so read
/// until `WouldBlock`: a short read does not mean the socket is drained. A write that
/// finds rustls' buffer full is `WouldBlock`.
pub struct TlsStream {
    conn: ServerConnection,
    sock: TcpStream,
}

impl TlsStream {
    /// Runs the TLS handshake on `sock` until `deadline` (the connection's handshake
    /// deadline); a peer that does not finish it in time, or speaks something else, gets
    /// an error (and an alert when rustls has one to send).
    pub fn accept(config: &Arc<ServerConfig>, mut sock: TcpStream, deadline: Option<Instant>) -> io::Result<Self> {
        let mut conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(ErrorKind::TimedOut, "the TLS handshake timed out"));
                }
                sock.set_read_timeout(Some(left))?;
                sock.set_write_timeout(Some(left))?;
            }
            match conn.complete_io(&mut sock) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(io::Error::new(ErrorKind::UnexpectedEof, "the peer left mid-handshake"))
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // WouldBlock or TimedOut from the socket's timeout: the deadline decides.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
        sock.set_read_timeout(None)?;
        sock.set_write_timeout(None)?;
        Ok(TlsStream { conn, sock })
    }

    /// Writes encrypted bytes until the socket would block or none are left.
    fn send_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// What a plaintext write buffered, or `WouldBlock` when rustls' buffer is full.
    fn written(&mut self, n: usize, asked: usize) -> io::Result<usize> {
        self.send_tls()?;
        if n == 0 && asked > 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.conn.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Send the alert that says why, then fail.
                let _ = self.send_tls();
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
            // Post-handshake messages (a key update) may want an answer.
            self.send_tls()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.written(n, buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.conn.writer().write_vectored(bufs)?;
        self.written(n, bufs.iter().map(|b| b.len()).sum())
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }
}

impl AsFd for TlsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl TlsStream {
    /// The socket under the TLS layer (for its mode and its shutdown).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Queues the `close_notify` alert, then waits (at most [`CLOSE_FLUSH`]) until rustls
    /// has handed everything it holds to the socket: a driver counts bytes as sent once
    /// rustls took them, so the last frames (a close reply) would otherwise be lost with
    /// the socket. Leaves the socket in blocking mode.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
        if self.sock.set_nonblocking(false).is_err() || self.sock.set_write_timeout(Some(CLOSE_FLUSH)).is_err() {
            return;
        }
        let deadline = Instant::now() + CLOSE_FLUSH;
        while self.conn.wants_write() && Instant::now() < deadline {
            if self.conn.write_tls(&mut self.sock).is_err() {
                break;
            }
        }
    }
}
