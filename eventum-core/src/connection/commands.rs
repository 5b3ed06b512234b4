//! [`Commands`]: everything the application can ask of a connection, in one place.

use std::sync::Arc;
use std::time::Instant;

use crate::close::CloseCode;
use crate::error::{ApiMisuse, CloseError, SendError};
use crate::event::State;
use crate::frame::OpCode;
use crate::handshake::{self, Accept, DeflateParams, HttpResponse, Negotiated, Request};
use crate::outbound::SharedFrame;

use super::link::Link;

/// The commands of a [`Connection`](crate::Connection), from
/// [`Connection::commands`](crate::Connection::commands) or beside a borrowed event from
/// [`Connection::poll_event`](crate::Connection::poll_event).
///
/// Time is explicit: a command that starts a timer or may close the connection takes the
/// `now` it happens at ([`accept`](Self::accept) starts the keepalive timer,
/// [`respond`](Self::respond) and [`close`](Self::close) the close timeout,
/// [`deliver`](Self::deliver) may close a slow consumer); the others start nothing.
#[derive(Debug)]
pub struct Commands<'a> {
    pub(super) link: &'a mut Link,
    pub(super) request: Option<&'a Request>,
}

impl<'a> Commands<'a> {
    /// Accepts the pending upgrade request with a `101 Switching Protocols` response;
    /// `now` starts the keepalive timer. permessage-deflate is negotiated here, with
    /// [`Accept::compression`] or else [`Config::compression`](crate::Config::compression).
    pub fn accept(&mut self, now: Instant, accept: Accept) -> Result<(), ApiMisuse> {
        let request = self.pending_request()?;
        if !request.is_websocket_upgrade() {
            return Err(ApiMisuse::NotAnUpgrade);
        }
        let config = Arc::clone(self.link.config());
        let deflate = accept.compression_config().unwrap_or(config.compression());
        let negotiated = deflate.negotiate_request(request);
        let extensions = negotiated.as_ref().map(Negotiated::response);
        self.link
            .push_response(|out| handshake::write_accept(request, &accept, extensions, out))?;
        let subprotocol = accept.chosen_subprotocol().map(str::to_owned);
        let compression = negotiated.map(|n| (*n.params(), deflate));
        self.link.open(now, subprotocol, compression);
        Ok(())
    }

    /// Answers the pending request with an HTTP response instead of a 101 (a refused
    /// upgrade, or a page for a plain HTTP request); the connection closes after it, and
    /// `now` starts the time allowed for writing it.
    pub fn respond(&mut self, now: Instant, response: HttpResponse) -> Result<(), ApiMisuse> {
        self.pending_request()?;
        self.link
            .push_response(|out| handshake::write_response(&response, out))?;
        self.link.respond(now, response.status());
        Ok(())
    }

    /// Queues a text message as one frame (the text is copied once, into the queue).
    ///
    /// Fails when the WebSocket is not open, or when the outgoing buffer would pass
    /// [`Config::max_backlog`](crate::Config::max_backlog) ([`SendError::Full`]).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.link.send_data(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message as one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.link.send_data(OpCode::Binary, data)
    }

    /// Queues a frame someone else sends this connection (a broadcast, a send by id),
    /// shared rather than copied when it is large. Over
    /// [`Config::max_backlog`](crate::Config::max_backlog) the
    /// [`SlowConsumerPolicy`](crate::SlowConsumerPolicy) applies at `now`: the frame is
    /// dropped, or the connection is closed with 1008; both return [`SendError::Full`].
    pub fn deliver(&mut self, now: Instant, frame: &SharedFrame) -> Result<(), SendError> {
        self.link.deliver(now, frame)
    }

    /// Queues a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.link.ping(payload)
    }

    /// Sends a close frame and waits for the peer's (discarding data that arrives
    /// meanwhile) until [`Config::close_timeout`](crate::Config::close_timeout) after
    /// `now`. The code must be one a server may send and the reason at most 123 bytes;
    /// nothing is truncated.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.link.close(now, code, reason)
    }

    /// Closes at `now` with 1008 "slow consumer": the peer does not read what it is sent.
    pub(crate) fn close_slow_consumer(&mut self, now: Instant) {
        if self.link.state() == State::Open {
            self.link.fail_slow_consumer(now);
        }
    }

    /// The transport broke at `now`: drop pending output and close.
    pub(crate) fn transport_failed(&mut self, now: Instant) {
        self.link.transport_failed(now);
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.link.state()
    }

    /// Bytes queued for the wire.
    pub fn buffered_amount(&self) -> usize {
        self.link.out().len()
    }

    /// The request this connection was opened with, once its head has been read.
    pub fn request(&self) -> Option<&'a Request> {
        self.request
    }

    /// The subprotocol chosen when the upgrade was accepted.
    pub fn subprotocol(&self) -> Option<&str> {
        self.link.subprotocol()
    }

    /// The permessage-deflate parameters agreed when the upgrade was accepted; `None`
    /// when the connection runs uncompressed.
    pub fn compression(&self) -> Option<&DeflateParams> {
        self.link.compression()
    }

    fn pending_request(&self) -> Result<&'a Request, ApiMisuse> {
        match (self.link.state(), self.request) {
            (State::AwaitingDecision, Some(request)) => Ok(request),
            _ => Err(ApiMisuse::NoPendingRequest),
        }
    }
}
