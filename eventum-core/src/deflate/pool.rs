//! Idle zlib streams shared by every connection in the process.
//!
//! Without context takeover a stream carries nothing from one message to the next, so a
//! connection needs one only while it compresses or inflates a message. It borrows one
//! here and gives it back, reset, when the message ends: 10,000 idle connections then hold
//! no compression memory at all, and the cache holds at most [`KEEP`] streams of each kind
//! (a few MiB), whatever the number of connections or threads. Taking and returning is one
//! uncontended lock each, small beside compressing a message.

use std::sync::{Mutex, MutexGuard};

use flate2::{Compress, Compression, Decompress};

/// Idle streams kept per kind; more are freed when returned.
const KEEP: usize = 8;

/// Idle compressors with their window bits and level.
static COMPRESSORS: Mutex<Vec<(u8, u32, Compress)>> = Mutex::new(Vec::new());
/// Idle raw-deflate decompressors with their window bits.
static DECOMPRESSORS: Mutex<Vec<(u8, Decompress)>> = Mutex::new(Vec::new());

/// A poisoned lock only means a panic elsewhere: then the cache is skipped.
fn lock<T>(pool: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    pool.lock().ok()
}

/// A raw-deflate compressor with `bits` of window at `level`, reset.
pub(super) fn take_compress(bits: u8, level: u32) -> Compress {
    let cached = lock(&COMPRESSORS).and_then(|mut pool| {
        let at = pool.iter().position(|&(b, l, _)| b == bits && l == level)?;
        Some(pool.swap_remove(at).2)
    });
    cached.unwrap_or_else(|| Compress::new_with_window_bits(Compression::new(level), false, bits))
}

/// Returns a compressor taken with [`take_compress`]`(bits, level)`.
pub(super) fn put_compress(bits: u8, level: u32, mut compress: Compress) {
    compress.reset();
    if let Some(mut pool) = lock(&COMPRESSORS).filter(|pool| pool.len() < KEEP) {
        pool.push((bits, level, compress));
    }
}

/// A raw-deflate decompressor with `bits` of window, reset.
pub(super) fn take_decompress(bits: u8) -> Decompress {
    let cached = lock(&DECOMPRESSORS).and_then(|mut pool| {
        let at = pool.iter().position(|&(b, _)| b == bits)?;
        Some(pool.swap_remove(at).1)
    });
    cached.unwrap_or_else(|| Decompress::new_with_window_bits(false, bits))
}

/// Returns a decompressor taken with [`take_decompress`]`(bits)`.
pub(super) fn put_decompress(bits: u8, mut decompress: Decompress) {
    decompress.reset(false);
    if let Some(mut pool) = lock(&DECOMPRESSORS).filter(|pool| pool.len() < KEEP) {
        pool.push((bits, decompress));
    }
}
