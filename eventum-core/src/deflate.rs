//! The permessage-deflate codec (RFC 7692 §6, §7.2): one compressor for the messages we
//! send, one decompressor for the messages we receive, both per connection.
//!
//! Both work on message *payloads* only; RSV1, framing and control frames are the
//! connection's business. A compressed message is raw DEFLATE (no zlib header) ended by a
//! sync flush whose `00 00 ff ff` tail is removed by the sender (§7.2.1) and appended by
//! the receiver (§7.2.2).
//!
//! # Backend
//!
//! flate2 with the `zlib-rs` backend: zlib-rs is zlib(-ng) ported to Rust, so the build
//! needs no C toolchain and the crate stays free of C code, it is as fast as zlib-ng, and,
//! unlike flate2's default miniz_oxide backend, it supports the window sizes 9..=15 that
//! `*_max_window_bits` negotiates (`Compress::new_with_window_bits` exists only with a
//! zlib backend). The remaining limits are zlib's own: raw deflate cannot use window bits
//! 8 (see `handshake::permessage_deflate`), and flate2 does not expose zlib's `memLevel`.
//!
//! # Memory (measured)
//!
//! Live heap bytes of one zlib-rs stream (flate2 1.1.11, zlib-rs 0.6.8, level 6, the
//! default memLevel 8; zlib-rs allocates through Rust's global allocator), counted by a
//! counting `#[global_allocator]` in a scratch binary (it needs `unsafe`, which this crate
//! forbids) after `new_with_window_bits` and again after compressing and inflating a 4 KiB
//! JSON-like message: the figures are equal, everything is allocated up front.
//!
//! | window bits | 15 | 14 | 13 | 12 | 11 | 10 | 9 |
//! |---|---|---|---|---|---|---|---|
//! | compressor | 380 032 | 314 496 | 281 728 | 265 344 | 257 152 | 253 056 | 251 008 |
//! | decompressor | 47 552 | 47 552 | 47 552 | 47 552 | 47 552 | 47 552 | 47 552 |
//!
//! zlib documents deflate's memory as `(1 << (windowBits + 2)) + (1 << (memLevel + 9))`
//! and inflate's as `1 << windowBits` plus about 7 KiB. zlib-rs matches the window term
//! (4 bytes per window byte: the doubled window plus the `prev` chain) but its hash table
//! is a fixed 65 536 entries (128 KiB) and its buffers take 112 KiB at memLevel 8, so a
//! compressor never costs less than ≈ 245 KiB; its inflater always reserves a full 32 KiB
//! window, so the client's window bits do not change our memory (and a client that
//! compresses with a larger window than it negotiated is tolerated rather than detected).
//!
//! Hence the defaults of [`DeflateConfig`]: no context takeover in either direction, so a
//! stream is needed only while one message is compressed or inflated; it is borrowed from
//! a small process-wide cache (`pool`) and returned when the message ends, and an idle
//! connection holds none. With context takeover (configurable) each connection owns its
//! streams from its first compressed message on: ≈ 259 KiB for a 12-bit compressor and
//! ≈ 46 KiB for the inflater.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

mod pool;

use crate::handshake::{DeflateConfig, DeflateParams};

/// The end of a sync flush: the empty stored block's LEN and NLEN (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib can use for raw deflate.
const MIN_WINDOW_BITS: u8 = 9;

/// The default output chunk of [`MessageInflater`]: how much one call may inflate.
pub(crate) const INFLATE_CHUNK: usize = 16 * 1024;

/// The compressor failed; never caused by the peer (zlib only fails on misuse), so the
/// connection maps it to close 1011.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeflateError(String);

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compression failed: {}", self.0)
    }
}

impl std::error::Error for DeflateError {}

/// Compresses the messages we send, one at a time (RFC 7692 §7.2.1).
///
/// Without context takeover the zlib state is borrowed from the process-wide cache for
/// each message; with it, the state is allocated by the first message that is compressed
/// and kept. Messages shorter than the configured threshold should be sent uncompressed
/// (RSV1 clear), which [`should_compress`](Self::should_compress) decides and which does
/// not disturb the context the peer keeps.
pub(crate) struct MessageDeflater {
    compress: Option<Compress>,
    level: u32,
    window_bits: u8,
    no_context_takeover: bool,
    threshold: usize,
}

impl fmt::Debug for MessageDeflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageDeflater")
            .field("allocated", &self.compress.is_some())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl MessageDeflater {
    /// Our side of the negotiated `params`: `server_max_window_bits` and
    /// `server_no_context_takeover`, with the level and threshold from `config`.
    pub(crate) fn new(params: &DeflateParams, config: &DeflateConfig) -> Self {
        MessageDeflater {
            compress: None,
            level: config.level(),
            window_bits: params.server_max_window_bits(),
            no_context_takeover: params.server_no_context_takeover(),
            threshold: config.min_size(),
        }
    }

    /// Whether a message of `len` bytes should be compressed: at least the threshold, and
    /// never when the client limited our window to 8 bits, which zlib cannot honour.
    pub(crate) fn should_compress(&self, len: usize) -> bool {
        self.window_bits >= MIN_WINDOW_BITS && len >= self.threshold
    }

    /// Whether the zlib state is held by this connection.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.compress.is_some()
    }

    /// Whether every message is compressed on its own (no context takeover), so one
    /// compressed copy of a message is valid for every connection that accepts
    /// [`window_bits`](Self::window_bits) or more.
    pub(crate) fn is_stateless(&self) -> bool {
        self.no_context_takeover
    }

    /// The window (log2) the compressor uses.
    pub(crate) fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Appends the compressed form of `chunk`, the next part of the current message, to
    /// `out`. `fin` marks the message's last chunk: the output is then sync-flushed and its
    /// `00 00 ff ff` tail removed, and the context is reset if takeover is off.
    ///
    /// Each call's output is the payload of one frame (the first with RSV1 set); a
    /// non-final call may append nothing, which is still a valid (empty) frame.
    pub(crate) fn compress(&mut self, chunk: &[u8], fin: bool, out: &mut Vec<u8>) -> Result<(), DeflateError> {
        // Called anyway with an 8-bit limit: stored blocks (level 0) have no back-references,
        // so they are valid for any window.
        let (level, bits) = match self.window_bits {
            bits if bits < MIN_WINDOW_BITS => (0, MIN_WINDOW_BITS),
            bits => (self.level, bits),
        };
        let stateless = self.no_context_takeover;
        let compress = self.compress.get_or_insert_with(|| match stateless {
            true => pool::take_compress(bits, level),
            false => Compress::new_with_window_bits(Compression::new(level), false, bits),
        });
        let flush = if fin { FlushCompress::Sync } else { FlushCompress::None };
        let start = out.len();
        let mut input = chunk;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before = compress.total_in();
            compress
                .compress_vec(input, out, flush)
                .map_err(|e| DeflateError(e.to_string()))?;
            let consumed = usize::try_from(compress.total_in() - before).unwrap_or(input.len());
            input = input.get(consumed..).unwrap_or_default();
            // Done when all input is in and zlib left output space unused (flush complete).
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.len() < start + TAIL.len() || !out.ends_with(&TAIL) {
                return Err(DeflateError("sync flush did not end with 00 00 ff ff".into()));
            }
            out.truncate(out.len() - TAIL.len());
            if let Some(compress) = self.compress.take_if(|_| stateless) {
                pool::put_compress(bits, level, compress);
            }
        }
        Ok(())
    }

    /// Compresses a whole message into `out` (one frame's payload).
    #[cfg(test)]
    pub(crate) fn compress_message(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.compress(message, true, out)
    }

    /// The compressed payload of a whole message (one frame's), or `None` when it should
    /// go as it is: without context takeover, where the choice is free, a result that is
    /// no smaller. With takeover the context has taken the message in, so it must be sent
    /// compressed whatever its size.
    pub(crate) fn deflate_message(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, DeflateError> {
        let mut out = Vec::with_capacity(message.len() / 2 + 64);
        self.compress(message, true, &mut out)?;
        Ok((!self.no_context_takeover || out.len() < message.len()).then_some(out))
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The inflated message would exceed `limit` bytes: close 1009 (message too big).
    TooBig {
        /// The maximum message size.
        limit: usize,
    },
    /// Not a valid DEFLATE stream, or a back-reference beyond the data so far:
    /// close 1007. RFC 7692 names no code; 1007 ("data within a message that was not
    /// consistent with the type of the message", RFC 6455 §7.4.1) fits data whose framing
    /// was valid but whose content is not, as invalid UTF-8 is, and is what e.g. Node's
    /// `ws` sends. (Chromium's client sends 1002; both fail the connection.)
    Corrupt(String),
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig { limit } => write!(f, "inflated message larger than {limit} bytes"),
            InflateError::Corrupt(why) => write!(f, "invalid compressed data: {why}"),
        }
    }
}

impl std::error::Error for InflateError {}

impl From<InflateError> for crate::error::ProtocolError {
    fn from(error: InflateError) -> Self {
        match error {
            InflateError::TooBig { limit } => crate::error::ProtocolError::MessageTooLarge { limit },
            InflateError::Corrupt(why) => crate::error::ProtocolError::InvalidCompressedData(why),
        }
    }
}

/// What the caller of [`MessageInflater::inflate`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Call again with the rest of this frame's input (possibly empty): there is more output.
    Continue,
    /// This frame is used up; wait for the message's next frame.
    NeedFrame,
    /// The message is complete; the next call starts a new message.
    MessageEnd,
}

/// The result of one [`MessageInflater::inflate`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inflated {
    /// Input bytes used; resume the next call at `input[consumed..]`.
    pub(crate) consumed: usize,
    /// Bytes appended to the output.
    pub(crate) produced: usize,
    /// What to do next.
    pub(crate) next: Next,
}

/// Inflates the compressed messages we receive, frame by frame and in bounded chunks
/// (RFC 7692 §7.2.2), enforcing the maximum message size on the inflated bytes as they
/// are produced.
pub(crate) struct MessageInflater {
    decompress: Option<Decompress>,
    window_bits: u8,
    no_context_takeover: bool,
    max_message_size: usize,
    chunk: usize,
    /// Inflated bytes of the current message so far.
    produced: usize,
    /// How much of [`TAIL`] the current message has been fed.
    tail_fed: usize,
    /// The current message had a block with BFINAL set; the rest of it is ignored.
    stream_ended: bool,
}

impl fmt::Debug for MessageInflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageInflater")
            .field("allocated", &self.decompress.is_some())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl MessageInflater {
    /// The peer's side of the negotiated `params` (`client_max_window_bits`, raised to 9,
    /// and `client_no_context_takeover`); each call inflates at most `chunk` bytes (at
    /// least 1) and a message may inflate to at most `max_message_size` bytes.
    pub(crate) fn new(params: &DeflateParams, max_message_size: usize, chunk: usize) -> Self {
        MessageInflater {
            decompress: None,
            window_bits: params.client_max_window_bits().max(MIN_WINDOW_BITS),
            no_context_takeover: params.client_no_context_takeover(),
            max_message_size,
            chunk: chunk.max(1),
            produced: 0,
            tail_fed: 0,
            stream_ended: false,
        }
    }

    /// Whether the zlib state is held by this connection.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.decompress.is_some()
    }

    /// Inflates the start of `input`, compressed bytes of the current message's frame,
    /// appending at most one chunk of output to `out`. `fin`: this frame is the message's
    /// last, so its end is followed by the `00 00 ff ff` tail.
    ///
    /// Call it until it says [`Next::NeedFrame`] (then with the next frame's payload) or
    /// [`Next::MessageEnd`], resuming at `input[consumed..]` after [`Next::Continue`];
    /// hand each chunk of output on (UTF-8 validation, the application) in between. An
    /// error leaves the inflater unusable: fail the connection with the close code of
    /// the [`ProtocolError`](crate::ProtocolError) it converts to.
    pub(crate) fn inflate(&mut self, input: &[u8], fin: bool, out: &mut Vec<u8>) -> Result<Inflated, InflateError> {
        let bits = self.window_bits;
        let stateless = self.no_context_takeover;
        let decompress = self.decompress.get_or_insert_with(|| match stateless {
            true => pool::take_decompress(bits),
            false => Decompress::new_with_window_bits(false, bits),
        });
        // At most one byte over the limit, so going over is detected without producing more.
        let room = self
            .chunk
            .min(self.max_message_size.saturating_sub(self.produced).saturating_add(1));
        let start = out.len();
        out.resize(start + room, 0);
        let (mut written, mut consumed, mut tail_used) = (0, 0, 0);
        let result = (|| {
            if self.stream_ended {
                consumed = input.len(); // after a BFINAL block: ignored (RFC 7692 §7.2.3.5)
            } else {
                // Also with empty input: zlib may hold output from a chunk that filled up.
                let (used, made, status) = run(decompress, input, &mut out[start..start + room])?;
                consumed = used;
                written = made;
                if status == Status::StreamEnd {
                    self.stream_ended = true;
                    consumed = input.len();
                }
            }
            if fin && consumed == input.len() && !self.stream_ended && self.tail_fed < TAIL.len() && written < room {
                let tail = &TAIL[self.tail_fed..];
                let (used, made, status) = run(decompress, tail, &mut out[start + written..start + room])?;
                tail_used = used;
                self.tail_fed += used;
                written += made;
                if status == Status::StreamEnd {
                    self.stream_ended = true;
                }
            }
            Ok(())
        })();
        out.truncate(start + written);
        result?;
        self.produced += written;
        if self.produced > self.max_message_size {
            return Err(InflateError::TooBig {
                limit: self.max_message_size,
            });
        }
        let unfinished = consumed < input.len() || (fin && !self.stream_ended && self.tail_fed < TAIL.len());
        let next = if written == room {
            Next::Continue // the chunk is full: zlib may hold more output
        } else if unfinished {
            if consumed == 0 && written == 0 && tail_used == 0 {
                return Err(InflateError::Corrupt("no progress".into()));
            }
            Next::Continue
        } else if !fin {
            Next::NeedFrame
        } else {
            self.end_message();
            Next::MessageEnd
        };
        Ok(Inflated {
            consumed,
            produced: written,
            next,
        })
    }

    /// Resets the per-message state, and the window if the peer does not take it over
    /// (or cannot, after a BFINAL block ended its stream).
    /// Without takeover the state goes back to the process-wide cache.
    fn end_message(&mut self) {
        if self.no_context_takeover {
            if let Some(decompress) = self.decompress.take() {
                pool::put_decompress(self.window_bits, decompress);
            }
        } else if self.stream_ended {
            if let Some(decompress) = &mut self.decompress {
                decompress.reset(false);
            }
        }
        self.produced = 0;
        self.tail_fed = 0;
        self.stream_ended = false;
    }

    /// Inflates a whole single-frame message into `out` (a convenience over
    /// [`inflate`](Self::inflate), for tests).
    #[cfg(test)]
    pub(crate) fn inflate_message(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        let mut input = payload;
        loop {
            let step = self.inflate(input, true, out)?;
            input = input.get(step.consumed..).unwrap_or_default();
            if step.next == Next::MessageEnd {
                return Ok(());
            }
        }
    }
}

/// One `Decompress::decompress` call: (input used, output made, status).
fn run(decompress: &mut Decompress, input: &[u8], output: &mut [u8]) -> Result<(usize, usize, Status), InflateError> {
    let (in_before, out_before) = (decompress.total_in(), decompress.total_out());
    let status = decompress
        .decompress(input, output, FlushDecompress::Sync)
        .map_err(|e| InflateError::Corrupt(e.to_string()))?;
    let used = usize::try_from(decompress.total_in() - in_before).unwrap_or(input.len());
    let made = usize::try_from(decompress.total_out() - out_before).unwrap_or(output.len());
    Ok((used, made, status))
}

#[cfg(test)]
mod tests;
