//! What the worker pool needs from a byte stream.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;

/// A byte stream the worker pool can serve: it puts the stream in non-blocking mode,
/// waits for readiness on its file descriptor with edge-triggered epoll, and reads and
/// writes until `WouldBlock`.
///
/// Implemented for [`TcpStream`] and `UnixStream`. Implement it for your own transport (a
/// TLS stream over a socket, say) to serve it with
/// [`Server::serve_stream`](crate::Server::serve_stream): `as_fd` is the socket, and a
/// transport that buffers must return what it has buffered before `WouldBlock`, send what
/// it buffered for writing when flushed, and return `WouldBlock` only when the socket
/// did: epoll reports the socket's next change, not that buffered bytes are waiting. A
/// read may return `Interrupted` to give the worker back after a bounded effort; the pool
/// reads again later.
pub trait Transport: Read + Write + AsFd + Send + 'static {
    /// Switches non-blocking mode on or off.
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;
    /// Shuts down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Whether a read that returns fewer bytes than asked means nothing more is ready, so
    /// the driver can wait for readiness without first reading until `WouldBlock` (true
    /// for sockets; the default, false, is right for transports that buffer above theirs).
    fn short_read_drains(&self) -> bool {
        false
    }
    /// Queues what the transport owes the peer before the connection closes (a TLS
    /// transport: its `close_notify`); called once. The pool then flushes, without
    /// blocking and for at most a second, before it shuts the socket down. The default
    /// queues nothing.
    fn close_notify(&mut self) {}
}

impl Transport for TcpStream {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, nonblocking)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
    fn short_read_drains(&self) -> bool {
        true
    }
}

#[cfg(unix)]
impl Transport for std::os::unix::net::UnixStream {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_nonblocking(self, nonblocking)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::os::unix::net::UnixStream::shutdown(self, how)
    }
    fn short_read_drains(&self) -> bool {
        true
    }
}
