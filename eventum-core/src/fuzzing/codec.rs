//! The `frame_header` and `unmask` targets: the pure codec functions.

use crate::frame::{self, DecodeRules, MAX_HEADER_LEN};

/// `decode_header` under all four rule sets: prefixes agree with the whole, a decoded header
/// is at most 14 bytes, obeys its rules and survives re-encoding.
///
/// Input: the bytes of a frame (header and any payload).
pub fn frame_header(data: &[u8]) {
    let mut results = [[Ok(None), Ok(None)], [Ok(None), Ok(None)]];
    for (require_mask, allow_rsv1) in [(false, false), (false, true), (true, false), (true, true)] {
        let rules = DecodeRules {
            require_mask,
            allow_rsv1,
        };
        let full = frame::decode_header(data, rules);
        assert!(
            data.len() < MAX_HEADER_LEN || full != Ok(None),
            "14 bytes always decide"
        );
        // Prefixes: Ok(None) until an error is decidable, then that error; a complete header
        // decodes the same whatever follows it.
        let mut failed = false;
        for end in 0..=data.len().min(MAX_HEADER_LEN + 1) {
            match (frame::decode_header(&data[..end], rules), &full) {
                (Ok(None), _) => assert!(!failed, "prefix {end}: Ok(None) after an error"),
                (Err(e), Err(f)) if e == *f => failed = true,
                (Ok(Some(got)), Ok(Some(whole))) if got == *whole => assert!(got.1 <= end),
                (got, _) => panic!("prefix {end} gave {got:?}, the whole input {full:?}"),
            }
        }
        if let Ok(Some((h, n))) = full {
            let ext = match data[1] & 0x7F {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            assert_eq!(n, 2 + ext + if h.mask.is_some() { 4 } else { 0 }, "header length");
            assert!(n <= MAX_HEADER_LEN && n <= data.len() && h.payload_len < 1 << 63);
            assert!(h.mask.is_some() || !require_mask, "unmasked frame accepted");
            assert!(!h.rsv1 || allow_rsv1, "RSV1 accepted");
            assert!(
                !h.opcode.is_control() || (h.fin && h.payload_len <= 125),
                "control frame rules"
            );
            // Re-encode minimally: decodes to the same header, byte-exact if the input was minimal.
            let (bytes, len) = frame::header_bytes(h.fin, h.rsv1, h.opcode, h.payload_len);
            let mut encoded = bytes[..len].to_vec();
            if let Some(key) = h.mask {
                encoded[1] |= 0x80;
                encoded.extend_from_slice(&key);
            }
            assert_eq!(frame::decode_header(&encoded, rules), Ok(Some((h, encoded.len()))));
            let minimal = match ext {
                2 => h.payload_len >= 126,
                8 => h.payload_len > 0xFFFF,
                _ => true,
            };
            assert!(
                encoded.len() <= n && (!minimal || encoded == data[..n]),
                "re-encoded {encoded:?}"
            );
            // A whole masked frame re-encodes byte-exact through encode_client_frame.
            let end = n as u64 + h.payload_len;
            if let (Some(key), true, true) = (h.mask, minimal && !h.rsv1, end <= data.len() as u64) {
                let mut payload = data[n..end as usize].to_vec();
                frame::apply_mask(&mut payload, key, 0);
                let mut frame = Vec::new();
                frame::encode_client_frame(&mut frame, h.fin, h.opcode, &payload, key);
                assert_eq!(frame, data[..end as usize], "encode_client_frame");
            }
        }
        results[usize::from(require_mask)][usize::from(allow_rsv1)] = full;
    }
    // Relaxing a rule changes nothing for a header that does not need it.
    for (lax, strict) in results[0].iter().zip(&results[1]) {
        if let Ok(Some((h, _))) = lax {
            assert!(h.mask.is_none() || strict == lax, "mask rule");
        }
    }
    for [strict, lax] in &results {
        if let Ok(Some((h, _))) = lax {
            assert!(h.rsv1 || strict == lax, "RSV1 rule");
        }
    }
}

/// `apply_mask` against the bytewise reference, whole, in two pieces, and twice.
///
/// Input: a 4-byte key, an 8-byte little-endian offset, a split byte, then the payload
/// (missing header bytes are zero).
pub fn unmask(data: &[u8]) {
    let mut head = [0u8; 13];
    let (fixed, payload) = data.split_at(data.len().min(head.len()));
    head[..fixed.len()].copy_from_slice(fixed);
    let key = [head[0], head[1], head[2], head[3]];
    let offset = u64::from_le_bytes([head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11]]);
    let split = payload.len() * usize::from(head[12]) / 255;

    let mut fast = payload.to_vec();
    frame::apply_mask(&mut fast, key, offset);
    let mut slow = payload.to_vec();
    frame::apply_mask_bytewise(&mut slow, key, offset);
    assert_eq!(fast, slow, "apply_mask vs apply_mask_bytewise");
    let phase = (offset % 4) as usize;
    for (i, (&masked, &plain)) in slow.iter().zip(payload).enumerate() {
        assert_eq!(masked, plain ^ key[(phase + i) % 4], "byte {i} against RFC 6455 §5.3");
    }
    let mut pieces = payload.to_vec();
    let (first, second) = pieces.split_at_mut(split);
    frame::apply_mask(first, key, offset);
    frame::apply_mask(second, key, offset.wrapping_add(split as u64));
    assert_eq!(pieces, fast, "masked in two pieces split at {split}");
    frame::apply_mask(&mut fast, key, offset);
    assert_eq!(fast, payload, "masking twice is the identity");
}
