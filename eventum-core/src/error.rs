//! Error types, split by who is at fault.
//!
//! * [`HandshakeError`]: the peer sent a bad upgrade request; carries the HTTP status.
//! * [`ProtocolError`]: the peer broke RFC 6455 after the upgrade; carries the close code.
//! * [`SendError`], [`CloseError`], [`ApiMisuse`]: the local application asked for
//!   something that cannot be done now; the variant says what to change.
//! * [`ConfigError`]: an invalid [`Config`](crate::Config).

use std::fmt;

use crate::close::CloseCode;

/// Why an upgrade request was refused before the WebSocket opened.
///
/// The core answers each of these itself with [`HandshakeError::status`] and a short
/// text body ([`HandshakeError`]'s `Display`), then closes the connection.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request head grew past the configured byte limit (431).
    HeadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request carried more header fields than the configured limit (431).
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not an HTTP/1.x request (400).
    Malformed(&'static str),
    /// An upgrade was requested with a method other than GET (400).
    MethodNotGet,
    /// An upgrade was requested over something other than HTTP/1.1 (400).
    NotHttp11,
    /// No `Host` header (400).
    MissingHost,
    /// `Connection` does not contain the token `upgrade` (400).
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Key` is absent (400).
    MissingKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes (400).
    InvalidKey,
    /// `Sec-WebSocket-Version` is absent or not 13 (426, with `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// The request is plain HTTP, not a WebSocket upgrade (400 by default).
    NotWebSocket,
    /// The request head did not arrive before the handshake deadline (408).
    Timeout,
}

impl HandshakeError {
    /// The HTTP status the core answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => 431,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::Timeout => 408,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge { limit } => {
                write!(f, "Request header fields too large (limit {limit} bytes)")
            }
            HandshakeError::TooManyHeaders { limit } => {
                write!(f, "Too many request header fields (limit {limit})")
            }
            HandshakeError::Malformed(what) => write!(f, "Malformed HTTP request: {what}"),
            HandshakeError::MethodNotGet => f.write_str("WebSocket upgrade requires the GET method"),
            HandshakeError::NotHttp11 => f.write_str("WebSocket upgrade requires HTTP/1.1"),
            HandshakeError::MissingHost => f.write_str("Missing Host header"),
            HandshakeError::ConnectionNotUpgrade => f.write_str("Connection header must contain the token 'upgrade'"),
            HandshakeError::MissingKey => f.write_str("Missing Sec-WebSocket-Key header"),
            HandshakeError::InvalidKey => f.write_str("Sec-WebSocket-Key must be base64 of exactly 16 bytes"),
            HandshakeError::UnsupportedVersion => {
                f.write_str("Unsupported WebSocket version; this server speaks version 13")
            }
            HandshakeError::NotWebSocket => f.write_str("This endpoint only accepts WebSocket upgrade requests"),
            HandshakeError::Timeout => f.write_str("Timed out waiting for the request"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A violation of RFC 6455 by the peer after the upgrade.
///
/// The core closes the connection with [`ProtocolError::close_code`] and reports the
/// error in [`Closed`](crate::Closed).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the mask bit (1002).
    UnmaskedFrame,
    /// An RSV bit set that no negotiated extension owns (1002).
    ReservedBits,
    /// RSV1 (permessage-deflate's "compressed" bit) on a control or continuation frame
    /// (1002, RFC 7692 §6).
    MisplacedCompressionBit,
    /// A compressed message whose DEFLATE data is invalid (1007).
    InvalidCompressedData(String),
    /// An opcode that RFC 6455 reserves (1002).
    ReservedOpcode(u8),
    /// A control frame without FIN (1002).
    FragmentedControlFrame,
    /// A control frame with more than 125 payload bytes (1002).
    ControlFrameTooLong,
    /// A 64-bit payload length with the most significant bit set (1002).
    LengthTopBitSet,
    /// A continuation frame with no message in progress (1002).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (1002).
    ExpectedContinuation,
    /// A close frame with a 1-byte payload (1002).
    ClosePayloadTooShort,
    /// A close frame whose code may not appear on the wire (1002).
    InvalidCloseCode(u16),
    /// A close frame whose reason is not UTF-8 (1007).
    InvalidCloseReason,
    /// A text message that is not UTF-8 (1007).
    InvalidUtf8,
    /// A frame larger than the configured limit (1009).
    FrameTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A message larger than the configured limit (1009).
    MessageTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code RFC 6455 prescribes for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCompressedData(_) => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::ReservedBits => f.write_str("reserved bits set without a negotiated extension"),
            ProtocolError::MisplacedCompressionBit => f.write_str("RSV1 set on a control or continuation frame"),
            ProtocolError::InvalidCompressedData(why) => write!(f, "invalid compressed data: {why}"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            ProtocolError::LengthTopBitSet => f.write_str("64-bit payload length has its top bit set"),
            ProtocolError::UnexpectedContinuation => f.write_str("continuation frame without a message to continue"),
            ProtocolError::ExpectedContinuation => f.write_str("new message started before the previous one finished"),
            ProtocolError::ClosePayloadTooShort => f.write_str("close frame payload of 1 byte"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
            ProtocolError::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            ProtocolError::FrameTooLarge { limit } => write!(f, "frame larger than {limit} bytes"),
            ProtocolError::MessageTooLarge { limit } => write!(f, "message larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a message could not be queued for sending.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The WebSocket is not open yet (the upgrade has not been accepted).
    NotOpen,
    /// A close frame was already sent or received; no more data may be sent.
    Closing,
    /// The connection is closed.
    Closed,
    /// The message is larger than the outgoing buffer limit and could never be queued.
    MessageTooLarge,
    /// The outgoing buffer is over its hard limit: the peer is not reading fast enough.
    /// What happens next is the configured [`SlowConsumerPolicy`](crate::SlowConsumerPolicy).
    Full,
    /// A ping payload longer than 125 bytes.
    ControlPayloadTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "the WebSocket is not open yet",
            SendError::Closing => "the WebSocket is closing",
            SendError::Closed => "the WebSocket is closed",
            SendError::MessageTooLarge => "message larger than the outgoing buffer limit",
            SendError::Full => "outgoing buffer full: the peer is not reading",
            SendError::ControlPayloadTooLong => "control frame payload over 125 bytes",
        })
    }
}

impl std::error::Error for SendError {}

/// Why a local close could not be sent.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// The code may not be sent by a server (use 1000–1003, 1007–1009, 1011–1014 or 3000–4999).
    InvalidCode(u16),
    /// The reason is longer than 123 bytes; shorten it (nothing is truncated silently).
    ReasonTooLong {
        /// The reason's length in bytes.
        len: usize,
    },
    /// A close was already sent.
    AlreadyClosing,
    /// The WebSocket is not open; refuse the upgrade with an HTTP response instead.
    NotOpen,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::InvalidCode(code) => write!(f, "close code {code} may not be sent by a server"),
            CloseError::ReasonTooLong { len } => write!(f, "close reason is {len} bytes; at most 123 fit"),
            CloseError::AlreadyClosing => f.write_str("a close was already sent"),
            CloseError::NotOpen => f.write_str("the WebSocket is not open"),
        }
    }
}

impl std::error::Error for CloseError {}

/// The local application called a handshake command that does not fit the current state
/// or passed a value that cannot go on the wire.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiMisuse {
    /// `accept`/`respond` called while no request is waiting for a decision.
    NoPendingRequest,
    /// `accept` called for a plain HTTP request; use `respond`.
    NotAnUpgrade,
    /// The chosen subprotocol was not offered by the client.
    SubprotocolNotOffered(String),
    /// A header name that is not an HTTP token, or a value with CR, LF or NUL.
    InvalidHeader(String),
    /// A header that the 101 response sets itself (`Upgrade`, `Connection`, `Sec-WebSocket-Accept`,
    /// `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`); choose it through the API instead.
    ReservedHeader(String),
    /// A status code outside 100–999, or 101 given to `respond` (use `accept`).
    InvalidStatus(u16),
    /// A reason phrase with CR, LF or NUL.
    InvalidReason,
}

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiMisuse::NoPendingRequest => f.write_str("no request is waiting for accept or respond"),
            ApiMisuse::NotAnUpgrade => f.write_str("the request is not a WebSocket upgrade; use respond"),
            ApiMisuse::SubprotocolNotOffered(p) => write!(f, "subprotocol {p:?} was not offered by the client"),
            ApiMisuse::InvalidHeader(h) => write!(
                f,
                "invalid header {h:?}: names must be tokens, values free of CR/LF/NUL"
            ),
            ApiMisuse::ReservedHeader(h) => write!(f, "header {h:?} is set by the handshake itself"),
            ApiMisuse::InvalidStatus(s) => write!(f, "invalid status {s} for an HTTP response"),
            ApiMisuse::InvalidReason => f.write_str("reason phrase contains CR, LF or NUL"),
        }
    }
}

impl std::error::Error for ApiMisuse {}

/// An invalid configuration value.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A limit that must be positive was zero.
    Zero(&'static str),
    /// Two settings contradict each other; the text says which.
    Inconsistent(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero(what) => write!(f, "{what} must be greater than zero"),
            ConfigError::Inconsistent(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ConfigError {}
