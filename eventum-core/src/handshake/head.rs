//! Incremental detection of the end of the request head (`\r\n\r\n`).

use crate::error::HandshakeError;

const TERMINATOR: &[u8; 4] = b"\r\n\r\n";

/// Finds where the request head ends in a buffer that grows between calls.
///
/// Each call scans only the bytes it has not scanned before (plus 3, for a terminator split
/// across calls), so feeding a head one byte at a time costs O(bytes) in total.
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    /// Bytes of the buffer already scanned without finding a terminator. `u32`, saturating:
    /// the reader lives in every connection, and a count short of the truth only means
    /// scanning again (no head that long fits a sane `max_head_bytes`).
    scanned: u32,
    /// Total bytes examined over all calls (the linear-time guard in the tests).
    #[cfg(test)]
    work: usize,
}

impl HeadReader {
    /// A reader that has seen nothing yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `buf` is all bytes received so far (it only grows between calls, starting at offset 0).
    ///
    /// * `Ok(Some(n))`: the head ends at `n`, the index just past the first `\r\n\r\n`.
    /// * `Ok(None)`: more bytes are needed.
    /// * `Err(HeadTooLarge)`: no terminator within the first `max_head_bytes` bytes. The answer
    ///   depends only on those bytes, never on how they were chunked: a head of exactly
    ///   `max_head_bytes` bytes including its terminator is accepted, one byte more is refused.
    pub(crate) fn poll(&mut self, buf: &[u8], max_head_bytes: usize) -> Result<Option<usize>, HandshakeError> {
        let end = buf.len().min(max_head_bytes);
        let start = (self.scanned as usize).saturating_sub(TERMINATOR.len() - 1).min(end);
        let window = buf.get(start..end).unwrap_or_default();
        #[cfg(test)]
        {
            self.work += window.len();
        }
        if let Some(pos) = window.windows(TERMINATOR.len()).position(|w| w == TERMINATOR) {
            return Ok(Some(start + pos + TERMINATOR.len()));
        }
        self.scanned = u32::try_from(end).unwrap_or(u32::MAX);
        if buf.len() >= max_head_bytes {
            return Err(HandshakeError::HeadTooLarge { limit: max_head_bytes });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    /// Feeds growing prefixes of `input` ending at each cut (then the whole input) and returns
    /// the first decisive answer, or the last `Ok(None)`.
    fn feed(input: &[u8], cuts: &[usize], max: usize) -> Result<Option<usize>, HandshakeError> {
        let mut reader = HeadReader::new();
        let mut last = Ok(None);
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            last = reader.poll(&input[..cut], max);
            if last != Ok(None) {
                break;
            }
        }
        last
    }

    fn whole(input: &[u8], max: usize) -> Result<Option<usize>, HandshakeError> {
        HeadReader::new().poll(input, max)
    }

    #[test]
    fn finds_terminator_and_ignores_trailing_bytes() {
        let mut input = HEAD.to_vec();
        input.extend_from_slice(b"\x81\x80rest\r\n\r\n");
        assert_eq!(whole(&input, 1024), Ok(Some(HEAD.len())));
        assert_eq!(whole(&HEAD[..HEAD.len() - 1], 1024), Ok(None));
        assert_eq!(whole(b"", 1024), Ok(None));
    }

    #[test]
    fn every_split_point_and_byte_at_a_time_agree() {
        for max in [HEAD.len() - 1, HEAD.len(), HEAD.len() + 1, 1024] {
            let expected = whole(HEAD, max);
            for cut in 0..=HEAD.len() {
                assert_eq!(feed(HEAD, &[cut], max), expected, "cut {cut}, max {max}");
            }
            let all: Vec<usize> = (0..=HEAD.len()).collect();
            assert_eq!(feed(HEAD, &all, max), expected, "byte at a time, max {max}");
        }
    }

    #[test]
    fn limit_is_inclusive_of_the_terminator() {
        let all: Vec<usize> = (0..=HEAD.len()).collect();
        assert_eq!(feed(HEAD, &all, HEAD.len()), Ok(Some(HEAD.len())));
        let too_large = Err(HandshakeError::HeadTooLarge { limit: HEAD.len() - 1 });
        assert_eq!(whole(HEAD, HEAD.len() - 1), too_large);
        assert_eq!(feed(HEAD, &all, HEAD.len() - 1), too_large);
        // Refused as soon as the limit is reached, before the rest arrives.
        assert_eq!(whole(&HEAD[..HEAD.len() - 1], HEAD.len() - 1), too_large);
    }

    #[test]
    fn terminator_split_across_calls() {
        let mut reader = HeadReader::new();
        assert_eq!(reader.poll(b"GET / HTTP/1.1\r\nA: b\r", 100), Ok(None));
        assert_eq!(reader.poll(b"GET / HTTP/1.1\r\nA: b\r\n\r", 100), Ok(None));
        assert_eq!(reader.poll(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 100), Ok(Some(24)));
    }

    #[test]
    fn scanning_is_linear_when_fed_byte_by_byte() {
        let input = b"GET / HTTP/1.1\r\nX: ".repeat(500);
        let mut reader = HeadReader::new();
        let mut calls = 0;
        for len in 0..=input.len() {
            calls += 1;
            assert_eq!(reader.poll(&input[..len], usize::MAX), Ok(None));
        }
        assert!(reader.work <= input.len() + 3 * calls, "work {}", reader.work);
    }

    fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()];
        prop::collection::vec(byte, 0..120)
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_answer(
            input in head_bytes(),
            max in 0usize..140,
            cuts in prop::collection::vec(0usize..=120, 0..12),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            prop_assert_eq!(feed(&input, &cuts, max), whole(&input, max));
        }
    }
}
