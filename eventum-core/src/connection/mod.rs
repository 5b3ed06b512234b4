//! The protocol [`Connection`]: one WebSocket connection, server side, as a state machine.

mod commands;
mod inbound;
mod link;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::deflate::{MessageInflater, INFLATE_CHUNK};
use crate::error::{HandshakeError, ProtocolError};
use crate::event::{Event, State};
use crate::frame::MAX_HEADER_LEN;
use crate::handshake::{self, DeflateParams, HeadReader, Request};
use crate::outbound::Transmit;

pub use commands::Commands;
use inbound::{Inbound, Source, Step};
use link::Link;

/// One server-side WebSocket connection, from the first byte of the HTTP request to the
/// end of the close handshake, with no I/O of its own.
///
/// The methods fall into four groups (the shape of quinn-proto's `Connection`):
///
/// * **inputs**, each told the current time: [`handle_input`](Self::handle_input) (bytes
///   read), [`handle_eof`](Self::handle_eof) (end of stream),
///   [`handle_timeout`](Self::handle_timeout) (a deadline passed) and
///   [`handle_transport_error`](Self::handle_transport_error) (the transport broke);
/// * **outputs**: [`poll_event`](Self::poll_event) (the next event, with the
///   [`Commands`] to answer it), [`poll_transmit`](Self::poll_transmit) +
///   [`transmitted`](Self::transmitted) (the bytes for the wire), and
///   [`poll_timeout`](Self::poll_timeout) (the next deadline);
/// * **commands**, all on [`Commands`] ([`commands`](Self::commands), or beside an event);
/// * **getters**: [`state`](Self::state), [`wants_read`](Self::wants_read),
///   [`should_close_transport`](Self::should_close_transport), ...
///
/// After every input or command: drain the events, write the output, and sleep until the
/// deadline or the next readable bytes. Instants passed in must not go backwards.
/// Messages are decoded as their events are polled, at the time of the input that
/// brought their bytes.
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
/// let Some((Event::UpgradeRequest(request), mut commands)) = conn.poll_event() else { panic!() };
/// assert_eq!(request.path(), "/chat");
/// commands.accept(now, Accept::new()).unwrap();
/// assert!(conn.poll_transmit().first().starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// conn.transmitted(conn.poll_transmit().len());
///
/// // A masked text frame "Hello" from the client (RFC 6455 §5.7), echoed back unmasked
/// // straight from the receive buffer.
/// conn.handle_input(now, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let Some((Event::Text(text), mut commands)) = conn.poll_event() else { panic!() };
/// commands.send_text(text).unwrap();
/// assert_eq!(conn.poll_transmit().first(), b"\x81\x05Hello");
/// ```
#[derive(Debug)]
pub struct Connection {
    inbound: Inbound,
    link: Link,
    /// Finds the end of the request head while it arrives.
    head: HeadReader,
    /// The request, once its head is read; kept apart so events and commands can both
    /// borrow it.
    request: Option<Request>,
    /// The request is read and not yet reported as an event.
    request_unreported: bool,
    /// The time of the latest input: messages decoded from its bytes act at this time.
    input_time: Instant,
}

impl Connection {
    /// A connection whose first input will be the HTTP request; `now` starts the
    /// handshake timeout.
    pub fn new(config: Arc<Config>, now: Instant) -> Self {
        Connection {
            inbound: Inbound::default(),
            link: Link::new(config, now),
            head: HeadReader::new(),
            request: None,
            request_unreported: false,
            input_time: now,
        }
    }

    /// The time of the latest input, which a driver above the connection (a session) may
    /// move for inputs of its own (mail); nothing else changes.
    pub(crate) fn note_time(&mut self, now: Instant) {
        self.input_time = now;
    }

    /// The instant the latest input carried.
    pub(crate) fn input_time(&self) -> Instant {
        self.input_time
    }

    /// Takes bytes received from the transport. Never fails: bad input is answered on the
    /// wire and reported as [`Event::Closed`].
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.count_input(now, data.len());
        match self.link.state() {
            State::Handshake if self.inbound.unconsumed().is_empty() => {
                // The usual case, a head that arrives in one read, is parsed where it lies:
                // only what is left of `data` is kept.
                let read = read_head(&mut self.head, self.link.config(), data);
                let head_len = self.after_head(now, read).unwrap_or(0);
                if self.link.state() != State::Closed {
                    self.inbound.push(data.get(head_len..).unwrap_or_default());
                }
            }
            State::Handshake => {
                self.inbound.push(data);
                let read = read_head(&mut self.head, self.link.config(), self.inbound.unconsumed());
                if let Some(len) = self.after_head(now, read) {
                    self.inbound.consume(len);
                }
            }
            State::AwaitingDecision => self.inbound.push(data),
            State::Open | State::Closing if !data.is_empty() => {
                self.link.heard_from_peer(now);
                self.inbound.push(data);
            }
            State::Open | State::Closing | State::Closed => {}
        }
    }

    /// [`handle_input`](Self::handle_input) for a driver that reads into a `Vec`: once
    /// the connection is open and no earlier input is pending, `buffer` itself is decoded
    /// in place until [`give_back_input`](Self::give_back_input), which the caller must
    /// call after polling the events (they borrow it); otherwise its bytes are copied now.
    pub(crate) fn lend_input(&mut self, now: Instant, buffer: &mut Vec<u8>) {
        match self.link.state() {
            State::Open | State::Closing if !buffer.is_empty() => {
                self.count_input(now, buffer.len());
                self.link.heard_from_peer(now);
                self.inbound.lend(buffer);
            }
            _ => {
                self.handle_input(now, buffer);
                buffer.clear();
            }
        }
    }

    /// Notes an input's time and counts its bytes (both ways in).
    fn count_input(&mut self, now: Instant, len: usize) {
        self.input_time = now;
        self.link.traffic.bytes_in += len as u64;
    }

    /// Ends a [`lend_input`](Self::lend_input): what is left of an unfinished frame is
    /// copied out and `buffer` is the caller's again, empty.
    pub(crate) fn give_back_input(&mut self, buffer: &mut Vec<u8>) {
        self.inbound.give_back(buffer);
    }

    /// The transport's read side ended. Events already received are still reported first.
    pub fn handle_eof(&mut self, now: Instant) {
        self.input_time = now;
        self.inbound.eof = true;
        if self.link.state() == State::Handshake {
            self.inbound.discard_all();
            self.link.transport_ended(now);
        }
    }

    /// Tells the connection the time; acts on every deadline that has passed. Calling it
    /// early or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input_time = now;
        if self.link.handle_timeout(now) {
            self.inbound.discard_all();
        }
    }

    /// The transport failed (a write error, a reset): nothing more can be sent. Pending
    /// output is dropped and the connection closes at once (reported as
    /// [`CloseCause::TransportEnded`](crate::CloseCause::TransportEnded)), so the driver
    /// can release the transport.
    pub fn handle_transport_error(&mut self, now: Instant) {
        self.input_time = now;
        self.inbound.discard_all();
        self.link.transport_failed(now);
    }

    /// The commands (accept, respond, send, deliver, ping, close).
    pub fn commands(&mut self) -> Commands<'_> {
        Commands {
            link: &mut self.link,
            request: self.request.as_ref(),
        }
    }

    /// The next event, with the [`Commands`] to answer it while it borrows the receive
    /// buffer (an echo copies the message once, into the output queue); `None` when
    /// nothing more can happen until more input arrives.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<(Event<'_>, Commands<'_>)> {
        self.next_event(|event, commands| (event, commands))
    }

    /// [`poll_event`](Self::poll_event) handing the event to `act` where it is made: the
    /// application's dispatch, inlined here, takes a message without the event and its
    /// commands being returned through memory first.
    #[inline]
    pub(crate) fn next_event<'a, R>(&'a mut self, act: impl FnOnce(Event<'a>, Commands<'a>) -> R) -> Option<R> {
        // The common case first: an open connection's next message, whole in one small
        // frame (the same step `next_ready` would take, without its other cases).
        let small = match self.link.state() {
            State::Open => {
                let config = self.link.config();
                let limit = config.max_frame_size().min(config.max_message_size());
                self.inbound.next_small_message(limit)
            }
            _ => None,
        };
        let ready = match small {
            Some(step) => Ready::Step(step),
            None => self.next_ready()?,
        };
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
                match crate::utf8::text(bytes) {
                    Some(text) => {
                        self.link.traffic.messages_in += 1;
                        Event::Text(text)
                    }
                    None => {
                        self.link.fail_protocol(self.input_time, ProtocolError::InvalidUtf8);
                        Event::Closed(self.link.take_closed()?)
                    }
                }
            }
            Ready::Step(Step::Binary(range, source)) => {
                self.link.traffic.messages_in += 1;
                match source {
                    Source::Rx => Event::Binary(inbound.rx_slice(range)),
                    Source::Message => Event::Binary(inbound.message_slice(range)),
                }
            }
            Ready::Step(Step::Ping(range)) => Event::Ping(inbound.rx_slice(range)),
            Ready::Step(Step::Pong(range)) => Event::Pong(inbound.rx_slice(range)),
            Ready::Closed => Event::Closed(self.link.take_closed()?),
            Ready::Step(_) => return None,
        };
        let commands = Commands {
            link: &mut self.link,
            request: self.request.as_ref(),
        };
        Some(act(event, commands))
    }

    /// The bytes waiting for the wire. Write them (or a prefix), then call
    /// [`transmitted`](Self::transmitted) with how many the transport took.
    pub fn poll_transmit(&self) -> Transmit<'_> {
        Transmit::new(self.link.out())
    }

    /// Marks the first `n` bytes of [`poll_transmit`](Self::poll_transmit) as written.
    pub fn transmitted(&mut self, n: usize) {
        self.link.traffic.bytes_out += n as u64;
        self.link.transmitted(n);
    }

    /// Takes the traffic counted since the last call, for the metrics.
    pub(crate) fn take_traffic(&mut self) -> crate::observe::Traffic {
        std::mem::take(&mut self.link.traffic)
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work,
    /// or `None` when no timer runs.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.link.state()
    }

    /// Whether the driver should read more from the transport now. False while the
    /// output is above the high-water mark (until it drains to the low-water mark),
    /// while a request waits for a decision, while the unprocessed input already holds
    /// the largest possible frame (so polling events will make progress), after end of
    /// input, and once the connection is closed. A driver that keeps reading regardless
    /// makes the receive buffer grow with what it feeds.
    pub fn wants_read(&self) -> bool {
        match self.link.state() {
            State::Handshake => !self.inbound.eof,
            State::AwaitingDecision | State::Closed => false,
            State::Open | State::Closing => {
                let max_frame = self.link.config().max_frame_size();
                !self.inbound.eof
                    && !self.link.throttled()
                    && self.inbound.pending_len() < max_frame.saturating_add(MAX_HEADER_LEN)
            }
        }
    }

    /// Bytes queued for the wire.
    pub fn buffered_amount(&self) -> usize {
        self.link.out().len()
    }

    /// True once the connection is over and its last bytes are written (or abandoned
    /// after the close timeout): the driver should close the transport now. After a
    /// close handshake the server closes the TCP connection first, as RFC 6455 §7.1.1 asks.
    pub fn should_close_transport(&self) -> bool {
        self.link.state() == State::Closed && self.link.out().is_empty()
    }

    /// The request, once its head has been read.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
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

    /// Looks for the end of the request head and acts on a complete one.
    /// Acts on what [`read_head`] found: a complete head's request awaits the
    /// application's decision, a bad one fails the handshake. The head's length when the
    /// request awaits the decision; `None` while more bytes are needed, or after a failure
    /// (the connection is closed then).
    fn after_head(&mut self, now: Instant, read: HeadRead) -> Option<usize> {
        let (head_len, request, verdict) = match read {
            HeadRead::Incomplete => return None,
            HeadRead::Failed(e) => {
                self.fail_handshake(now, e);
                return None;
            }
            HeadRead::Complete { len, request, verdict } => (len, request, verdict),
        };
        self.request = Some(request);
        if let Err(e) = verdict {
            self.fail_handshake(now, e);
            return None;
        }
        self.request_unreported = true;
        self.link.await_decision();
        Some(head_len)
    }

    fn fail_handshake(&mut self, now: Instant, error: HandshakeError) {
        self.inbound.discard_all();
        self.link.fail_handshake(now, error);
    }

    /// Decides what the next event is, doing the protocol work (pongs, close replies,
    /// errors) along the way.
    fn next_ready(&mut self) -> Option<Ready> {
        let now = self.input_time;
        if self.request_unreported && self.link.state() == State::AwaitingDecision {
            self.request_unreported = false;
            return Some(Ready::Request);
        }
        loop {
            let state = self.link.state();
            if state == State::Closed {
                if self.inbound.pending_len() > 0 {
                    self.inbound.discard_all();
                }
                return self.link.has_closed_event().then_some(Ready::Closed);
            }
            if !matches!(state, State::Open | State::Closing) {
                return None;
            }
            let discarding = state == State::Closing;
            let config = self.link.config();
            let (max_frame, max_message) = (config.max_frame_size(), config.max_message_size());
            if let (Some(params), false) = (self.link.compression(), self.inbound.compression_enabled()) {
                // Agreed by `Commands::accept`, which cannot reach the receive side.
                let inflater = MessageInflater::new(params, max_message, INFLATE_CHUNK);
                self.inbound.enable_compression(inflater);
            }
            match self.inbound.step(max_frame, max_message, discarding) {
                Step::Continue => continue,
                Step::NeedMore if self.inbound.eof => self.link.transport_ended(now),
                Step::NeedMore => return None,
                Step::Error(e) => {
                    self.inbound.discard_all();
                    self.link.fail_protocol(now, e);
                }
                Step::Close(payload) => {
                    let code_and_reason = payload.map(|(code, range)| {
                        // The decoder validated the reason as UTF-8.
                        let reason = String::from_utf8_lossy(self.inbound.rx_slice(range)).into_owned();
                        (code, reason)
                    });
                    self.inbound.discard_all();
                    self.link.close_received(now, code_and_reason);
                }
                Step::Ping(range) => {
                    // RFC 6455 §5.5.2: answer every ping until the peer's close arrives,
                    // also while our own close waits for its answer.
                    self.link.queue_pong(now, self.inbound.rx_slice(range.clone()));
                    if discarding || self.link.state() == State::Closed {
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

/// What [`read_head`] found at the start of the input.
enum HeadRead {
    /// No complete head yet.
    Incomplete,
    /// The head is too large or not a request.
    Failed(HandshakeError),
    /// A request head of `len` bytes, and whether it passes the upgrade checks.
    Complete {
        len: usize,
        request: Request,
        verdict: Result<(), HandshakeError>,
    },
}

/// Looks for a complete request head at the start of `input`, parses it and checks it as
/// an upgrade (or a plain HTTP request, when the configuration serves those).
fn read_head(head: &mut HeadReader, config: &Config, input: &[u8]) -> HeadRead {
    let len = match head.poll(input, config.max_head_bytes()) {
        Ok(Some(len)) => len,
        Ok(None) => return HeadRead::Incomplete,
        Err(e) => return HeadRead::Failed(e),
    };
    let request = match handshake::parse_request(input.get(..len).unwrap_or_default(), config.max_headers()) {
        Ok(request) => request,
        Err(e) => return HeadRead::Failed(e),
    };
    let verdict = if request.is_websocket_upgrade() {
        handshake::validate_upgrade(&request)
    } else if config.http_fallback() {
        Ok(())
    } else {
        Err(HandshakeError::NotWebSocket)
    };
    HeadRead::Complete { len, request, verdict }
}

/// What [`Connection::next_ready`] found, before it is turned into a borrowed [`Event`].
enum Ready {
    Request,
    Step(Step),
    Closed,
}
