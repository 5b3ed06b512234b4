//! Payload masking (RFC 6455 §5.3): `payload[i] ^= key[i % 4]`.

/// XORs `buf` with the masking key, where `offset` is the number of payload bytes of this
/// frame already processed (so a payload unmasked in several pieces is correct: the key
/// rotates by `offset % 4`).
///
/// Masking is its own inverse: the same call masks and unmasks.
///
/// ```
/// use eventum_core::frame::apply_mask;
///
/// // RFC 6455 §5.7: "Hello" masked with key 37 fa 21 3d.
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// apply_mask(&mut payload, key, 0);
/// assert_eq!(&payload, b"Hello");
///
/// // The same, unmasked in two pieces: the second piece starts at payload offset 2.
/// let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (first, second) = payload.split_at_mut(2);
/// apply_mask(first, key, 0);
/// apply_mask(second, key, 2);
/// assert_eq!(&payload, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    // The key byte for buf[0] is key[offset % 4]: rotate so it comes first.
    let mask = u32::from_le_bytes(key)
        .rotate_right(8 * (offset % 4) as u32)
        .to_le_bytes();
    // This function and `xor_short` inline into the caller, so a short payload (most
    // messages) is XORed with no call and no loop; the feature checks and vector paths are
    // one call away.
    if buf.len() < WIDE_MIN {
        xor_short(buf, mask);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    xor_wide(buf, mask);
    #[cfg(not(target_arch = "x86_64"))]
    xor_words(buf, mask);
}

/// The payloads shorter than [`WIDE_MIN`], in at most two reads and two writes: of 4 to 31
/// bytes, the first and the last `N` bytes for the widest `N` of 16, 8 and 4 that fits. The
/// two overlap unless the length is `2N`; both are read before either is written, and the
/// bytes they share get the same value from either write.
#[inline(always)]
fn xor_short(buf: &mut [u8], mask: [u8; 4]) {
    let len = buf.len();
    let key = u32::from_le_bytes(mask);
    // The last `N` bytes start at `len - N`, whose key phase is `len % 4` (`N` is a
    // multiple of 4).
    let tail_key = key.rotate_right(8 * (len % 4) as u32);
    if len >= 16 {
        let spread = |key: u32| u128::from(key) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
        let xor = |bytes, key: u128| (u128::from_le_bytes(bytes) ^ key).to_le_bytes();
        xor_ends(buf, spread(key), spread(tail_key), xor);
    } else if len >= 8 {
        let spread = |key: u32| u64::from(key) * 0x0000_0001_0000_0001;
        let xor = |bytes, key: u64| (u64::from_le_bytes(bytes) ^ key).to_le_bytes();
        xor_ends(buf, spread(key), spread(tail_key), xor);
    } else if len >= 4 {
        let xor = |bytes, key: u32| (u32::from_le_bytes(bytes) ^ key).to_le_bytes();
        xor_ends(buf, key, tail_key, xor);
    } else {
        for (byte, k) in buf.iter_mut().zip(mask) {
            *byte ^= k;
        }
    }
}

/// XORs the first `N` bytes of `buf` (`N` to `2N` bytes long) with `key` and its last `N`
/// with `tail_key`, each read as one word, both read before either is written.
#[inline(always)]
fn xor_ends<const N: usize, W: Copy>(buf: &mut [u8], key: W, tail_key: W, xor: impl Fn([u8; N], W) -> [u8; N]) {
    let (Some(&first), Some(&last)) = (buf.first_chunk(), buf.last_chunk()) else {
        return;
    };
    if let Some(out) = buf.first_chunk_mut() {
        *out = xor(first, key);
    }
    if let Some(out) = buf.last_chunk_mut() {
        *out = xor(last, tail_key);
    }
}

/// A payload of at least [`WIDE_MIN`] bytes: the widest vector unit the CPU has, or
/// [`xor_words`] on a CPU without AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn xor_wide(buf: &mut [u8], mask: [u8; 4]) {
    // One of the crate's two places with `unsafe` (see `lib.rs`); all its two blocks do
    // is call safe functions compiled for AVX-512 or AVX2 (`#[target_feature]`), which
    // Rust asks `unsafe` for.
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the only requirement of calling `xor_avx512` is a CPU with AVX-512F,
        // checked just above (std caches the answer, so the check is one load).
        #[allow(unsafe_code)]
        unsafe {
            xor_avx512(buf, mask)
        };
        return;
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above, for AVX2.
        #[allow(unsafe_code)]
        unsafe {
            xor_avx2(buf, mask)
        };
        return;
    }
    xor_words(buf, mask);
}

/// The shortest payload worth the feature check and a loop: one AVX2 lane.
const WIDE_MIN: usize = 32;

/// [`xor_lanes`] compiled for AVX-512: one `vpxorq` and one 64-byte store per 64 bytes, the
/// stores a memory copy makes on such a CPU (`benches/README.md` has the measurements).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn xor_avx512(buf: &mut [u8], mask: [u8; 4]) {
    xor_lanes::<16>(buf, mask);
}

/// [`xor_lanes`] compiled for AVX2: one `vpxor` and one store per 32 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn xor_avx2(buf: &mut [u8], mask: [u8; 4]) {
    xor_lanes::<8>(buf, mask);
}

/// XORs `buf` with the key repeated `KEYS` times, `4 × KEYS` bytes a step, with every step's
/// store aligned to its width: a wide store across two cache lines costs two (unaligned,
/// the AVX-512 loop ran at half its speed). The bytes before the first aligned address and
/// after the last whole step go in single bytes and blocks of 4 to 32 bytes.
/// The body is plain safe Rust that LLVM vectorizes to the width of the vector unit it is
/// compiled for; it is inlined into [`xor_avx512`] and [`xor_avx2`], which say which that
/// is. (The key is splatted as `[mask; KEYS]`: built byte by byte, it cost LLVM a store
/// loop that took longer than the XOR at 1 KiB.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn xor_lanes<const KEYS: usize>(buf: &mut [u8], mask: [u8; 4]) {
    let head = buf.as_ptr().align_offset(4 * KEYS).min(buf.len());
    let (head, buf) = buf.split_at_mut(head);
    let mask = if head.is_empty() { mask } else { xor_head(head, mask) };
    let keys = [mask; KEYS];
    let wide = keys.as_flattened();
    let mut chunks = buf.chunks_exact_mut(wide.len());
    for chunk in &mut chunks {
        for (byte, k) in chunk.iter_mut().zip(wide) {
            *byte ^= k;
        }
    }
    // Every chunk is a multiple of 4 bytes long, so the tail starts at key phase 0 again.
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        xor_tail(tail, mask);
    }
}

/// The bytes before an aligned address (fewer than one step of [`xor_lanes`]), smallest
/// steps first so that each block lands aligned to its size; returns the key as seen from
/// the end of `head`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn xor_head(head: &mut [u8], mask: [u8; 4]) -> [u8; 4] {
    let bytes = head.len() % 4;
    let (first, mut rest) = head.split_at_mut(bytes);
    for (byte, k) in first.iter_mut().zip(mask) {
        *byte ^= k;
    }
    let mask = u32::from_le_bytes(mask).rotate_right(8 * bytes as u32).to_le_bytes();
    let len = rest.len();
    if len & 4 != 0 {
        rest = xor_block::<4>(rest, mask);
    }
    if len & 8 != 0 {
        rest = xor_block::<8>(rest, mask);
    }
    if len & 16 != 0 {
        rest = xor_block::<16>(rest, mask);
    }
    if len & 32 != 0 {
        xor_block::<32>(rest, mask);
    }
    mask
}

/// The bytes after the last whole step of [`xor_lanes`], largest steps first (each block
/// then starts aligned to its size, the steps before it being larger powers of two).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn xor_tail(mut tail: &mut [u8], mask: [u8; 4]) {
    let len = tail.len();
    if len & 32 != 0 {
        tail = xor_block::<32>(tail, mask);
    }
    if len & 16 != 0 {
        tail = xor_block::<16>(tail, mask);
    }
    if len & 8 != 0 {
        tail = xor_block::<8>(tail, mask);
    }
    if len & 4 != 0 {
        tail = xor_block::<4>(tail, mask);
    }
    for (byte, k) in tail.iter_mut().zip(mask) {
        *byte ^= k;
    }
}

/// XORs the first `N` bytes of `buf` (`N` a multiple of 4; the callers only ask for blocks
/// that fit, and a block that does not is left alone) and returns the rest.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn xor_block<const N: usize>(buf: &mut [u8], mask: [u8; 4]) -> &mut [u8] {
    if buf.len() < N {
        return buf;
    }
    let (block, rest) = buf.split_at_mut(N);
    let word = u32::from_ne_bytes(mask);
    for quad in block.chunks_exact_mut(4) {
        if let Ok(quad) = <&mut [u8; 4]>::try_from(quad) {
            *quad = (u32::from_ne_bytes(*quad) ^ word).to_ne_bytes();
        }
    }
    rest
}

/// XORs `buf` with the key repeated, 8 bytes a step: the path of a payload of [`WIDE_MIN`]
/// bytes or more on a CPU without AVX2, and on every architecture but x86-64.
#[inline]
fn xor_words(buf: &mut [u8], mask: [u8; 4]) {
    let [k0, k1, k2, k3] = mask;
    let wide = [k0, k1, k2, k3, k0, k1, k2, k3];
    let word_mask = u64::from_ne_bytes(wide);

    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // Always Ok: `chunks_exact_mut(8)` yields 8-byte slices; the check compiles away.
        if let Ok(word) = <&mut [u8; 8]>::try_from(chunk) {
            *word = (u64::from_ne_bytes(*word) ^ word_mask).to_ne_bytes();
        }
    }
    // Every chunk is a multiple of 4 bytes long, so the tail starts at key phase 0 again.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(wide) {
        *byte ^= k;
    }
}

/// Reference implementation of [`apply_mask`], one byte at a time, for the differential
/// tests and the `unmask` fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let phase = (offset % 4) as usize;
    for (byte, k) in buf.iter_mut().zip(key.iter().cycle().skip(phase)) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deterministic, non-periodic test pattern.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 3)) as u8).collect()
    }

    #[test]
    fn matches_bytewise_for_all_small_lengths_and_offsets() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=300 {
            for offset in 0..8u64 {
                let mut fast = pattern(len);
                let mut slow = fast.clone();
                apply_mask(&mut fast, key, offset);
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    /// `apply_mask` takes the AVX2 path where the CPU has it: the word path is checked on
    /// its own too, at every length and alignment.
    #[test]
    fn word_path_matches_bytewise() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=300 {
            for start in 0..4 {
                let mut fast = pattern(len + start);
                let mut slow = fast.clone();
                xor_words(&mut fast[start..], key);
                apply_mask_bytewise(&mut slow[start..], key, 0);
                assert_eq!(fast, slow, "len {len} start {start}");
            }
        }
    }

    /// Checks a wide path against the byte-wise reference at every length up to 300 and at
    /// every start within a cache line (the head and tail steps differ with each), with a
    /// guard byte either side that must stay untouched.
    #[cfg(target_arch = "x86_64")]
    fn wide_path_matches_bytewise(path: impl Fn(&mut [u8], [u8; 4])) {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=300 {
            for start in 0..64 {
                let mut storage = pattern(len + 130);
                let base = storage.as_ptr().align_offset(64) + 1 + start;
                let mut slow = storage.clone();
                path(&mut storage[base..base + len], key);
                apply_mask_bytewise(&mut slow[base..base + len], key, 0);
                assert_eq!(storage, slow, "len {len} start {start}");
            }
        }
    }

    /// Where the CPU has AVX-512, `apply_mask` takes that path: each wide path is checked
    /// on its own.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_path_matches_bytewise() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("avx512_path_matches_bytewise: this CPU has no AVX-512, nothing to check");
            return;
        }
        // SAFETY: the CPU has AVX-512F, checked above.
        #[allow(unsafe_code)]
        wide_path_matches_bytewise(|buf, key| unsafe { xor_avx512(buf, key) });
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_path_matches_bytewise() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("avx2_path_matches_bytewise: this CPU has no AVX2, nothing to check");
            return;
        }
        // SAFETY: the CPU has AVX2, checked above.
        #[allow(unsafe_code)]
        wide_path_matches_bytewise(|buf, key| unsafe { xor_avx2(buf, key) });
    }

    #[test]
    fn unaligned_subslices_match_bytewise() {
        // Start the slice at every alignment of the underlying allocation.
        let key = [0x01, 0x80, 0xff, 0x5a];
        let base = pattern(64);
        for start in 0..8 {
            for offset in 0..4u64 {
                let mut fast = base.clone();
                let mut slow = base.clone();
                apply_mask(&mut fast[start..], key, offset);
                apply_mask_bytewise(&mut slow[start..], key, offset);
                assert_eq!(fast, slow, "start {start} offset {offset}");
            }
        }
    }

    #[test]
    fn rfc6455_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn huge_offsets_do_not_overflow() {
        let key = [1, 2, 3, 4];
        for offset in [u64::MAX, u64::MAX - 1, u64::MAX - 2, u64::MAX - 3] {
            let mut fast = pattern(19);
            let mut slow = fast.clone();
            apply_mask(&mut fast, key, offset);
            apply_mask_bytewise(&mut slow, key, offset);
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let original = pattern(77);
        let mut buf = original.clone();
        apply_mask(&mut buf, [9, 8, 7, 6], 3);
        assert_ne!(buf, original);
        apply_mask(&mut buf, [9, 8, 7, 6], 3);
        assert_eq!(buf, original);
    }

    proptest! {
        #[test]
        fn matches_bytewise(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            key in any::<[u8; 4]>(),
            offset in any::<u64>(),
        ) {
            let mut fast = data.clone();
            let mut slow = data;
            apply_mask(&mut fast, key, offset);
            apply_mask_bytewise(&mut slow, key, offset);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn split_unmasking_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            key in any::<[u8; 4]>(),
            offset in any::<u64>(),
            split in any::<proptest::sample::Index>(),
        ) {
            let offset = offset / 2; // keep offset + len from wrapping
            let at = split.index(data.len() + 1);
            let mut whole = data.clone();
            apply_mask(&mut whole, key, offset);

            let mut pieces = data;
            let (first, second) = pieces.split_at_mut(at);
            apply_mask(first, key, offset);
            apply_mask(second, key, offset + at as u64);
            prop_assert_eq!(pieces, whole);
        }
    }
}
