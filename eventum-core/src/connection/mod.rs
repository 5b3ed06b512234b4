//! The protocol [`Connection`]: one WebSocket connection, server side, as a state machine.

mod inbound;
mod link;
#[cfg(test)]
mod tests;

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use crate::close::CloseCode;
use crate::config::Config;
use crate::error::{ApiMisuse, CloseError, HandshakeError, ProtocolError, SendError};
use crate::event::{CloseCause, Event, State};
use crate::frame::MAX_HEADER_LEN;
use crate::handshake::{self, Accept, HttpResponse, Request};
use crate::outbound::SharedFrame;

use inbound::{Inbound, Source, Step};
use link::Link;

/// One server-side WebSocket connection, from the first byte of the HTTP request to the
/// end of the close handshake, with no I/O of its own.
///
/// The methods fall into four groups (the shape of quinn-proto's `Connection`):
///
/// * **inputs**: [`handle_input`](Self::handle_input), [`handle_eof`](Self::handle_eof),
///   [`handle_timeout`](Self::handle_timeout), each told the current time;
/// * **commands**: [`accept`](Self::accept), [`respond`](Self::respond),
///   [`send_text`](Self::send_text), [`send_binary`](Self::send_binary),
///   [`push`](Self::push), [`ping`](Self::ping), [`close`](Self::close);
/// * **outputs**: [`poll_event`](Self::poll_event), then the bytes for the wire
///   ([`output`](Self::output) + [`consume_output`](Self::consume_output), or
///   [`poll_transmit`](Self::poll_transmit)), then [`poll_timeout`](Self::poll_timeout);
/// * **getters**: [`state`](Self::state), [`wants_read`](Self::wants_read),
///   [`should_close_transport`](Self::should_close_transport), ...
///
/// After every input or command, drain the events, write the output, and sleep until the
/// deadline or the next readable bytes. Instants passed in must not go backwards.
///
/// ```
/// use eventum_core::{Config, Connection, Event, handshake::Accept};
/// use std::{sync::Arc, time::Instant};
///
/// let now = Instant::now();
/// let mut conn = Connection::new(Arc::new(Config::default()), now);
/// conn.handle_input(now, b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\n\r\n");
/// match conn.poll_event() {
///     Some(Event::UpgradeRequest(request)) => assert_eq!(request.path(), "/chat"),
///     other => panic!("unexpected {other:?}"),
/// }
/// conn.accept(now, Accept::new()).unwrap();
/// let mut wire = Vec::new();
/// conn.poll_transmit(&mut wire);
/// assert!(wire.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
///
/// // A masked text frame "Hello" from the client (RFC 6455 §5.7), echoed back unmasked.
/// conn.handle_input(now, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let Some((Event::Text(text), mut sender)) = conn.poll_event_with_sender() else { panic!() };
/// sender.send_text(text).unwrap();
/// wire.clear();
/// conn.poll_transmit(&mut wire);
/// assert_eq!(wire, b"\x81\x05Hello");
/// ```
#[derive(Debug)]
pub struct Connection {
    inbound: Inbound,
    link: Link,
    /// The request, once its head is read; kept apart so events and the sender can both
    /// borrow it.
    request: Option<Request>,
}

/// The sending half of a [`Connection`], usable while an [`Event`] borrows the receive
/// half (see [`Connection::poll_event_with_sender`]).
#[derive(Debug)]
pub struct Sender<'a> {
    link: &'a mut Link,
    request: Option<&'a Request>,
}

impl Connection {
    /// A connection whose first input will be the HTTP request; `now` starts the
    /// handshake timeout.
    pub fn new(config: Arc<Config>, now: Instant) -> Self {
        Connection {
            inbound: Inbound::default(),
            link: Link::new(config, now),
            request: None,
        }
    }

    /// Takes bytes received from the transport. Never fails: bad input is answered on the
    /// wire and reported as [`Event::Closed`].
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.link.now = now;
        match self.link.state {
            State::Handshake => {
                self.inbound.push(data);
                self.read_head();
            }
            State::AwaitingDecision => self.inbound.push(data),
            State::Open | State::Closing if !data.is_empty() => {
                self.link.heard_from_peer(now);
                self.inbound.push(data);
            }
            State::Open | State::Closing => {}
            State::Closed => {}
        }
    }

    /// The transport's read side ended. Events already received are still reported first.
    pub fn handle_eof(&mut self, now: Instant) {
        self.link.now = now;
        self.inbound.eof = true;
        if self.link.state == State::Handshake {
            self.inbound.discard_all();
            self.link
                .finish(CloseCode::ABNORMAL, String::new(), CloseCause::TransportEnded);
        }
    }

    /// The transport failed (a write error, a reset): nothing more can be sent. Pending
    /// output is dropped and the connection closes at once (reported as
    /// [`CloseCause::TransportEnded`]), so the driver can release the transport.
    pub fn abort(&mut self, now: Instant) {
        self.link.now = now;
        self.inbound.discard_all();
        self.link.abort();
    }

    /// Tells the connection the time; acts on every deadline that has passed. Calling it
    /// early or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.now = now;
        if self.link.handle_timeout(now) {
            self.inbound.discard_all();
        }
    }

    /// Accepts the pending upgrade request with a `101 Switching Protocols` response;
    /// `now` starts the keepalive timer.
    pub fn accept(&mut self, now: Instant, accept: Accept) -> Result<(), ApiMisuse> {
        let request = self.pending_request()?;
        if !request.is_websocket_upgrade() {
            return Err(ApiMisuse::NotAnUpgrade);
        }
        let mut response = Vec::new();
        handshake::write_accept(request, &accept, None, &mut response)?;
        self.link.subprotocol = accept.chosen_subprotocol().map(str::to_owned);
        self.link.now = now;
        self.link.open(&response);
        self.inbound.compact();
        Ok(())
    }

    /// Answers the pending request with an HTTP response instead of a 101 (a refused
    /// upgrade, or a page for a plain HTTP request); the connection closes after it, and
    /// `now` starts the time allowed for writing it.
    pub fn respond(&mut self, now: Instant, response: HttpResponse) -> Result<(), ApiMisuse> {
        self.pending_request()?;
        self.link.now = now;
        let mut bytes = Vec::new();
        handshake::write_response(&response, &mut bytes)?;
        self.link.out_push_raw(&bytes);
        self.inbound.discard_all();
        let status = response.status();
        self.link
            .finish(CloseCode::ABNORMAL, String::new(), CloseCause::Responded { status });
        Ok(())
    }

    /// Queues a text message. See [`Sender::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.sender().send_text(text)
    }

    /// Queues a binary message. See [`Sender::send_binary`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.sender().send_binary(data)
    }

    /// Queues a frame pushed by someone else. See [`Sender::push`]; `now` times the
    /// close of a slow consumer.
    pub fn push(&mut self, now: Instant, frame: &SharedFrame) -> Result<(), SendError> {
        self.link.now = now;
        self.sender().push(frame)
    }

    /// Queues a ping. See [`Sender::ping`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.sender().ping(payload)
    }

    /// Starts the close handshake at `now`. See [`Sender::close`].
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.link.now = now;
        self.sender().close(code, reason)
    }

    /// The sending half, for use beside a borrowed event.
    pub fn sender(&mut self) -> Sender<'_> {
        Sender {
            link: &mut self.link,
            request: self.request.as_ref(),
        }
    }

    /// The next event, or `None` when nothing more can happen until more input arrives.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        self.poll_event_with_sender().map(|(event, _)| event)
    }

    /// Like [`poll_event`](Self::poll_event), with the sending half alongside so a
    /// handler can answer a borrowed message without copying it.
    #[must_use]
    pub fn poll_event_with_sender(&mut self) -> Option<(Event<'_>, Sender<'_>)> {
        let ready = self.next_ready()?;
        let inbound = &self.inbound;
        let event = match ready {
            Ready::Request => {
                let request = self.request.as_ref()?;
                if request.is_websocket_upgrade() {
                    Event::UpgradeRequest(request)
                } else {
                    Event::HttpRequest(request)
                }
            }
            Ready::Step(Step::Text(range, source)) => {
                let bytes = match source {
                    Source::Rx => inbound.rx_slice(range),
                    Source::Message => inbound.message_slice(range),
                };
                // The one full check of an unfragmented frame that arrived whole (pieces
                // were already checked as they came, so this cannot fail for them).
                match std::str::from_utf8(bytes) {
                    Ok(text) => Event::Text(text),
                    Err(_) => {
                        self.link.fail_protocol(ProtocolError::InvalidUtf8);
                        Event::Closed(self.link.closed.take()?)
                    }
                }
            }
            Ready::Step(Step::Binary(range, Source::Rx)) => Event::Binary(inbound.rx_slice(range)),
            Ready::Step(Step::Binary(range, Source::Message)) => Event::Binary(inbound.message_slice(range)),
            Ready::Step(Step::Ping(range)) => Event::Ping(inbound.rx_slice(range)),
            Ready::Step(Step::Pong(range)) => Event::Pong(inbound.rx_slice(range)),
            Ready::Closed => Event::Closed(self.link.closed.take()?),
            Ready::Step(_) => return None,
        };
        let sender = Sender {
            link: &mut self.link,
            request: self.request.as_ref(),
        };
        Some((event, sender))
    }

    /// The first contiguous run of bytes waiting for the wire (empty when none).
    pub fn output(&self) -> &[u8] {
        self.link.out.front()
    }

    /// Fills `slices` with every pending chunk for a vectored write; returns how many.
    pub fn output_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.link.out.fill_io_slices(slices)
    }

    /// Marks `n` bytes of output as written to the transport.
    pub fn consume_output(&mut self, n: usize) {
        self.link.consume_output(n);
    }

    /// Appends all pending output to `buf` and marks it written; returns how many bytes.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let mut total = 0;
        loop {
            let chunk = self.link.out.front();
            if chunk.is_empty() {
                return total;
            }
            buf.extend_from_slice(chunk);
            let n = chunk.len();
            total += n;
            self.link.consume_output(n);
        }
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work,
    /// or `None` when no timer runs.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.link.state
    }

    /// The latest instant the driver passed in.
    pub(crate) fn now(&self) -> Instant {
        self.link.now
    }

    /// Whether the driver should read more from the transport now. False while the
    /// output is above the high-water mark (until it drains to the low-water mark),
    /// while a request waits for a decision, while the unprocessed input already holds
    /// the largest possible frame (so polling events will make progress), after end of
    /// input, and once the connection is closed. A driver that keeps reading regardless
    /// makes the receive buffer grow with what it feeds.
    pub fn wants_read(&self) -> bool {
        match self.link.state {
            State::Handshake => !self.inbound.eof,
            State::AwaitingDecision | State::Closed => false,
            State::Open | State::Closing => {
                !self.inbound.eof
                    && !self.link.throttled
                    && self.inbound.pending_len() < self.link.config.max_frame_size().saturating_add(MAX_HEADER_LEN)
            }
        }
    }

    /// Bytes queued for the wire.
    pub fn buffered_amount(&self) -> usize {
        self.link.out.len()
    }

    /// True once the connection is over and its last bytes are written (or abandoned
    /// after the close timeout): the driver should close the transport now. After a
    /// close handshake the server closes the TCP connection first, as RFC 6455 §7.1.1 asks.
    pub fn should_close_transport(&self) -> bool {
        self.link.state == State::Closed && self.link.out.is_empty()
    }

    /// The request, once its head has been read.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// The subprotocol chosen in [`accept`](Self::accept).
    pub fn subprotocol(&self) -> Option<&str> {
        self.link.subprotocol.as_deref()
    }

    fn pending_request(&self) -> Result<&Request, ApiMisuse> {
        match (&self.link.state, &self.request) {
            (State::AwaitingDecision, Some(request)) => Ok(request),
            _ => Err(ApiMisuse::NoPendingRequest),
        }
    }

    /// Looks for the end of the request head and acts on a complete one.
    fn read_head(&mut self) {
        let config = Arc::clone(&self.link.config);
        let head_len = match self.link.head.poll(self.inbound.unconsumed(), config.max_head_bytes()) {
            Ok(Some(len)) => len,
            Ok(None) => return,
            Err(e) => return self.fail_handshake(e),
        };
        let request = match handshake::parse_request(&self.inbound.unconsumed()[..head_len], config.max_headers()) {
            Ok(request) => request,
            Err(e) => return self.fail_handshake(e),
        };
        let verdict = if request.is_websocket_upgrade() {
            handshake::validate_upgrade(&request)
        } else if config.http_fallback() {
            Ok(())
        } else {
            Err(HandshakeError::NotWebSocket)
        };
        self.request = Some(request);
        if let Err(e) = verdict {
            return self.fail_handshake(e);
        }
        self.inbound.consume(head_len);
        self.link.await_decision();
    }

    fn fail_handshake(&mut self, error: HandshakeError) {
        self.inbound.discard_all();
        self.link.fail_handshake(error);
    }

    /// Decides what the next event is, doing the protocol work (pongs, close replies,
    /// errors) along the way.
    fn next_ready(&mut self) -> Option<Ready> {
        if self.link.request_pending {
            self.link.request_pending = false;
            return Some(Ready::Request);
        }
        loop {
            if self.link.state == State::Closed {
                if self.inbound.pending_len() > 0 {
                    self.inbound.discard_all();
                }
                return self.link.closed.as_ref().map(|_| Ready::Closed);
            }
            if !matches!(self.link.state, State::Open | State::Closing) {
                return None;
            }
            let discarding = self.link.state == State::Closing;
            let config = &self.link.config;
            let step = self
                .inbound
                .step(config.max_frame_size(), config.max_message_size(), discarding);
            match step {
                Step::Continue => continue,
                Step::NeedMore if self.inbound.eof => self.link.transport_ended(),
                Step::NeedMore => return None,
                Step::Error(e) => {
                    self.inbound.discard_all();
                    self.link.fail_protocol(e);
                }
                Step::Close(payload) => {
                    let code_and_reason = payload.map(|(code, range)| {
                        // The decoder validated the reason as UTF-8.
                        let reason = String::from_utf8_lossy(self.inbound.rx_slice(range)).into_owned();
                        (code, reason)
                    });
                    self.inbound.discard_all();
                    self.link.close_received(code_and_reason);
                }
                Step::Ping(range) => {
                    // RFC 6455 §5.5.2: answer every ping until the peer's close arrives,
                    // also while our own close waits for its answer.
                    let payload = self.inbound.rx_slice(range.clone());
                    self.link.queue_pong(payload);
                    if discarding || self.link.state == State::Closed {
                        continue;
                    }
                    return Some(Ready::Step(Step::Ping(range)));
                }
                // While closing, only the peer's close matters.
                Step::Pong(_) | Step::Text(..) | Step::Binary(..) if discarding => continue,
                other => return Some(Ready::Step(other)),
            }
        }
    }
}

/// What [`Connection::next_ready`] found, before it is turned into a borrowed [`Event`].
enum Ready {
    Request,
    Step(Step),
    Closed,
}

impl<'a> Sender<'a> {
    /// Queues a text message as one frame (the text is copied once, into the queue).
    ///
    /// Fails when the WebSocket is not open, or when the outgoing buffer would pass
    /// [`Config::max_backlog`] ([`SendError::Full`]).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.link.send_data(crate::frame::OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message as one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.link.send_data(crate::frame::OpCode::Binary, data)
    }

    /// Queues a frame that someone else pushes to this connection (a broadcast, a send by
    /// id). Over [`Config::max_backlog`] the [`SlowConsumerPolicy`](crate::SlowConsumerPolicy)
    /// applies: the frame is dropped, or the connection is closed with 1008; both return
    /// [`SendError::Full`].
    pub fn push(&mut self, frame: &SharedFrame) -> Result<(), SendError> {
        self.link.push(frame)
    }

    /// Queues a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.link.ping(payload)
    }

    /// Sends a close frame and waits for the peer's (discarding data that arrives
    /// meanwhile) until [`Config::close_timeout`]. The code must be one a server may send
    /// and the reason at most 123 bytes; nothing is truncated.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.link.close(code, reason)
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.link.state
    }

    /// Bytes queued for the wire.
    pub fn buffered_amount(&self) -> usize {
        self.link.out.len()
    }

    /// The latest instant the driver passed in.
    pub(crate) fn now(&self) -> Instant {
        self.link.now
    }

    /// The request this connection was opened with, once its head has been read.
    pub fn request(&self) -> Option<&'a Request> {
        self.request
    }

    /// The subprotocol chosen when the upgrade was accepted.
    pub fn subprotocol(&self) -> Option<&str> {
        self.link.subprotocol.as_deref()
    }
}
