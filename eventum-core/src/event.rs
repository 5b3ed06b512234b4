//! What a [`Connection`](crate::Connection) reports to the application.

use crate::close::CloseCode;
use crate::error::{HandshakeError, ProtocolError};
use crate::handshake::Request;

/// One thing that happened on a connection, returned by
/// [`Connection::poll_event`](crate::Connection::poll_event).
///
/// Borrowed events point into the connection's receive buffer (a single-frame message
/// is never copied) and stay valid until the next call that takes the connection
/// mutably; use [`Event::Text`]'s `to_owned` to keep one longer.
#[non_exhaustive]
#[derive(Debug)]
pub enum Event<'a> {
    /// A valid WebSocket upgrade request. Answer it with
    /// [`Commands::accept`](crate::Commands::accept) or refuse it with
    /// [`Commands::respond`](crate::Commands::respond).
    UpgradeRequest(&'a Request),
    /// A plain HTTP request (only when [`Config::http_fallback`](crate::Config::http_fallback)
    /// is on). Answer it with [`Commands::respond`](crate::Commands::respond).
    HttpRequest(&'a Request),
    /// A complete text message, validated as UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping arrived; the pong is already queued.
    Ping(&'a [u8]),
    /// A pong arrived (solicited or not).
    Pong(&'a [u8]),
    /// The connection is over; this is the last event, reported exactly once.
    Closed(Closed),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code of the close handshake: the peer's code when the peer closed, ours
    /// when we did, [`CloseCode::NO_STATUS`] for a close frame without a code, and
    /// [`CloseCode::ABNORMAL`] when there was no close handshake at all.
    pub code: CloseCode,
    /// The reason that went with `code`, possibly empty.
    pub reason: String,
    /// Why the connection ended.
    pub cause: CloseCause,
}

/// Why a connection ended.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer started the close handshake; we answered it.
    Remote,
    /// The application closed; `answered` tells whether the peer's close reply arrived
    /// before the close timeout or the end of the transport.
    Local {
        /// Whether the peer completed the close handshake.
        answered: bool,
    },
    /// The peer broke the protocol; we sent a close with the error's code.
    Protocol(ProtocolError),
    /// The upgrade request was invalid; the core answered with the error's HTTP status.
    Handshake(HandshakeError),
    /// The application answered the request with an HTTP response instead of a 101.
    Responded {
        /// The status sent.
        status: u16,
    },
    /// The peer did not answer keepalive pings in time; we sent 1011.
    KeepaliveTimeout,
    /// The peer did not read its pushed messages; we sent 1008.
    SlowConsumer,
    /// The transport ended without a close handshake.
    TransportEnded,
}

/// Where a connection is in its life.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the HTTP request head.
    Handshake,
    /// The request is complete and waits for `accept` or `respond`.
    AwaitingDecision,
    /// The WebSocket is open.
    Open,
    /// We sent a close and wait for the peer's.
    Closing,
    /// Over; the transport should be closed once [`Connection::should_close_transport`](crate::Connection::should_close_transport) says so.
    Closed,
}
