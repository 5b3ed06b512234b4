//! Frame header encoding.

use super::{apply_mask, OpCode, MAX_HEADER_LEN};

/// Writes an unmasked (server) frame header into a fixed array, for callers that put the
/// header in front of a payload they own without copying the payload.
///
/// Returns the array and the number of bytes used: 2 for a payload of up to 125 bytes, 4 up
/// to 65535 bytes, 10 beyond. The rest of the array is zero. The length is always encoded
/// minimally.
///
/// No frame rules are checked here: the caller keeps control frames final and at most
/// [`MAX_CONTROL_PAYLOAD`](super::MAX_CONTROL_PAYLOAD) bytes, and `payload_len` below
/// 2<sup>63</sup> (any in-memory payload is).
///
/// ```
/// use eventum_core::frame::{header_bytes, OpCode};
///
/// // RFC 6455 §5.7: the header of a 256-byte unmasked binary message.
/// let (bytes, len) = header_bytes(true, false, OpCode::Binary, 256);
/// assert_eq!(&bytes[..len], &[0x82, 0x7E, 0x01, 0x00]);
/// ```
#[must_use]
pub fn header_bytes(fin: bool, rsv1: bool, opcode: OpCode, payload_len: u64) -> ([u8; MAX_HEADER_LEN], usize) {
    let b0 = u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode.as_u8();
    let [l0, l1, l2, l3, l4, l5, l6, l7] = payload_len.to_be_bytes();
    match payload_len {
        0..=125 => ([b0, l7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2),
        126..=0xFFFF => ([b0, 126, l6, l7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4),
        _ => ([b0, 127, l0, l1, l2, l3, l4, l5, l6, l7, 0, 0, 0, 0], 10),
    }
}

/// Appends an unmasked (server) frame header to `out`: 2, 4 or 10 bytes. Returns the number
/// of bytes written.
///
/// The same bytes as [`header_bytes`], with the same caller obligations.
///
/// ```
/// use eventum_core::frame::{encode_header, OpCode};
///
/// // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
/// let mut out = Vec::new();
/// assert_eq!(encode_header(&mut out, true, false, OpCode::Text, 5), 2);
/// out.extend_from_slice(b"Hello");
/// assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// ```
pub fn encode_header(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: OpCode, payload_len: u64) -> usize {
    let (bytes, len) = header_bytes(fin, rsv1, opcode, payload_len);
    out.extend(bytes.into_iter().take(len));
    len
}

/// Appends a complete masked (client-role) frame to `out`: the header with the MASK bit and
/// `key`, then `payload` XORed with `key`. RSV1 is clear.
///
/// For tests, fuzzers and benches that play the client. Nothing is validated, so it also
/// builds frames a server must reject (a fragmented or oversized control frame).
///
/// ```
/// use eventum_core::frame::{encode_client_frame, OpCode};
///
/// // RFC 6455 §5.7: a single-frame masked text message "Hello".
/// let mut out = Vec::new();
/// encode_client_frame(&mut out, true, OpCode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(
///     out,
///     [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
/// );
/// ```
pub fn encode_client_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    let (mut bytes, len) = header_bytes(fin, false, opcode, payload.len() as u64);
    let [_, len_byte, ..] = &mut bytes;
    *len_byte |= 0x80;
    out.reserve(len + key.len() + payload.len());
    out.extend(bytes.into_iter().take(len));
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(body) = out.get_mut(start..) {
        apply_mask(body, key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_boundaries() {
        for (len, expected_len) in [
            (0u64, 2),
            (125, 2),
            (126, 4),
            (0xFFFF, 4),
            (0x1_0000, 10),
            (u64::MAX >> 1, 10),
        ] {
            let mut out = Vec::new();
            assert_eq!(encode_header(&mut out, true, false, OpCode::Binary, len), expected_len);
            assert_eq!(out.len(), expected_len);
            let (bytes, used) = header_bytes(true, false, OpCode::Binary, len);
            assert_eq!(used, expected_len);
            assert_eq!(&bytes[..used], &out[..]);
            assert!(bytes[used..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn first_byte_bits() {
        let (bytes, _) = header_bytes(false, true, OpCode::Continuation, 0);
        assert_eq!(bytes[0], 0x40);
        let (bytes, _) = header_bytes(true, true, OpCode::Text, 0);
        assert_eq!(bytes[0], 0xC1);
        let (bytes, _) = header_bytes(true, false, OpCode::Close, 2);
        assert_eq!(&bytes[..2], &[0x88, 0x02]);
    }

    #[test]
    fn encode_header_appends() {
        let mut out = vec![1, 2, 3];
        assert_eq!(encode_header(&mut out, true, false, OpCode::Pong, 0), 2);
        assert_eq!(out, [1, 2, 3, 0x8A, 0x00]);
    }

    #[test]
    fn client_frame_with_16_bit_length() {
        let payload = vec![0u8; 300];
        let key = [1, 2, 3, 4];
        let mut out = Vec::new();
        encode_client_frame(&mut out, false, OpCode::Binary, &payload, key);
        assert_eq!(&out[..8], &[0x02, 0xFE, 0x01, 0x2C, 1, 2, 3, 4]);
        assert_eq!(out.len(), 8 + 300);
        // Zeros masked are the key repeated.
        assert!(out[8..].chunks(4).all(|c| c == key));
    }
}
