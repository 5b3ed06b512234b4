//! The sending side and the lifecycle of a connection: state, output queue, close
//! handshake and timers. Every state transition of [`State`] happens in this file, and
//! every transition that starts a timer is told the time.

use std::sync::Arc;
use std::time::Instant;

use crate::close::{check_local_close, CloseCode};
use crate::config::{Config, SlowConsumerPolicy};
use crate::deflate::MessageDeflater;
use crate::error::{CloseError, HandshakeError, ProtocolError, SendError};
use crate::event::{CloseCause, Closed, State};
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::handshake::{self, DeflateConfig, DeflateParams};
use crate::observe::{self, Traffic};
use crate::outbound::{Outbound, SharedFrame};

/// The reason sent with 1011 when the peer ignores keepalive pings.
const KEEPALIVE_TIMEOUT_REASON: &str = "keepalive timeout";
/// The reason sent with 1008 when the peer does not read what is delivered to it.
const SLOW_CONSUMER_REASON: &str = "slow consumer";

/// What a queued HTTP response reserves (a browser's 101 is about 200 bytes): written in
/// place, grown once at most.
const RESPONSE_CAPACITY: usize = 256;

#[derive(Debug)]
pub(crate) struct Link {
    config: Arc<Config>,
    state: State,
    out: Outbound,
    /// Boxed, not a `String`: kept for the connection's life, a capacity field is 8 bytes
    /// for nothing.
    subprotocol: Option<Box<str>>,
    /// The permessage-deflate parameters agreed at the upgrade.
    compression: Option<DeflateParams>,
    /// Compresses what we send, while compression is on. Boxed: a connection without
    /// compression pays one pointer.
    deflater: Option<Box<MessageDeflater>>,
    /// Reading is paused until the output drains to the low-water mark.
    throttled: bool,
    /// The `Closed` event, set when the state becomes `Closed`, taken when reported. Boxed,
    /// as `sent_close`: set once at the end, they would cost every open connection 80 bytes.
    closed: Option<Box<Closed>>,
    /// The close we sent first, while waiting for the peer's answer.
    sent_close: Option<Box<(CloseCode, String)>>,
    /// A close frame is queued; RFC 6455 allows one per direction.
    close_frame_queued: bool,
    /// When anything last arrived from the peer (keepalive).
    last_heard: Instant,
    /// The one timer of the current state (each state has at most one, so they share a
    /// field): Handshake and AwaitingDecision, the handshake deadline; Open, when our
    /// keepalive ping went out, while it is unanswered; Closing, when to give up on the
    /// peer's close; Closed, when to abandon unsent output.
    timer: Option<Instant>,
    /// Traffic not yet reported to the metrics.
    pub(crate) traffic: Traffic,
}

impl Link {
    pub(crate) fn new(config: Arc<Config>, now: Instant) -> Self {
        Link {
            timer: config.handshake_timeout().and_then(|t| now.checked_add(t)),
            config,
            state: State::Handshake,
            out: Outbound::default(),
            subprotocol: None,
            compression: None,
            deflater: None,
            throttled: false,
            closed: None,
            sent_close: None,
            close_frame_queued: false,
            last_heard: now,
            traffic: Traffic::default(),
        }
    }

    // --- getters -------------------------------------------------------------------------

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn out(&self) -> &Outbound {
        &self.out
    }

    pub(crate) fn throttled(&self) -> bool {
        self.throttled
    }

    pub(crate) fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    pub(crate) fn compression(&self) -> Option<&DeflateParams> {
        self.compression.as_ref()
    }

    /// Takes the `Closed` event once the state is `Closed`.
    pub(crate) fn take_closed(&mut self) -> Option<Closed> {
        self.closed.take().map(|closed| *closed)
    }

    pub(crate) fn has_closed_event(&self) -> bool {
        self.closed.is_some()
    }

    // --- transitions -------------------------------------------------------------------

    /// Handshake → AwaitingDecision: a complete, valid request head. The handshake
    /// deadline keeps running until the application decides.
    pub(crate) fn await_decision(&mut self) {
        self.state = State::AwaitingDecision;
    }

    /// AwaitingDecision → Open, once the 101 is queued (`push_response`); `now` starts the
    /// keepalive timer. `compression`: the permessage-deflate parameters it agreed to, and
    /// our settings.
    pub(crate) fn open(
        &mut self,
        now: Instant,
        subprotocol: Option<String>,
        compression: Option<(DeflateParams, &DeflateConfig)>,
    ) {
        self.state = State::Open;
        self.subprotocol = subprotocol.map(String::into_boxed_str);
        self.compression = compression.map(|(params, _)| params);
        self.deflater = compression.map(|(params, config)| Box::new(MessageDeflater::new(&params, config)));
        self.timer = None;
        self.last_heard = now;
    }

    /// AwaitingDecision → Closed, once the application's HTTP response is queued
    /// (`push_response`).
    pub(crate) fn respond(&mut self, now: Instant, status: u16) {
        self.finish(
            now,
            CloseCode::ABNORMAL,
            String::new(),
            CloseCause::Responded { status },
        );
    }

    /// Handshake → Closed: the core refuses the request itself.
    pub(crate) fn fail_handshake(&mut self, now: Instant, error: HandshakeError) {
        // Our own error responses contain only valid headers: this cannot fail.
        let _ = self.push_response(|out| handshake::write_response(&handshake::error_response(&error), out));
        self.finish(now, CloseCode::ABNORMAL, String::new(), CloseCause::Handshake(error));
    }

    /// Open → Closed: the peer broke the protocol; send the RFC's close code and stop.
    pub(crate) fn fail_protocol(&mut self, now: Instant, error: ProtocolError) {
        let code = error.close_code();
        let reason = error.to_string();
        if self.state == State::Open {
            self.queue_close(code, &reason);
        }
        self.finish(now, code, reason, CloseCause::Protocol(error));
    }

    /// Open|Closing → Closed: the peer does not read what it is sent; close with 1008.
    pub(crate) fn fail_slow_consumer(&mut self, now: Instant) {
        self.queue_close(CloseCode::POLICY, SLOW_CONSUMER_REASON);
        let reason = SLOW_CONSUMER_REASON.to_owned();
        self.finish(now, CloseCode::POLICY, reason, CloseCause::SlowConsumer);
    }

    /// Open|Closing → Closed: the peer's close frame arrived.
    pub(crate) fn close_received(&mut self, now: Instant, payload: Option<(CloseCode, String)>) {
        match self.sent_close.take().map(|sent| *sent) {
            Some((code, reason)) => self.finish(now, code, reason, CloseCause::Local { answered: true }),
            None => {
                // Echo the peer's code (RFC 6455 §5.5.1), or an empty close for an empty one.
                let (code, reason) = match payload {
                    Some((code, reason)) => {
                        // 1010 is the one valid code a server may not send: answer 1000.
                        let echo = if code.is_sendable_by_server() {
                            code
                        } else {
                            CloseCode::NORMAL
                        };
                        self.queue_close(echo, "");
                        (code, reason)
                    }
                    None => {
                        self.queue_close_frame(&[]);
                        (CloseCode::NO_STATUS, String::new())
                    }
                };
                self.finish(now, code, reason, CloseCause::Remote);
            }
        }
    }

    /// Any state → Closed: the transport ended before a close handshake finished.
    pub(crate) fn transport_ended(&mut self, now: Instant) {
        match self.sent_close.take().map(|sent| *sent) {
            Some((code, reason)) => self.finish(now, code, reason, CloseCause::Local { answered: false }),
            None => self.finish(now, CloseCode::ABNORMAL, String::new(), CloseCause::TransportEnded),
        }
    }

    /// Any state → Closed: the transport broke; nothing more can be written.
    pub(crate) fn transport_failed(&mut self, now: Instant) {
        self.out.clear();
        self.sent_close = None;
        self.finish(now, CloseCode::ABNORMAL, String::new(), CloseCause::TransportEnded);
    }

    /// Any state → Closed. The close timeout now bounds how long unsent output may wait.
    fn finish(&mut self, now: Instant, code: CloseCode, reason: String, cause: CloseCause) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.timer = now.checked_add(self.config.close_timeout());
        self.closed = Some(Box::new(Closed { code, reason, cause }));
    }

    // --- commands ----------------------------------------------------------------------

    /// Queues a message, compressed when compression is on and the message is large
    /// enough. The backlog is checked against the uncompressed size before compressing,
    /// so a compressor that keeps its context never takes in a message that is not sent.
    pub(crate) fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        let size = payload.len().saturating_add(MAX_HEADER_LEN);
        if size > self.config.max_backlog() {
            return Err(SendError::MessageTooLarge);
        }
        if self.out.len() + size > self.config.max_backlog() {
            return Err(SendError::Full);
        }
        match self.compress(payload) {
            Some(compressed) => self.out.push_frame(opcode, true, &compressed),
            None => self.out.push_frame(opcode, false, payload),
        }
        self.traffic.messages_out += 1;
        self.after_push();
        Ok(())
    }

    /// Queues a frame delivered by someone else, under the slow-consumer policy. With
    /// compression on and no context takeover, the frame's one shared compressed copy is
    /// queued instead.
    pub(crate) fn deliver(&mut self, now: Instant, frame: &SharedFrame) -> Result<(), SendError> {
        self.check_open()?;
        if frame.len() > self.config.max_backlog() {
            return Err(SendError::MessageTooLarge);
        }
        if self.out.len() + frame.len() > self.config.max_backlog() {
            observe::delivery_dropped();
            if self.config.slow_consumer() == SlowConsumerPolicy::Close {
                self.fail_slow_consumer(now);
            }
            return Err(SendError::Full);
        }
        let payload = frame.payload();
        match self.deflater.as_mut().filter(|d| d.should_compress(payload.len())) {
            Some(deflater) if deflater.is_stateless() => match frame.deflated(deflater) {
                Some(compressed) => self.out.push_shared(&compressed),
                None => self.out.push_shared(frame),
            },
            Some(_) => match self.compress(payload) {
                Some(compressed) => self.out.push_frame(frame.opcode(), true, &compressed),
                None => self.out.push_shared(frame),
            },
            None => self.out.push_shared(frame),
        }
        self.traffic.messages_out += 1;
        self.after_push();
        Ok(())
    }

    /// The compressed payload of a message to send, or `None` to send it as it is: no
    /// compression, a message under the threshold, or (without context takeover, where
    /// the choice is free) a result no smaller. A compressor failure, which only misuse
    /// can cause, switches compression off: uncompressed messages stay valid. For a
    /// connection without compression it is one test on every send, inlined.
    #[inline(always)]
    fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        match self.deflater {
            None => None,
            Some(_) => self.deflate(payload),
        }
    }

    fn deflate(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let deflater = self.deflater.as_mut().filter(|d| d.should_compress(payload.len()))?;
        match deflater.deflate_message(payload) {
            Ok(compressed) => compressed,
            Err(e) => {
                log::error!("permessage-deflate switched off for this connection: {e}");
                self.deflater = None;
                None
            }
        }
    }

    pub(crate) fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        if self.out.len() + payload.len() + MAX_HEADER_LEN > self.config.max_backlog() {
            return Err(SendError::Full);
        }
        self.push_control(OpCode::Ping, payload);
        Ok(())
    }

    /// Open → Closing: the application starts the close handshake; `now` starts the
    /// close timeout.
    pub(crate) fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        match self.state {
            State::Open => {}
            State::Closing | State::Closed => return Err(CloseError::AlreadyClosing),
            State::Handshake | State::AwaitingDecision => return Err(CloseError::NotOpen),
        }
        check_local_close(code, reason)?;
        self.queue_close(code, reason);
        self.sent_close = Some(Box::new((code, reason.to_owned())));
        self.state = State::Closing;
        self.timer = now.checked_add(self.config.close_timeout());
        Ok(())
    }

    /// Answers a ping. A peer that floods pings without reading the pongs (possible only
    /// if the driver keeps reading past `wants_read`) is closed as a slow consumer once
    /// the output passes the hard limit.
    pub(crate) fn queue_pong(&mut self, now: Instant, payload: &[u8]) {
        if self.out.len() + payload.len() + MAX_HEADER_LEN > self.config.max_backlog() {
            self.fail_slow_consumer(now);
            return;
        }
        self.push_control(OpCode::Pong, payload);
    }

    pub(crate) fn transmitted(&mut self, n: usize) {
        self.out.consume(n);
        if self.throttled && self.out.len() <= self.config.low_water() {
            self.throttled = false;
        }
    }

    // --- time --------------------------------------------------------------------------

    pub(crate) fn heard_from_peer(&mut self, now: Instant) {
        self.last_heard = now;
        if self.state == State::Open {
            // The ping is answered (anything heard will do); in Closing the timer is the
            // close deadline, which hearing from the peer does not move.
            self.timer = None;
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshake | State::AwaitingDecision | State::Closing => self.timer,
            State::Open => self.keepalive_deadline(),
            State::Closed if !self.out.is_empty() => self.timer,
            State::Closed => None,
        }
    }

    /// Acts on passed deadlines; returns true when received input must be discarded.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        let due = |deadline: Option<Instant>| deadline.is_some_and(|d| d <= now);
        match self.state {
            State::Handshake | State::AwaitingDecision if due(self.timer) => {
                self.fail_handshake(now, HandshakeError::Timeout);
                true
            }
            State::Open if due(self.keepalive_deadline()) => {
                if self.timer.is_some() {
                    self.queue_close(CloseCode::INTERNAL_ERROR, KEEPALIVE_TIMEOUT_REASON);
                    let reason = KEEPALIVE_TIMEOUT_REASON.to_owned();
                    self.finish(now, CloseCode::INTERNAL_ERROR, reason, CloseCause::KeepaliveTimeout);
                    true
                } else {
                    self.push_control(OpCode::Ping, b"");
                    self.timer = Some(now);
                    false
                }
            }
            State::Closing if due(self.timer) => {
                // The peer never answered: give up on it and on what it did not read.
                self.transport_ended(now);
                self.out.clear();
                true
            }
            State::Closed if due(self.timer) => {
                self.out.clear();
                false
            }
            _ => false,
        }
    }

    /// When to ping (nothing heard for the interval) or, with a ping unanswered, when to
    /// give up. `None` when keepalive is off or the instant is beyond representation.
    fn keepalive_deadline(&self) -> Option<Instant> {
        let keepalive = self.config.keepalive()?;
        match self.timer {
            Some(ping_sent) => ping_sent.checked_add(keepalive.timeout),
            None => self.last_heard.checked_add(keepalive.interval),
        }
    }

    // --- helpers -----------------------------------------------------------------------

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Handshake | State::AwaitingDecision => Err(SendError::NotOpen),
            State::Closing => Err(SendError::Closing),
            State::Closed => Err(SendError::Closed),
        }
    }

    fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        // Our reasons are short; never cut a reason in the middle of a character.
        let mut len = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(len) {
            len -= 1;
        }
        payload[2..2 + len].copy_from_slice(&reason.as_bytes()[..len]);
        self.queue_close_frame(&payload[..2 + len]);
    }

    /// Queues the one close frame this side may send; later ones are dropped.
    fn queue_close_frame(&mut self, payload: &[u8]) {
        if !std::mem::replace(&mut self.close_frame_queued, true) {
            self.push_control(OpCode::Close, payload);
        }
    }

    /// Control frames (pong, close replies) are owed by the protocol and always queued,
    /// in order with the rest of the output; reading pauses above the high-water mark,
    /// which is what keeps them bounded.
    fn push_control(&mut self, opcode: OpCode, payload: &[u8]) {
        self.out.push_frame(opcode, false, payload);
        self.after_push();
    }

    /// Queues the HTTP response `write` produces, written in place; nothing when it fails.
    pub(crate) fn push_response<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        self.out.push_written(RESPONSE_CAPACITY, write)?;
        self.after_push();
        Ok(())
    }

    fn after_push(&mut self) {
        if self.out.len() > self.config.high_water() {
            self.throttled = true;
        }
    }
}
