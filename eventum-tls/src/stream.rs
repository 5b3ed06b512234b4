//! [`TlsStream`]: rustls over a non-blocking `std` TCP socket, for a driver that waits
//! for readiness (epoll, `poll(2)`): the handshake and then the data move as the stream
//! is read and written until `WouldBlock`.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// Socket reads one [`TlsStream::read`] makes while no application data comes of them.
const SOCKET_READS: usize = 8;

/// A server-side TLS connection over a TCP socket (eventum-std serves it as a transport).
///
/// Reads return the decrypted bytes rustls holds before touching the socket, so read
/// until `WouldBlock`: a short read does not mean the socket is drained. `WouldBlock`
/// comes only from the socket (a write first sends what rustls holds), so a driver may
/// wait for the socket's next readiness edge.
pub struct TlsStream {
    conn: ServerConnection,
    sock: TcpStream,
}

impl TlsStream {
    /// A TLS connection over `sock`, in non-blocking mode. The handshake runs as the
    /// stream is read: a read returns `WouldBlock` until it is done and application data
    /// arrives, so bound it with the connection's own handshake deadline.
    pub fn new(config: &Arc<ServerConfig>, sock: TcpStream) -> io::Result<Self> {
        let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        sock.set_nonblocking(true)?;
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

    /// Hands plaintext to rustls with `write`. When rustls' buffer is full, sends what it
    /// holds and tries once more, so `WouldBlock` means the socket itself is full and
    /// will report writable again: an edge-triggered driver waits for exactly that.
    fn write_with(
        &mut self,
        asked: usize,
        mut write: impl FnMut(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut n = write(&mut self.conn.writer())?;
        if n == 0 && asked > 0 {
            self.send_tls()?;
            n = write(&mut self.conn.writer())?;
        }
        self.send_tls()?;
        if n == 0 && asked > 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for _ in 0..SOCKET_READS {
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
        // Records without application data (empty ones, key updates) kept coming: give
        // the driver back its thread; the socket may still be readable.
        Err(ErrorKind::Interrupted.into())
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf.len(), |writer| writer.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let asked = bufs.iter().map(|b| b.len()).sum();
        self.write_with(asked, |writer| writer.write_vectored(bufs))
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

    /// Queues the `close_notify` alert: [`flush`](Write::flush) sends it, with whatever
    /// rustls still holds, returning `WouldBlock` while the socket is full. A driver counts
    /// bytes as sent once rustls took them, so it flushes before closing the socket, or
    /// the last frames (a close reply) are lost with it.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}
