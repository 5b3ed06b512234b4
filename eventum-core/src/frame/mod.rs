//! WebSocket frame headers (RFC 6455 §5.2) and payload masking (§5.3).
//!
//! This module works on bytes only: [`decode_header`] parses (and validates) the header of
//! a frame received from a client, [`encode_header`] and [`header_bytes`] write the header
//! of a frame the server sends, and [`apply_mask`] unmasks a client payload in place.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

mod encode;
mod header;
mod mask;

pub use encode::{encode_client_frame, encode_header, header_bytes};
pub use header::decode_header;
pub use mask::apply_mask;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use mask::apply_mask_bytewise;

/// The longest possible frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2).
///
/// Exhaustive on purpose: RFC 6455 defines exactly these six; the other ten values are
/// reserved and rejected by [`decode_header`] with
/// [`ProtocolError::ReservedOpcode`](crate::ProtocolError::ReservedOpcode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: the first frame of a text (UTF-8) message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: a close frame (control).
    Close,
    /// `0x9`: a ping (control).
    Ping,
    /// `0xA`: a pong (control).
    Pong,
}

impl OpCode {
    /// The opcode whose 4-bit wire value is `bits`, or `None` for the reserved values
    /// (`0x3`–`0x7`, `0xB`–`0xF`) and anything above `0xF`.
    ///
    /// ```
    /// use eventum_core::frame::OpCode;
    /// assert_eq!(OpCode::from_u8(0x1), Some(OpCode::Text));
    /// assert_eq!(OpCode::from_u8(0xA), Some(OpCode::Pong));
    /// assert_eq!(OpCode::from_u8(0x3), None); // reserved non-control
    /// assert_eq!(OpCode::from_u8(0xB), None); // reserved control
    /// ```
    #[must_use]
    pub fn from_u8(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value of this opcode.
    ///
    /// ```
    /// use eventum_core::frame::OpCode;
    /// assert_eq!(OpCode::Close.as_u8(), 0x8);
    /// ```
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong): such frames may not be
    /// fragmented and carry at most [`MAX_CONTROL_PAYLOAD`] bytes.
    ///
    /// ```
    /// use eventum_core::frame::OpCode;
    /// assert!(OpCode::Ping.is_control());
    /// assert!(!OpCode::Binary.is_control());
    /// ```
    #[must_use]
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final frame of its message.
    pub fin: bool,
    /// RSV1, owned by an extension such as permessage-deflate (RFC 7692).
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes (less than 2<sup>63</sup>).
    pub payload_len: u64,
}

/// Rules applied while decoding a header.
#[derive(Debug, Clone, Copy)]
pub struct DecodeRules {
    /// Reject frames without the MASK bit with
    /// [`ProtocolError::UnmaskedFrame`](crate::ProtocolError::UnmaskedFrame)
    /// (a server must: every client frame is masked).
    pub require_mask: bool,
    /// Accept RSV1 (an extension that owns it was negotiated); otherwise a set RSV1 is
    /// [`ProtocolError::ReservedBits`](crate::ProtocolError::ReservedBits).
    /// RSV2 and RSV3 are always rejected.
    pub allow_rsv1: bool,
}
