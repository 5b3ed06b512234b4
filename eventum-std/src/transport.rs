//! What the blocking driver needs from a byte stream.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// A blocking byte stream the driver can serve: readable and writable from two threads
/// at once (through a clone of the handle), and shut down to wake a blocked reader.
///
/// Implemented for [`TcpStream`] and, on Unix, `UnixStream`; implement it for your own
/// transport to serve it with [`Server::serve_stream`](crate::Server::serve_stream).
pub trait Transport: Read + Write + Send + Sized + 'static {
    /// A second handle to the same stream (one thread reads while another writes).
    fn try_clone(&self) -> io::Result<Self>;
    /// Shuts down one or both directions; `Both` must make a blocked `read` return.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Bounds how long one `write` may block, so the writer can look at its timers; the
    /// default does nothing (writes block until they make progress).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }
}

impl Transport for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

#[cfg(unix)]
impl Transport for std::os::unix::net::UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        std::os::unix::net::UnixStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::os::unix::net::UnixStream::shutdown(self, how)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_write_timeout(self, timeout)
    }
}
