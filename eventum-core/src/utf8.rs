//! UTF-8 validation of text messages: whole ([`text`]) or as they arrive in pieces
//! ([`Utf8Validator`]).

use crate::error::ProtocolError;

/// Reads a whole message's payload as text, or `None` if it is not UTF-8.
///
/// An all-ASCII payload (JSON, most chat) is checked a word at a time by
/// [`<[u8]>::is_ascii`](slice::is_ascii); anything else goes through
/// [`std::str::from_utf8`]. For the short messages a WebSocket mostly carries, std's
/// check walks byte by byte (its word-at-a-time path needs an aligned run of two words):
/// 13–20 ns for 16 to 28 bytes, against 2–6 ns for the ASCII check here
/// (`benches/README.md`).
pub(crate) fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // One of the crate's two places with `unsafe` (see the note in `lib.rs`).
        // SAFETY: every byte is below 0x80, and any sequence of such bytes is valid UTF-8
        // (each is a one-byte sequence), which is all `from_utf8_unchecked` requires.
        #[allow(unsafe_code)]
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Incremental UTF-8 validator for a text message that arrives in pieces (fragments, or
/// partial reads of one frame).
///
/// Fails at the first byte that makes the sequence invalid, without waiting for the end
/// of the message, including a prefix that can never complete (`F4 90` is already above
/// U+10FFFF, `ED A0` is already a surrogate, `C0`, `C1` and `F5`..=`FF` are invalid at once).
///
/// The bulk of each piece is checked by `<[u8]>::is_ascii` and, if that fails, by
/// [`std::str::from_utf8`]; the validator only carries the (at most 3) bytes of a sequence
/// split between pieces.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    /// The start of an incomplete but so far valid sequence; `partial[..partial_len]`.
    partial: [u8; 4],
    /// 0 to 3.
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the message.
    ///
    /// Returns [`ProtocolError::InvalidUtf8`] as soon as the bytes seen so far cannot be
    /// the start of valid UTF-8. After an error the state is unspecified until
    /// [`reset`](Self::reset).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let mut bytes = bytes;
        if self.partial_len > 0 {
            // Complete the carried sequence from the start of this piece.
            let have = usize::from(self.partial_len);
            let need = sequence_len(self.partial[0]).saturating_sub(have);
            let (head, rest) = bytes.split_at(need.min(bytes.len()));
            for (slot, &byte) in self.partial.iter_mut().skip(have).zip(head) {
                *slot = byte;
            }
            let filled = (have + head.len()).min(self.partial.len());
            let candidate = self.partial.get(..filled).unwrap_or_default();
            match std::str::from_utf8(candidate) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidUtf8),
                Err(_) => {
                    // Still incomplete: this piece was too short to finish it.
                    self.partial_len = filled as u8;
                    return Ok(());
                }
            }
            bytes = rest;
        }

        if bytes.is_ascii() {
            return Ok(()); // the common case, a word at a time (see `text`)
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(ProtocolError::InvalidUtf8),
            Err(e) => {
                // A valid prefix of a sequence cut off by the end of the piece: at most 3 bytes.
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                for (slot, &byte) in self.partial.iter_mut().zip(tail) {
                    *slot = byte;
                }
                self.partial_len = tail.len().min(3) as u8;
                Ok(())
            }
        }
    }

    /// Ends the message: [`ProtocolError::InvalidUtf8`] if it stopped in the middle of a
    /// sequence. Either way the validator is reset for the next message.
    pub(crate) fn finish(&mut self) -> Result<(), ProtocolError> {
        let complete = self.partial_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(ProtocolError::InvalidUtf8)
        }
    }

    /// Forgets any carried bytes, ready for a new message.
    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }
}

/// The length of the sequence that `lead` starts (for a valid lead byte of a multi-byte
/// sequence; the carried bytes always start with one).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `pieces` in order; returns the index of the first piece that failed, or
    /// `pieces.len()` if only `finish` failed, or `None` if all succeeded.
    fn first_failure(pieces: &[&[u8]]) -> Option<usize> {
        let mut v = Utf8Validator::new();
        for (i, piece) in pieces.iter().enumerate() {
            if v.feed(piece).is_err() {
                return Some(i);
            }
        }
        v.finish().err().map(|_| pieces.len())
    }

    /// Splits `bytes` at the given (sorted, in range) points.
    fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut start = 0;
        for &p in points {
            pieces.push(&bytes[start..p]);
            start = p;
        }
        pieces.push(&bytes[start..]);
        pieces
    }

    /// Index of the byte that first makes `bytes` invalid (not merely incomplete).
    fn offending_index(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find(|&i| {
            std::str::from_utf8(&bytes[..=i])
                .err()
                .is_some_and(|e| e.error_len().is_some())
        })
    }

    fn assert_valid_at_every_split(bytes: &[u8]) {
        assert_eq!(first_failure(&[bytes]), None, "{bytes:x?} whole");
        for a in 0..=bytes.len() {
            assert_eq!(first_failure(&split_at_points(bytes, &[a])), None, "split {a}");
            for b in a..=bytes.len() {
                assert_eq!(first_failure(&split_at_points(bytes, &[a, b])), None, "splits {a} {b}");
            }
        }
        // One byte at a time.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(first_failure(&singles), None);
    }

    /// Checks that, split anywhere, the first failing piece is the one holding `bad`.
    fn assert_fails_at(bytes: &[u8], bad: usize) {
        assert_eq!(offending_index(bytes), Some(bad), "test vector {bytes:x?}");
        assert_eq!(first_failure(&[bytes]), Some(0));
        for a in 0..=bytes.len() {
            let expected = usize::from(bad >= a);
            assert_eq!(
                first_failure(&split_at_points(bytes, &[a])),
                Some(expected),
                "{bytes:x?} split at {a}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(first_failure(&singles), Some(bad), "{bytes:x?} bytewise");
    }

    fn concat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn valid_strings_pass_at_every_split() {
        for s in [
            "",
            "Hello-µ@ßöäüàá-UTF-8!!",
            "κόσμε",
            "\u{0080}\u{07FF}\u{0800}\u{FFFF}\u{10000}\u{10FFFF}",
            "\u{D7FF}\u{E000}\u{FFFD}",
            "a\u{1F600}b\u{20AC}c",
            "\u{0}\u{7F}",
        ] {
            assert_valid_at_every_split(s.as_bytes());
        }
    }

    #[test]
    fn surrogate_fails_on_the_piece_holding_its_second_byte() {
        // Autobahn 6.4.x: "κόσμε" + ED A0 80 + "edited".
        let bytes = concat(&["κόσμε".as_bytes(), &[0xED, 0xA0, 0x80], b"edited"]);
        let ed = "κόσμε".len();
        assert_fails_at(&bytes, ed + 1);
    }

    #[test]
    fn above_max_code_point_fails_at_second_byte() {
        // F4 90 80 80 would be U+110000.
        let bytes = concat(&["κόσμε".as_bytes(), &[0xF4, 0x90, 0x80, 0x80], b"edited"]);
        assert_fails_at(&bytes, "κόσμε".len() + 1);
        assert_fails_at(&[0xF4, 0x90, 0x80, 0x80], 1);
    }

    #[test]
    fn overlong_encodings_fail_early() {
        assert_fails_at(&[0xC0, 0xAF], 0);
        assert_fails_at(&[0xC1, 0xBF], 0);
        assert_fails_at(&[0xE0, 0x80, 0xAF], 1);
        assert_fails_at(&[0xE0, 0x9F, 0xBF], 1);
        assert_fails_at(&[0xF0, 0x80, 0x80, 0xAF], 1);
        assert_fails_at(&[0xF0, 0x8F, 0xBF, 0xBF], 1);
        assert_fails_at(&concat(&[b"ab", &[0xC0, 0x80], b"cd"]), 2);
    }

    #[test]
    fn invalid_lead_bytes_fail_at_once() {
        for lead in [0xC0u8, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xFB, 0xFC, 0xFE, 0xFF] {
            assert_fails_at(&[b'x', lead, b'y'], 1);
        }
    }

    #[test]
    fn lone_continuation_bytes_fail() {
        for cont in 0x80u8..=0xBF {
            assert_fails_at(&[cont], 0);
            assert_fails_at(&[b'a', cont, b'b'], 1);
        }
        // One continuation too many.
        assert_fails_at(&concat(&["é".as_bytes(), &[0x80]]), 2);
    }

    #[test]
    fn sequence_interrupted_by_ascii_fails_at_the_ascii_byte() {
        assert_fails_at(&[0xE2, 0x82, b'a'], 2);
        assert_fails_at(&[0xF0, 0x9F, 0x98, b'a'], 3);
        assert_fails_at(&[0xC3, 0xC3, 0xA9], 1);
    }

    #[test]
    fn truncated_at_end_fails_on_finish() {
        for bytes in [
            &[0xC3][..],
            &[0xE2, 0x82],
            &[0xF0, 0x9F, 0x98],
            &[b'a', b'b', 0xE2],
            "κόσμε"
                .as_bytes()
                .split_last()
                .map(|(_, rest)| rest)
                .unwrap_or_default(),
        ] {
            for a in 0..=bytes.len() {
                let pieces = split_at_points(bytes, &[a]);
                assert_eq!(first_failure(&pieces), Some(2), "{bytes:x?} split {a}");
            }
        }
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        // The carried bytes are gone: a continuation byte now is a lone one.
        assert_eq!(v.feed(&[0xAC]), Err(ProtocolError::InvalidUtf8));

        let mut v = Utf8Validator::new();
        v.feed("€".as_bytes()).unwrap();
        assert_eq!(v.finish(), Ok(()));
        v.feed(&[0xE2]).unwrap();
        v.reset();
        v.feed(b"plain").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn empty_pieces_are_harmless() {
        let mut v = Utf8Validator::new();
        v.feed(&[]).unwrap();
        v.feed(&[0xF0]).unwrap();
        v.feed(&[]).unwrap();
        v.feed(&[0x9F]).unwrap();
        v.feed(&[]).unwrap();
        v.feed(&[0x98, 0x80]).unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    /// Mostly valid characters with some interesting raw bytes mixed in.
    fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
        let unit = prop_oneof![
            8 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
            2 => "[a-z]{1,8}".prop_map(String::into_bytes),
            1 => prop::sample::select(vec![
                0x80u8, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
                0x9F, 0xA0, 0x90, 0x8F,
            ])
            .prop_map(|b| vec![b]),
            1 => any::<char>().prop_map(|c| {
                // A truncated character.
                let s = c.to_string().into_bytes();
                s[..s.len().saturating_sub(1).max(1)].to_vec()
            }),
        ];
        prop::collection::vec(unit, 0..24).prop_map(|units| units.concat())
    }

    fn bytes_and_splits() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        prop_oneof![mostly_text(), prop::collection::vec(any::<u8>(), 0..64)].prop_flat_map(|bytes| {
            let len = bytes.len();
            (Just(bytes), prop::collection::vec(0..=len, 0..6)).prop_map(|(bytes, mut points)| {
                points.sort_unstable();
                (bytes, points)
            })
        })
    }

    #[test]
    fn text_reads_ascii_at_every_length_and_start() {
        let ascii: Vec<u8> = (0u8..0x80).cycle().take(200).collect();
        for start in 0..16 {
            for len in 0..=(ascii.len() - start) {
                let bytes = &ascii[start..start + len];
                assert_eq!(text(bytes), std::str::from_utf8(bytes).ok(), "{start}+{len}");
            }
        }
    }

    #[test]
    fn text_refuses_one_bad_byte_anywhere_and_reads_a_good_character_anywhere() {
        for len in 1..80 {
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[at] = 0x80; // a continuation byte alone: never valid
                assert_eq!(text(&bytes), None, "0x80 at {at} of {len}");
                bytes[at] = 0xFF;
                assert_eq!(text(&bytes), None, "0xFF at {at} of {len}");
                let mut good = vec![b'a'; len];
                good.splice(at..at + 1, "é".bytes());
                assert_eq!(text(&good), std::str::from_utf8(&good).ok(), "é at {at} of {len}");
                assert!(text(&good).is_some());
            }
        }
    }

    proptest! {
        #[test]
        fn text_agrees_with_std(bytes in prop_oneof![mostly_text(), prop::collection::vec(any::<u8>(), 0..64)]) {
            prop_assert_eq!(text(&bytes), std::str::from_utf8(&bytes).ok());
        }

        #[test]
        fn agrees_with_std((bytes, points) in bytes_and_splits()) {
            let pieces = split_at_points(&bytes, &points);
            let failure = first_failure(&pieces);
            match std::str::from_utf8(&bytes) {
                Ok(_) => prop_assert_eq!(failure, None),
                Err(e) => match e.error_len() {
                    None => prop_assert_eq!(failure, Some(pieces.len()), "only finish fails"),
                    Some(error_len) => {
                        let failed = failure.expect("must fail");
                        prop_assert!(failed < pieces.len(), "a feed must fail, not finish");
                        // The piece that holds byte `index` (first piece for index 0 when
                        // earlier pieces are empty: a byte is in the piece whose range holds it).
                        let piece_of = |index: usize| {
                            let mut start = 0;
                            for (i, p) in pieces.iter().enumerate() {
                                if index < start + p.len() {
                                    return i;
                                }
                                start += p.len();
                            }
                            pieces.len() - 1
                        };
                        let earliest = piece_of(e.valid_up_to());
                        let latest = piece_of((e.valid_up_to() + error_len).min(bytes.len() - 1));
                        prop_assert!(failed >= earliest, "failed at piece {} before {}", failed, earliest);
                        prop_assert!(failed <= latest, "failed at piece {} after {}", failed, latest);
                        // Exactly at the piece holding the byte that first makes it invalid.
                        let bad = offending_index(&bytes).expect("invalid");
                        prop_assert_eq!(failed, piece_of(bad));
                    }
                },
            }
        }
    }
}
