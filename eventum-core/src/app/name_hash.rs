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

/// The last 1 to 7 bytes of a name as one word, from loads that may overlap: 4 to 7 bytes
/// are the first four and the last four, 1 to 3 the first, middle and last byte. Copying
/// them into a zeroed `[u8; 8]` instead was a `memcpy` call and a store-to-load stall on
/// every lookup: 27 ns against 6 ns for the whole lookup of a 4-byte name on this machine.
/// Rotating by the length keeps `"aaaa"` and `"aaaaa"`, which load the same bytes, apart.
fn tail_word(rest: &[u8]) -> u64 {
    let len = rest.len();
    let word = match (rest.first_chunk::<4>(), rest.last_chunk::<4>()) {
        (Some(first), Some(last)) => u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32,
        _ => {
            let byte = |i: usize| u64::from(rest.get(i).copied().unwrap_or_default());
            byte(0) | byte(len / 2) << 8 | byte(len.saturating_sub(1)) << 16
        }
    };
    word.rotate_left(len as u32)
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
        ];
        let hashes: HashSet<u64> = names.iter().map(|name| hash(name)).collect();
        assert_eq!(hashes.len(), names.len());
        assert_eq!(hash("move"), hash("move"));
    }
}
