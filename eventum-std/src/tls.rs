//! `wss://` on the workers: eventum-tls' [`TlsStream`] served as a [`Transport`].

use std::io;
use std::net::Shutdown;

pub(crate) use eventum_tls::TlsStream;

use crate::transport::Transport;

impl Transport for TlsStream {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket().set_nonblocking(nonblocking)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket().shutdown(how)
    }

    fn close_notify(&mut self) {
        TlsStream::close_notify(self);
    }
}
