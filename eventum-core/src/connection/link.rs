//! The sending side and the lifecycle of a connection: state, output queue, close
//! handshake and timers. Every state transition of [`State`] happens in this file.

use std::sync::Arc;
use std::time::Instant;

use crate::close::{check_local_close, CloseCode};
use crate::config::{Config, SlowConsumerPolicy};
use crate::error::{CloseError, HandshakeError, ProtocolError, SendError};
use crate::event::{CloseCause, Closed, State};
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::handshake::{self, HeadReader};
use crate::outbound::{Outbound, SharedFrame};

/// The reason sent with 1011 when the peer ignores keepalive pings.
pub(crate) const KEEPALIVE_TIMEOUT_REASON: &str = "keepalive timeout";
/// The reason sent with 1008 when the peer does not read what is pushed to it.
pub(crate) const SLOW_CONSUMER_REASON: &str = "slow consumer";

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) config: Arc<Config>,
    pub(crate) state: State,
    pub(crate) out: Outbound,
    /// The latest instant the driver told us about.
    pub(crate) now: Instant,
    pub(crate) head: HeadReader,
    /// An upgrade or HTTP request is waiting to be reported.
    pub(crate) request_pending: bool,
    pub(crate) subprotocol: Option<String>,
    /// Reading is paused until the output drains to the low-water mark.
    pub(crate) throttled: bool,
    /// The `Closed` event, set when the state becomes `Closed`, taken when reported.
    pub(crate) closed: Option<Closed>,
    /// The close we sent first, while waiting for the peer's answer.
    sent_close: Option<(CloseCode, String)>,
    /// A close frame is queued; RFC 6455 allows one per direction.
    close_frame_queued: bool,
    handshake_deadline: Option<Instant>,
    /// When anything last arrived from the peer (keepalive).
    last_heard: Instant,
    /// When our keepalive ping went out, if it is unanswered.
    ping_sent: Option<Instant>,
    /// Closing: when to give up on the peer's close. Closed: when to abandon unsent output.
    close_deadline: Option<Instant>,
}

impl Link {
    pub(crate) fn new(config: Arc<Config>, now: Instant) -> Self {
        Link {
            handshake_deadline: config.handshake_timeout().and_then(|t| now.checked_add(t)),
            config,
            state: State::Handshake,
            out: Outbound::default(),
            now,
            head: HeadReader::new(),
            request_pending: false,
            subprotocol: None,
            throttled: false,
            closed: None,
            sent_close: None,
            close_frame_queued: false,
            last_heard: now,
            ping_sent: None,
            close_deadline: None,
        }
    }

    // --- transitions -------------------------------------------------------------------

    /// Handshake → AwaitingDecision: a complete, valid request head. The handshake
    /// deadline keeps running until the application decides.
    pub(crate) fn await_decision(&mut self) {
        self.state = State::AwaitingDecision;
        self.request_pending = true;
    }

    /// AwaitingDecision → Open: the 101 is queued.
    pub(crate) fn open(&mut self, response: &[u8]) {
        self.out_push_raw(response);
        self.state = State::Open;
        self.request_pending = false;
        self.handshake_deadline = None;
        self.last_heard = self.now;
    }

    /// Handshake → Closed: the core refuses the request itself.
    pub(crate) fn fail_handshake(&mut self, error: HandshakeError) {
        let mut bytes = Vec::new();
        // Our own error responses contain only valid headers.
        if handshake::write_response(&handshake::error_response(&error), &mut bytes).is_ok() {
            self.out_push_raw(&bytes);
        }
        self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::Handshake(error));
    }

    /// Open → Closed: the peer broke the protocol; send the RFC's close code and stop.
    pub(crate) fn fail_protocol(&mut self, error: ProtocolError) {
        let code = error.close_code();
        let reason = error.to_string();
        if self.state == State::Open {
            self.queue_close(code, &reason);
        }
        self.finish(code, reason, CloseCause::Protocol(error));
    }

    /// Open|Closing → Closed: the peer's close frame arrived.
    pub(crate) fn close_received(&mut self, payload: Option<(CloseCode, String)>) {
        match self.sent_close.take() {
            Some((code, reason)) => self.finish(code, reason, CloseCause::Local { answered: true }),
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
                self.finish(code, reason, CloseCause::Remote);
            }
        }
    }

    /// Open|Closing → Closed: the transport ended before a close handshake finished.
    pub(crate) fn transport_ended(&mut self) {
        match self.sent_close.take() {
            Some((code, reason)) => self.finish(code, reason, CloseCause::Local { answered: false }),
            None => self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::TransportEnded),
        }
    }

    /// Any state → Closed: the transport broke; nothing more can be written.
    pub(crate) fn abort(&mut self) {
        self.out.clear();
        self.sent_close = None;
        self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::TransportEnded);
    }

    /// Any state → Closed. The close timeout now bounds how long unsent output may wait.
    pub(crate) fn finish(&mut self, code: CloseCode, reason: String, cause: CloseCause) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.request_pending = false;
        self.handshake_deadline = None;
        self.ping_sent = None;
        self.close_deadline = self.now.checked_add(self.config.close_timeout());
        self.closed = Some(Closed { code, reason, cause });
    }

    // --- commands ----------------------------------------------------------------------

    pub(crate) fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        let size = payload.len().saturating_add(MAX_HEADER_LEN);
        if size > self.config.max_backlog() {
            return Err(SendError::MessageTooLarge);
        }
        if self.out.len() + size > self.config.max_backlog() {
            return Err(SendError::Full);
        }
        self.out.push_frame(opcode, payload);
        self.after_push();
        Ok(())
    }

    pub(crate) fn push(&mut self, frame: &SharedFrame) -> Result<(), SendError> {
        self.check_open()?;
        if frame.len() > self.config.max_backlog() {
            return Err(SendError::MessageTooLarge);
        }
        if self.out.len() + frame.len() > self.config.max_backlog() {
            if self.config.slow_consumer() == SlowConsumerPolicy::Close {
                self.queue_close(CloseCode::POLICY, SLOW_CONSUMER_REASON);
                self.finish(
                    CloseCode::POLICY,
                    SLOW_CONSUMER_REASON.to_owned(),
                    CloseCause::SlowConsumer,
                );
            }
            return Err(SendError::Full);
        }
        self.out.push_shared(frame);
        self.after_push();
        Ok(())
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

    /// Open → Closing: the application starts the close handshake.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        match self.state {
            State::Open => {}
            State::Closing | State::Closed => return Err(CloseError::AlreadyClosing),
            State::Handshake | State::AwaitingDecision => return Err(CloseError::NotOpen),
        }
        check_local_close(code, reason)?;
        self.queue_close(code, reason);
        self.sent_close = Some((code, reason.to_owned()));
        self.state = State::Closing;
        self.ping_sent = None;
        self.close_deadline = self.now.checked_add(self.config.close_timeout());
        Ok(())
    }

    /// Answers a ping. A peer that floods pings without reading the pongs (possible only
    /// if the driver keeps reading past `wants_read`) is closed as a slow consumer once
    /// the output passes the hard limit.
    pub(crate) fn queue_pong(&mut self, payload: &[u8]) {
        if self.out.len() + payload.len() + MAX_HEADER_LEN > self.config.max_backlog() {
            self.queue_close(CloseCode::POLICY, SLOW_CONSUMER_REASON);
            self.finish(
                CloseCode::POLICY,
                SLOW_CONSUMER_REASON.to_owned(),
                CloseCause::SlowConsumer,
            );
            return;
        }
        self.push_control(OpCode::Pong, payload);
    }

    pub(crate) fn out_push_raw(&mut self, bytes: &[u8]) {
        self.out.push_raw(bytes);
        self.after_push();
    }

    pub(crate) fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
        if self.throttled && self.out.len() <= self.config.low_water() {
            self.throttled = false;
        }
    }

    // --- time --------------------------------------------------------------------------

    pub(crate) fn heard_from_peer(&mut self, now: Instant) {
        self.last_heard = now;
        self.ping_sent = None;
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshake | State::AwaitingDecision => self.handshake_deadline,
            State::Open => self.keepalive_deadline(),
            State::Closing => self.close_deadline,
            State::Closed if !self.out.is_empty() => self.close_deadline,
            State::Closed => None,
        }
    }

    /// Acts on passed deadlines; returns true when received input must be discarded.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        let due = |deadline: Option<Instant>| deadline.is_some_and(|d| d <= now);
        match self.state {
            State::Handshake | State::AwaitingDecision if due(self.handshake_deadline) => {
                self.fail_handshake(HandshakeError::Timeout);
                true
            }
            State::Open if due(self.keepalive_deadline()) => {
                if self.ping_sent.is_some() {
                    self.queue_close(CloseCode::INTERNAL_ERROR, KEEPALIVE_TIMEOUT_REASON);
                    let reason = KEEPALIVE_TIMEOUT_REASON.to_owned();
                    self.finish(CloseCode::INTERNAL_ERROR, reason, CloseCause::KeepaliveTimeout);
                    true
                } else {
                    self.push_control(OpCode::Ping, b"");
                    self.ping_sent = Some(now);
                    false
                }
            }
            State::Closing if due(self.close_deadline) => {
                // The peer never answered: give up on it and on what it did not read.
                self.transport_ended();
                self.out.clear();
                true
            }
            State::Closed if due(self.close_deadline) => {
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
        match self.ping_sent {
            Some(sent) => sent.checked_add(keepalive.timeout),
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
        self.out.push_frame(opcode, payload);
        self.after_push();
    }

    fn after_push(&mut self) {
        if self.out.len() > self.config.high_water() {
            self.throttled = true;
        }
    }
}
