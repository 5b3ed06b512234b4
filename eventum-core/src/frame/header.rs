//! Incremental frame header decoding.

use super::{DecodeRules, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use crate::error::ProtocolError;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2_RSV3: u8 = 0x30;
const OPCODE: u8 = 0x0F;
const MASK: u8 = 0x80;
const LEN7: u8 = 0x7F;

/// Decodes a frame header from the start of `buf`, incrementally.
///
/// Returns `Ok(None)` while `buf` holds only a prefix of a header (call again with more
/// bytes), and `Ok(Some((header, header_len)))` once the whole header is there; the payload
/// starts at `buf[header_len..]`. Bytes past the header are never read.
///
/// The checks run in wire order, and each error is returned as soon as the bytes that decide
/// it are present (with only the first two bytes available, every error knowable from them
/// is returned, never `Ok(None)`):
///
/// 1. byte 0: RSV2 or RSV3 set, or RSV1 set unless [`DecodeRules::allow_rsv1`]
///    ([`ProtocolError::ReservedBits`]); a reserved opcode
///    ([`ProtocolError::ReservedOpcode`] with the 4 opcode bits); a control frame without
///    FIN ([`ProtocolError::FragmentedControlFrame`]).
/// 2. byte 1: a control frame whose 7-bit length is over 125
///    ([`ProtocolError::ControlFrameTooLong`]); no MASK bit while
///    [`DecodeRules::require_mask`] ([`ProtocolError::UnmaskedFrame`]).
/// 3. byte 2, for a 64-bit length: its most significant bit set
///    ([`ProtocolError::LengthTopBitSet`]).
///
/// Non-minimal length encodings (say, a 16-bit length of 5) are accepted, as RFC 6455 does
/// not require minimal encoding of received frames.
///
/// # Errors
///
/// The [`ProtocolError`] for the first rule above that the header breaks; the connection
/// must then be failed with [`ProtocolError::close_code`] (1002 for all of these).
///
/// The decoder checks a single header; sequencing rules across frames (continuations,
/// RSV1 only on the first frame of a compressed message, size limits) belong to the caller.
///
/// ```
/// use eventum_core::frame::{decode_header, DecodeRules, FrameHeader, OpCode};
/// use eventum_core::ProtocolError;
///
/// let rules = DecodeRules { require_mask: true, allow_rsv1: false };
///
/// // RFC 6455 §5.7: a single-frame masked text message "Hello".
/// let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// assert_eq!(decode_header(&frame[..3], rules), Ok(None)); // need more bytes
/// let (header, header_len) = decode_header(&frame, rules)?.expect("complete header");
/// assert_eq!(
///     header,
///     FrameHeader {
///         fin: true,
///         rsv1: false,
///         opcode: OpCode::Text,
///         mask: Some([0x37, 0xfa, 0x21, 0x3d]),
///         payload_len: 5,
///     }
/// );
/// assert_eq!(header_len, 6);
///
/// // A server rejects unmasked client frames as soon as it sees byte 1.
/// assert_eq!(decode_header(&[0x81, 0x05], rules), Err(ProtocolError::UnmaskedFrame));
/// # Ok::<(), ProtocolError>(())
/// ```
pub fn decode_header(buf: &[u8], rules: DecodeRules) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    // Byte 0: FIN, RSV1-3, opcode.
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let fin = b0 & FIN != 0;
    let rsv1 = b0 & RSV1 != 0;
    if b0 & RSV2_RSV3 != 0 || (rsv1 && !rules.allow_rsv1) {
        return Err(ProtocolError::ReservedBits);
    }
    let bits = b0 & OPCODE;
    let opcode = OpCode::from_u8(bits).ok_or(ProtocolError::ReservedOpcode(bits))?;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }

    // Byte 1: MASK, 7-bit length.
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & MASK != 0;
    let len7 = b1 & LEN7;
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    if rules.require_mask && !masked {
        return Err(ProtocolError::UnmaskedFrame);
    }

    // Extended length.
    let rest = buf.get(2..).unwrap_or_default();
    let (payload_len, ext_len) = match len7 {
        126 => match rest.first_chunk::<2>() {
            Some(&ext) => (u64::from(u16::from_be_bytes(ext)), 2),
            None => return Ok(None),
        },
        127 => {
            if rest.first().is_some_and(|&b| b & 0x80 != 0) {
                return Err(ProtocolError::LengthTopBitSet);
            }
            match rest.first_chunk::<8>() {
                Some(&ext) => (u64::from_be_bytes(ext), 8),
                None => return Ok(None),
            }
        }
        short => (u64::from(short), 0),
    };

    // Masking key.
    let rest = rest.get(ext_len..).unwrap_or_default();
    let (mask, mask_len) = if masked {
        match rest.first_chunk::<4>() {
            Some(&key) => (Some(key), 4),
            None => return Ok(None),
        }
    } else {
        (None, 0)
    };

    let header = FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, 2 + ext_len + mask_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_client_frame, encode_header, header_bytes, MAX_HEADER_LEN};
    use proptest::prelude::*;

    type Decoded = Result<Option<(FrameHeader, usize)>, ProtocolError>;

    const SERVER: DecodeRules = DecodeRules {
        require_mask: true,
        allow_rsv1: false,
    };
    const LAX: DecodeRules = DecodeRules {
        require_mask: false,
        allow_rsv1: false,
    };
    const DEFLATE: DecodeRules = DecodeRules {
        require_mask: true,
        allow_rsv1: true,
    };

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Decodes `bytes` whole and at every prefix length, and checks the prefixes agree:
    /// before the header is complete they give `Ok(None)` until an error is decidable,
    /// and from then on that same error; once complete, the same header and length.
    /// Returns the result for the whole buffer.
    fn decode_all_prefixes(bytes: &[u8], rules: DecodeRules) -> Decoded {
        let full = decode_header(bytes, rules);
        let mut seen_error = None;
        for end in 0..=bytes.len() {
            let got = decode_header(&bytes[..end], rules);
            match (&got, &full) {
                (Ok(None), _) => {
                    assert_eq!(seen_error, None, "prefix {end}: Ok(None) after an error");
                }
                (Err(e), Err(f)) => {
                    assert_eq!(e, f, "prefix {end}: different error than the whole buffer");
                    seen_error = Some(e.clone());
                }
                (Ok(Some((_, len))), Ok(Some(_))) => {
                    assert_eq!(got, full, "prefix {end}");
                    assert!(*len <= end);
                }
                _ => panic!("prefix {end} gave {got:?} but the whole buffer {full:?}"),
            }
            if let Ok(Some((_, len))) = full {
                assert_eq!(got.is_ok_and(|d| d.is_some()), end >= len, "prefix {end}");
            }
        }
        full
    }

    fn header(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1: false,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Writes any header, including non-minimal lengths, reserved bits and opcodes.
    /// `form` is 0 (7-bit), 2 (16-bit) or 8 (64-bit) extended length.
    fn raw_header(b0: u8, mask: Option<[u8; 4]>, payload_len: u64, form: usize) -> Vec<u8> {
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut out = vec![b0];
        match form {
            0 => out.push(mask_bit | payload_len as u8),
            2 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&payload_len.to_be_bytes());
            }
        }
        out.extend(mask.into_iter().flatten());
        out
    }

    fn minimal_form(payload_len: u64) -> usize {
        match payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        }
    }

    // RFC 6455 §5.7 examples.

    #[test]
    fn rfc_single_frame_unmasked_text() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all_prefixes(&frame, LAX),
            Ok(Some((header(true, OpCode::Text, None, 5), 2)))
        );
        assert_eq!(&frame[2..], b"Hello");

        let mut out = Vec::new();
        assert_eq!(encode_header(&mut out, true, false, OpCode::Text, 5), 2);
        out.extend_from_slice(b"Hello");
        assert_eq!(out, frame);
    }

    #[test]
    fn rfc_single_frame_masked_text() {
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let expected = Ok(Some((header(true, OpCode::Text, Some(KEY), 5), 6)));
        assert_eq!(decode_all_prefixes(&frame, SERVER), expected);
        assert_eq!(decode_all_prefixes(&frame, LAX), expected);

        let mut payload = frame[6..].to_vec();
        crate::frame::apply_mask(&mut payload, KEY, 0);
        assert_eq!(payload, b"Hello");

        let mut out = Vec::new();
        encode_client_frame(&mut out, true, OpCode::Text, b"Hello", KEY);
        assert_eq!(out, frame);
    }

    #[test]
    fn rfc_fragmented_unmasked_text() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_all_prefixes(&first, LAX),
            Ok(Some((header(false, OpCode::Text, None, 3), 2)))
        );
        assert_eq!(
            decode_all_prefixes(&second, LAX),
            Ok(Some((header(true, OpCode::Continuation, None, 2), 2)))
        );

        let mut out = Vec::new();
        encode_header(&mut out, false, false, OpCode::Text, 3);
        out.extend_from_slice(b"Hel");
        assert_eq!(out, first);
        out.clear();
        encode_header(&mut out, true, false, OpCode::Continuation, 2);
        out.extend_from_slice(b"lo");
        assert_eq!(out, second);
    }

    #[test]
    fn rfc_unmasked_ping() {
        let frame = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all_prefixes(&frame, LAX),
            Ok(Some((header(true, OpCode::Ping, None, 5), 2)))
        );
        let mut out = Vec::new();
        encode_header(&mut out, true, false, OpCode::Ping, 5);
        out.extend_from_slice(b"Hello");
        assert_eq!(out, frame);
    }

    #[test]
    fn rfc_masked_pong() {
        let frame = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(
            decode_all_prefixes(&frame, SERVER),
            Ok(Some((header(true, OpCode::Pong, Some(KEY), 5), 6)))
        );
        let mut out = Vec::new();
        encode_client_frame(&mut out, true, OpCode::Pong, b"Hello", KEY);
        assert_eq!(out, frame);
    }

    #[test]
    fn rfc_256_byte_binary() {
        let head = [0x82, 0x7E, 0x01, 0x00];
        let mut frame = head.to_vec();
        frame.extend(std::iter::repeat_n(0xAB, 256));
        assert_eq!(
            decode_all_prefixes(&frame, LAX),
            Ok(Some((header(true, OpCode::Binary, None, 256), 4)))
        );
        let mut out = Vec::new();
        assert_eq!(encode_header(&mut out, true, false, OpCode::Binary, 256), 4);
        assert_eq!(out, head);
        let (bytes, len) = header_bytes(true, false, OpCode::Binary, 256);
        assert_eq!(&bytes[..len], head);
    }

    #[test]
    fn rfc_64kib_binary() {
        let head = [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(
            decode_all_prefixes(&head, LAX),
            Ok(Some((header(true, OpCode::Binary, None, 65536), 10)))
        );
        let mut out = Vec::new();
        assert_eq!(encode_header(&mut out, true, false, OpCode::Binary, 65536), 10);
        assert_eq!(out, head);
        let (bytes, len) = header_bytes(true, false, OpCode::Binary, 65536);
        assert_eq!(&bytes[..len], head);
    }

    #[test]
    fn masked_64bit_length_header_is_14_bytes() {
        let bytes = raw_header(0x82, Some(KEY), 1 << 40, 8);
        assert_eq!(bytes.len(), MAX_HEADER_LEN);
        assert_eq!(
            decode_all_prefixes(&bytes, SERVER),
            Ok(Some((header(true, OpCode::Binary, Some(KEY), 1 << 40), 14)))
        );
    }

    #[test]
    fn largest_legal_length() {
        let max = u64::MAX >> 1;
        let bytes = raw_header(0x82, Some(KEY), max, 8);
        assert_eq!(
            decode_all_prefixes(&bytes, SERVER),
            Ok(Some((header(true, OpCode::Binary, Some(KEY), max), 14)))
        );
    }

    #[test]
    fn does_not_read_past_the_header() {
        let mut frame = raw_header(0x81, Some(KEY), 3, 0);
        frame.extend_from_slice(&[0xFF; 20]);
        assert_eq!(
            decode_header(&frame, SERVER),
            Ok(Some((header(true, OpCode::Text, Some(KEY), 3), 6)))
        );
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        for (form, header_len) in [(2, 8), (8, 14)] {
            let bytes = raw_header(0x82, Some(KEY), 5, form);
            assert_eq!(
                decode_all_prefixes(&bytes, SERVER),
                Ok(Some((header(true, OpCode::Binary, Some(KEY), 5), header_len)))
            );
        }
        // Even for control frames, a 7-bit length of at most 125 is what counts.
        let bytes = raw_header(0x89, Some(KEY), 0, 0);
        assert_eq!(
            decode_all_prefixes(&bytes, SERVER),
            Ok(Some((header(true, OpCode::Ping, Some(KEY), 0), 6)))
        );
    }

    #[test]
    fn empty_buffer_needs_more() {
        assert_eq!(decode_header(&[], SERVER), Ok(None));
        assert_eq!(decode_header(&[], LAX), Ok(None));
    }

    // One test per error rule, each checking the error appears as soon as decidable.

    #[test]
    fn rsv2_and_rsv3_are_always_reserved() {
        for b0 in [0xA1, 0x91, 0xB1, 0xF1, 0xE2] {
            for rules in [SERVER, LAX, DEFLATE] {
                let bytes = raw_header(b0, Some(KEY), 5, 0);
                assert_eq!(decode_all_prefixes(&bytes, rules), Err(ProtocolError::ReservedBits));
                assert_eq!(decode_header(&[b0], rules), Err(ProtocolError::ReservedBits));
            }
        }
    }

    #[test]
    fn rsv1_only_when_allowed() {
        let bytes = raw_header(0xC1, Some(KEY), 5, 0);
        assert_eq!(decode_header(&[0xC1], SERVER), Err(ProtocolError::ReservedBits));
        assert_eq!(decode_all_prefixes(&bytes, SERVER), Err(ProtocolError::ReservedBits));
        assert_eq!(
            decode_all_prefixes(&bytes, DEFLATE),
            Ok(Some((
                FrameHeader {
                    rsv1: true,
                    ..header(true, OpCode::Text, Some(KEY), 5)
                },
                6
            )))
        );
    }

    #[test]
    fn reserved_opcodes() {
        for bits in (0x3..=0x7).chain(0xB..=0xF) {
            for fin in [0x80, 0x00] {
                let b0 = fin | bits;
                let bytes = raw_header(b0, Some(KEY), 5, 0);
                assert_eq!(decode_header(&[b0], SERVER), Err(ProtocolError::ReservedOpcode(bits)));
                assert_eq!(
                    decode_all_prefixes(&bytes, SERVER),
                    Err(ProtocolError::ReservedOpcode(bits))
                );
            }
        }
    }

    #[test]
    fn reserved_bits_are_reported_before_reserved_opcode() {
        assert_eq!(decode_header(&[0xB3], DEFLATE), Err(ProtocolError::ReservedBits));
    }

    #[test]
    fn fragmented_control_frames() {
        for b0 in [0x08, 0x09, 0x0A] {
            let bytes = raw_header(b0, Some(KEY), 0, 0);
            assert_eq!(decode_header(&[b0], SERVER), Err(ProtocolError::FragmentedControlFrame));
            assert_eq!(
                decode_all_prefixes(&bytes, SERVER),
                Err(ProtocolError::FragmentedControlFrame)
            );
        }
    }

    #[test]
    fn control_frame_too_long_is_decided_from_two_bytes() {
        for b0 in [0x88, 0x89, 0x8A] {
            // 125 is fine.
            let ok = raw_header(b0, Some(KEY), 125, 0);
            assert!(matches!(decode_all_prefixes(&ok, SERVER), Ok(Some(_))));
            // 126 and 127 in the 7-bit field are too long, whatever follows.
            for (len, form) in [(126, 2), (125, 2), (0, 2), (127, 8), (5, 8)] {
                let bytes = raw_header(b0, Some(KEY), len, form);
                assert_eq!(
                    decode_header(&bytes[..2], SERVER),
                    Err(ProtocolError::ControlFrameTooLong)
                );
                assert_eq!(
                    decode_all_prefixes(&bytes, SERVER),
                    Err(ProtocolError::ControlFrameTooLong)
                );
            }
        }
    }

    #[test]
    fn unmasked_frames_are_decided_from_two_bytes() {
        for (len, form) in [(5, 0), (300, 2), (1 << 20, 8)] {
            let bytes = raw_header(0x82, None, len, form);
            assert_eq!(decode_header(&bytes[..2], SERVER), Err(ProtocolError::UnmaskedFrame));
            assert_eq!(decode_all_prefixes(&bytes, SERVER), Err(ProtocolError::UnmaskedFrame));
            assert_eq!(
                decode_all_prefixes(&bytes, LAX),
                Ok(Some((header(true, OpCode::Binary, None, len), 2 + form)))
            );
        }
        // Even when the 64-bit length is also bad: the mask bit comes first on the wire.
        let bytes = raw_header(0x82, None, u64::MAX, 8);
        assert_eq!(decode_all_prefixes(&bytes, SERVER), Err(ProtocolError::UnmaskedFrame));
    }

    #[test]
    fn length_top_bit_is_decided_from_three_bytes() {
        for len in [1 << 63, u64::MAX] {
            for mask in [Some(KEY), None] {
                let bytes = raw_header(0x82, mask, len, 8);
                assert_eq!(decode_header(&bytes[..3], LAX), Err(ProtocolError::LengthTopBitSet));
                assert_eq!(decode_all_prefixes(&bytes, LAX), Err(ProtocolError::LengthTopBitSet));
            }
        }
    }

    #[test]
    fn control_length_is_reported_before_missing_mask() {
        assert_eq!(
            decode_header(&[0x89, 0x7E], SERVER),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }

    fn any_opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    fn any_len() -> impl Strategy<Value = u64> {
        prop_oneof![0..=125u64, 126..=0xFFFFu64, 0x1_0000..=(u64::MAX >> 1)]
    }

    fn any_header() -> impl Strategy<Value = FrameHeader> {
        (
            any::<bool>(),
            any::<bool>(),
            any_opcode(),
            any::<Option<[u8; 4]>>(),
            any_len(),
        )
            .prop_map(|(fin, rsv1, opcode, mask, len)| FrameHeader {
                // Control frames must be final and short.
                fin: fin || opcode.is_control(),
                rsv1,
                opcode,
                mask,
                payload_len: if opcode.is_control() { len % 126 } else { len },
            })
    }

    fn encode_test_header(h: &FrameHeader, form: usize) -> Vec<u8> {
        let b0 = u8::from(h.fin) << 7 | u8::from(h.rsv1) << 6 | h.opcode.as_u8();
        raw_header(b0, h.mask, h.payload_len, form)
    }

    proptest! {
        #[test]
        fn round_trip(h in any_header(), widen in 0..3usize, trailing in proptest::collection::vec(any::<u8>(), 0..4)) {
            let rules = DecodeRules { require_mask: h.mask.is_some(), allow_rsv1: true };
            // The minimal length form, or a wider, non-minimal one.
            let min = minimal_form(h.payload_len);
            let form = [0, 2, 8].into_iter().filter(|&f| f >= min).nth(widen).unwrap_or(8);
            let form = if h.opcode.is_control() { 0 } else { form };
            let mut bytes = encode_test_header(&h, form);
            let header_len = bytes.len();
            for end in 0..header_len {
                prop_assert_eq!(decode_header(&bytes[..end], rules), Ok(None));
            }
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(decode_header(&bytes, rules), Ok(Some((h, header_len))));
        }

        #[test]
        fn round_trip_server_encoder(h in any_header()) {
            let h = FrameHeader { mask: None, ..h };
            let rules = DecodeRules { require_mask: false, allow_rsv1: true };
            let mut out = vec![0xEE]; // appends, leaving what is there
            let written = encode_header(&mut out, h.fin, h.rsv1, h.opcode, h.payload_len);
            prop_assert_eq!(out.len(), written + 1);
            prop_assert_eq!(&out[1..], &encode_test_header(&h, minimal_form(h.payload_len))[..]);
            let (array, len) = header_bytes(h.fin, h.rsv1, h.opcode, h.payload_len);
            prop_assert_eq!(&array[..len], &out[1..]);
            for end in 0..written {
                prop_assert_eq!(decode_header(&out[1..1 + end], rules), Ok(None));
            }
            prop_assert_eq!(decode_header(&out[1..], rules), Ok(Some((h, written))));
        }

        #[test]
        fn round_trip_client_encoder(
            fin in any::<bool>(),
            opcode in any_opcode(),
            payload in proptest::collection::vec(any::<u8>(), 0..400),
            key in any::<[u8; 4]>(),
        ) {
            let fin = fin || opcode.is_control();
            let payload = if opcode.is_control() { &payload[..payload.len().min(125)] } else { &payload[..] };
            let mut out = Vec::new();
            encode_client_frame(&mut out, fin, opcode, payload, key);
            let decoded = decode_all_prefixes(&out, SERVER);
            let (h, header_len) = decoded.expect("valid").expect("complete");
            prop_assert_eq!(h, FrameHeader { fin, rsv1: false, opcode, mask: Some(key), payload_len: payload.len() as u64 });
            prop_assert_eq!(out.len(), header_len + payload.len());
            let mut body = out[header_len..].to_vec();
            crate::frame::apply_mask(&mut body, key, 0);
            prop_assert_eq!(&body[..], payload);
        }

        #[test]
        fn never_panics_and_prefixes_agree(
            bytes in proptest::collection::vec(any::<u8>(), 0..24),
            require_mask in any::<bool>(),
            allow_rsv1 in any::<bool>(),
        ) {
            let rules = DecodeRules { require_mask, allow_rsv1 };
            let result = decode_all_prefixes(&bytes, rules);
            if let Ok(Some((h, len))) = result {
                prop_assert!(len <= bytes.len() && len <= MAX_HEADER_LEN);
                prop_assert!(h.payload_len <= u64::MAX >> 1);
                prop_assert_eq!(decode_header(&bytes[..len], rules), result);
            }
        }

        #[test]
        fn never_panics_on_header_like_bytes(
            b0 in any::<u8>(),
            b1 in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..14),
            require_mask in any::<bool>(),
            allow_rsv1 in any::<bool>(),
        ) {
            // Biased towards valid first bytes so the later checks get exercised.
            let b0 = b0 & 0x8F;
            let mut bytes = vec![b0, b1];
            bytes.extend(rest);
            let _ = decode_all_prefixes(&bytes, DecodeRules { require_mask, allow_rsv1 });
        }
    }
}
