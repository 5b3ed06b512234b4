//! The hash of the event table, which every message looks its name up in.
//!
//! The table's names are fixed when the app is built; a message only looks a name up. A peer
//! choosing names cannot add to the table, so it cannot build the long collision chains that
//! SipHash (std's default hasher) defends against. A multiply-add hash of eight bytes a step
//! (rustc-hash's) serves, and costs a fraction of SipHash on names this short.

use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for the event table's names.
pub(crate) type BuildNameHasher = BuildHasherDefault<NameHasher>;

#[derive(Default)]
pub(crate) struct NameHasher(u64);

/// rustc-hash's multiplier: odd, with its bits spread.
const MULTIPLIER: u64 = 0xf135_7aea_2e62_a9c5;

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(MULTIPLIER);
    }
}

/// The last 1 to 7 bytes of a name as the little-endian word they make padded with zeros,
/// read without a copy: 4 to 7 bytes are the first four and the last four (which overlap on
/// equal bytes), 1 to 3 the first, middle and last byte, each shifted to its place. The
/// length goes in the top byte, which a name this short leaves free, so `"a"` and `"a\0"`
/// hash apart. Copying the bytes into a zeroed `[u8; 8]` instead was a `memcpy` call and a
/// store-to-load stall on every lookup, 4× the whole lookup's time (`benches/README.md`).
fn tail_word(rest: &[u8]) -> u64 {
    let len = rest.len();
    let word = match (rest.first_chunk::<4>(), rest.last_chunk::<4>()) {
        (Some(first), Some(last)) => {
            u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << (8 * (len - 4))
        }
        _ => {
            let byte = |i: usize| u64::from(rest.get(i).copied().unwrap_or_default()) << (8 * i);
            byte(0) | byte(len / 2) | byte(len.saturating_sub(1))
        }
    };
    word | (len as u64) << 56
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            // Always Ok: `chunks_exact(8)` yields 8-byte slices.
            self.add(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            self.add(tail_word(rest));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the best-mixed bits at the top; the table indexes with the low.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn names_that_differ_anywhere_hash_apart() {
        let hash = |name: &str| BuildNameHasher::default().hash_one(name);
        let names = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "move",
            "moves",
            "join_room_now",
            "join_room_nox",
            "12345678",
            "123456789",
            "aaaa",
            "aaaaa",
            "abb",
            "abbb",
            "11",
            "bbbb",
            "11111",
            "a\0",
            "move\0",
            "12345678b",
            "1234567811",
        ];
        let hashes: HashSet<u64> = names.iter().map(|name| hash(name)).collect();
        assert_eq!(hashes.len(), names.len());
        assert_eq!(hash("move"), hash("move"));
    }

    #[test]
    fn a_tail_is_its_zero_padded_word_with_its_length_on_top() {
        let bytes = *b"\x01\x82\x03\xf4\x05\x06\xa7";
        for len in 1..=7 {
            let rest = &bytes[..len];
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(rest);
            padded[7] = len as u8;
            assert_eq!(tail_word(rest), u64::from_le_bytes(padded), "{len} bytes");
        }
    }
}
