//! Close codes (RFC 6455 §7.4) and the close frame payload (§5.5.1).

use std::fmt;

use crate::error::{CloseError, ProtocolError};

/// Longest close reason that fits a control frame: 125 bytes minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// A WebSocket close status code.
///
/// The constants name the codes registered by RFC 6455 §7.4.1; any other `u16` can be
/// wrapped too, and [`CloseCode::is_valid_on_wire`] says whether a peer may send it.
///
/// ```
/// use eventum_core::CloseCode;
/// assert!(CloseCode::NORMAL.is_valid_on_wire());
/// assert!(CloseCode(3000).is_valid_on_wire()); // application codes
/// assert!(!CloseCode::NO_STATUS.is_valid_on_wire()); // 1005 is never sent
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported locally when a close frame carried no code; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported locally when the transport ended without a close frame; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate (client only).
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether a peer may put this code in a close frame: 1000–1003, 1007–1014 and
    /// the registered/private ranges 3000–4999.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether the server may send this code: every code valid on the wire except
    /// 1010, which only a client sends.
    pub fn is_sendable_by_server(self) -> bool {
        self.is_valid_on_wire() && self != CloseCode::MANDATORY_EXTENSION
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

/// Parses a received close payload: empty, or a valid code followed by a UTF-8 reason.
///
/// Returns `Ok(None)` for an empty payload.
pub(crate) fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::ClosePayloadTooShort),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Checks a close the local application wants to send.
pub(crate) fn check_local_close(code: CloseCode, reason: &str) -> Result<(), CloseError> {
    if !code.is_sendable_by_server() {
        return Err(CloseError::InvalidCode(code.0));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(CloseError::ReasonTooLong { len: reason.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_rfc_ranges() {
        let valid: Vec<u16> = (0..=5000).filter(|&c| CloseCode(c).is_valid_on_wire()).collect();
        let expected: Vec<u16> = (1000..=1003).chain(1007..=1014).chain(3000..=4999).collect();
        assert_eq!(valid, expected);
        assert!(!CloseCode(5000).is_valid_on_wire());
        assert!(!CloseCode(u16::MAX).is_valid_on_wire());
    }

    #[test]
    fn server_may_not_send_1010() {
        assert!(!CloseCode::MANDATORY_EXTENSION.is_sendable_by_server());
        assert!(CloseCode::INTERNAL_ERROR.is_sendable_by_server());
        assert!(CloseCode(4999).is_sendable_by_server());
    }

    #[test]
    fn parses_close_payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(parse_close_payload(&[0x03]), Err(ProtocolError::ClosePayloadTooShort));
        assert_eq!(parse_close_payload(&[0x03, 0xe8]), Ok(Some((CloseCode::NORMAL, ""))));
        assert_eq!(parse_close_payload(b"\x0b\xb8bye"), Ok(Some((CloseCode(3000), "bye"))));
        assert_eq!(
            parse_close_payload(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn local_close_is_checked_not_truncated() {
        assert_eq!(check_local_close(CloseCode::NORMAL, ""), Ok(()));
        assert_eq!(
            check_local_close(CloseCode(1005), ""),
            Err(CloseError::InvalidCode(1005))
        );
        let long = "x".repeat(124);
        assert_eq!(
            check_local_close(CloseCode::NORMAL, &long),
            Err(CloseError::ReasonTooLong { len: 124 })
        );
        assert_eq!(check_local_close(CloseCode::NORMAL, &long[..123]), Ok(()));
    }
}
