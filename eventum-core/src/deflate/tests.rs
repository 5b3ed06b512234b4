use flate2::{Compress, Compression, FlushCompress};

use super::*;
use crate::handshake::parse_request;
use crate::{CloseCode, ProtocolError};

const HELLO: &[u8] = b"Hello";
/// RFC 7692 §7.2.3.1: "Hello" compressed, as the payload of `c1 07 …`.
const HELLO_DEFLATED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// RFC 7692 §7.2.3.2: the same message again, with context takeover.
const HELLO_AGAIN: [u8; 5] = [0xf2, 0x00, 0x11, 0x00, 0x00];

/// Negotiated parameters with `bits` in both directions, through the real negotiation.
fn params(bits: u8, no_context_takeover: bool) -> DeflateParams {
    let mut value = format!("permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={bits}");
    if no_context_takeover {
        value.push_str("; server_no_context_takeover; client_no_context_takeover");
    }
    let head = format!("GET / HTTP/1.1\r\nSec-WebSocket-Extensions: {value}\r\n\r\n");
    let request = parse_request(head.as_bytes(), 8).expect("parses");
    let config = DeflateConfig::default()
        .server_max_window_bits(15)
        .server_no_context_takeover(false)
        .client_no_context_takeover(false);
    *config.negotiate(request.extensions()).expect("accepted").params()
}

/// A compressor at zlib's default level 6, the one RFC 7692's examples were made with.
fn deflater(bits: u8, no_context_takeover: bool) -> MessageDeflater {
    let config = DeflateConfig::default().compression_level(6);
    MessageDeflater::new(&params(bits, no_context_takeover), &config)
}

fn inflater(bits: u8, no_context_takeover: bool) -> MessageInflater {
    MessageInflater::new(&params(bits, no_context_takeover), 1 << 20, INFLATE_CHUNK)
}

fn deflate(d: &mut MessageDeflater, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    d.compress_message(message, &mut out).expect("compresses");
    out
}

fn inflate(i: &mut MessageInflater, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    i.inflate_message(payload, &mut out).map(|()| out)
}

/// Inflates a message given as frames, checking the protocol of [`Next`] on the way.
fn inflate_frames(i: &mut MessageInflater, frames: &[&[u8]]) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    for (n, frame) in frames.iter().enumerate() {
        let fin = n + 1 == frames.len();
        let mut input = *frame;
        loop {
            let before = out.len();
            let step = i.inflate(input, fin, &mut out)?;
            assert_eq!(out.len() - before, step.produced);
            assert!(step.produced <= i.chunk, "one call made more than a chunk");
            input = &input[step.consumed..];
            match step.next {
                Next::Continue => continue,
                Next::NeedFrame => {
                    assert!(!fin && input.is_empty());
                    break;
                }
                Next::MessageEnd => {
                    assert!(fin && input.is_empty());
                    return Ok(out);
                }
            }
        }
    }
    unreachable!("the final frame ends the message")
}

/// A deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A message mixing JSON-like text, repeats from far back, and random bytes.
    fn message(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        let mut m = Vec::with_capacity(len);
        while m.len() < len {
            match self.below(3) {
                0 => m.extend_from_slice(format!("{{\"event\":\"tick\",\"n\":{}}}", self.next() % 1000).as_bytes()),
                1 if !m.is_empty() => {
                    let from = self.below(m.len());
                    let n = self.below(300).min(m.len() - from);
                    m.extend_from_within(from..from + n);
                }
                _ => m.extend((0..self.below(40)).map(|_| self.next() as u8)),
            }
        }
        m.truncate(len);
        m
    }
}

#[test]
fn rfc7692_hello_vectors() {
    let mut d = deflater(15, false);
    let payload = deflate(&mut d, HELLO);
    assert_eq!(payload, HELLO_DEFLATED);
    // The whole frame of §7.2.3.1: FIN + RSV1 + text, length 7, then the payload.
    let frame: Vec<u8> = [0xc1, payload.len() as u8].into_iter().chain(payload).collect();
    assert_eq!(frame, [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    // §7.2.3.2: the second "Hello" refers back to the first.
    assert_eq!(deflate(&mut d, HELLO), HELLO_AGAIN);

    let mut i = inflater(15, false);
    assert_eq!(inflate(&mut i, &HELLO_DEFLATED).unwrap(), HELLO);
    assert_eq!(inflate(&mut i, &HELLO_AGAIN).unwrap(), HELLO);
}

#[test]
fn rfc7692_without_context_takeover_every_message_is_the_same() {
    let mut d = deflater(15, true);
    let mut i = inflater(15, true);
    for _ in 0..3 {
        assert_eq!(deflate(&mut d, HELLO), HELLO_DEFLATED);
        assert_eq!(inflate(&mut i, &HELLO_DEFLATED).unwrap(), HELLO);
    }
    // An inflater that reset cannot resolve the back-reference of §7.2.3.2.
    let mut i = inflater(15, true);
    inflate(&mut i, &HELLO_DEFLATED).unwrap();
    assert!(matches!(inflate(&mut i, &HELLO_AGAIN), Err(InflateError::Corrupt(_))));
}

#[test]
fn rfc7692_uncompressed_block_multiple_blocks_and_bfinal() {
    let mut i = inflater(15, false);
    // §7.2.3.3: a stored block.
    let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(inflate(&mut i, &stored).unwrap(), HELLO);
    // §7.2.3.4: two DEFLATE blocks in one message.
    let two = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(inflate(&mut i, &two).unwrap(), HELLO);
    // §7.2.3.5: a block with BFINAL set, then the padding octet; the stream restarts after it.
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(inflate(&mut i, &bfinal).unwrap(), HELLO);
    assert_eq!(inflate(&mut i, &HELLO_DEFLATED).unwrap(), HELLO);
    // §7.2.3.6: an empty message compresses to one 0x00 octet.
    let mut d = deflater(15, false);
    assert_eq!(deflate(&mut d, b""), [0x00]);
    assert_eq!(inflate(&mut i, &[0x00]).unwrap(), b"");
}

#[test]
fn rfc7692_fragmented_message() {
    // §7.2.3.3's fragmented form: the compressed bytes of "Hello" over two frames
    // (`41 03 f2 48 cd` then `80 04 c9 c9 07 00`).
    let mut i = inflater(15, false);
    assert_eq!(
        inflate_frames(&mut i, &[&HELLO_DEFLATED[..3], &HELLO_DEFLATED[3..]]).unwrap(),
        HELLO
    );
    // Sending side: chunks of one message compress to frames that inflate to the whole.
    let mut d = deflater(15, false);
    let mut frames = Vec::new();
    for (chunk, fin) in [(&b"Hel"[..], false), (&b""[..], false), (&b"lo"[..], true)] {
        let mut out = Vec::new();
        d.compress(chunk, fin, &mut out).unwrap();
        frames.push(out);
    }
    let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    assert_eq!(inflate_frames(&mut i, &frames).unwrap(), HELLO);
}

#[test]
fn round_trips_every_window_with_and_without_context_takeover() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for bits in 9..=15 {
        for no_takeover in [false, true] {
            let (mut d, mut i) = (deflater(bits, no_takeover), inflater(bits, no_takeover));
            for _ in 0..12 {
                let message = rng.message(6000);
                let payload = deflate(&mut d, &message);
                assert_eq!(inflate(&mut i, &payload).unwrap(), message, "bits {bits}");
                // The same message in 1..=4 fragments, each compressed as its own chunk.
                let cuts = rng.below(4);
                let mut bounds: Vec<usize> = (0..cuts).map(|_| rng.below(message.len() + 1)).collect();
                bounds.sort_unstable();
                bounds.push(message.len());
                let (mut frames, mut from) = (Vec::new(), 0);
                for (n, &to) in bounds.iter().enumerate() {
                    let mut out = Vec::new();
                    d.compress(&message[from..to], n + 1 == bounds.len(), &mut out).unwrap();
                    frames.push(out);
                    from = to;
                }
                let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                assert_eq!(
                    inflate_frames(&mut i, &frames).unwrap(),
                    message,
                    "bits {bits}, fragmented"
                );
            }
        }
    }
}

#[test]
fn context_takeover_shrinks_repeated_messages() {
    let message = br#"{"event":"chat","data":{"room":"lobby","text":"hello everyone, how are you today?"}}"#;
    let (mut with, mut without) = (deflater(12, false), deflater(12, true));
    deflate(&mut with, message);
    let (taken_over, reset) = (deflate(&mut with, message).len(), deflate(&mut without, message).len());
    assert!(taken_over * 3 < reset, "{taken_over} vs {reset}");
}

#[test]
fn split_at_every_byte_boundary() {
    let mut rng = Rng(7);
    let message: Vec<u8> = (0..40).flat_map(|_| rng.message(60)).collect();
    let payload = deflate(&mut deflater(15, true), &message);
    assert!(
        payload.len() > 100,
        "a compressed message of some length: {}",
        payload.len()
    );
    for at in 0..=payload.len() {
        let mut i = inflater(15, true);
        assert_eq!(
            inflate_frames(&mut i, &[&payload[..at], &payload[at..]]).unwrap(),
            message,
            "split at {at}"
        );
    }
    // One frame per byte, and outputs of one byte per call.
    let frames: Vec<&[u8]> = payload.chunks(1).collect();
    let mut i = MessageInflater::new(&params(15, true), 1 << 20, 1);
    assert_eq!(inflate_frames(&mut i, &frames).unwrap(), message);
}

/// Long matches (258 bytes from a few input bits) split across frames while the output
/// chunk is small: what zlib still holds when a frame's input is used up comes out.
#[test]
fn long_matches_across_frames_with_small_chunks() {
    let message: Vec<u8> = b"abc".iter().cycle().take(20_000).copied().collect();
    let payload = deflate(&mut deflater(15, true), &message);
    for chunk in [1, 7, 300] {
        for at in 0..=payload.len() {
            let mut i = MessageInflater::new(&params(15, true), 1 << 20, chunk);
            let out = inflate_frames(&mut i, &[&payload[..at], &payload[at..], b""]).unwrap();
            assert_eq!(out, message, "chunk {chunk}, split at {at}");
        }
    }
}

#[test]
fn output_comes_in_bounded_chunks() {
    let message = vec![b'a'; 100_000];
    let payload = deflate(&mut deflater(15, false), &message);
    let mut i = MessageInflater::new(&params(15, false), 1 << 20, 1000);
    let (mut out, mut calls, mut input) = (Vec::new(), 0, &payload[..]);
    loop {
        let step = i.inflate(input, true, &mut out).unwrap();
        calls += 1;
        assert!(step.produced <= 1000);
        input = &input[step.consumed..];
        if step.next == Next::MessageEnd {
            break;
        }
    }
    assert_eq!(out, message);
    assert!(calls >= 100, "{calls} calls");
}

/// A real decompression bomb: 1 GiB of zeros as 1024 sync-flushed segments of 1 MiB each.
#[test]
fn decompression_bomb_stops_at_the_limit() {
    const SEGMENT: usize = 1 << 20;
    let zeros = vec![0u8; SEGMENT];
    let mut c = Compress::new_with_window_bits(Compression::best(), false, 15);
    let mut segments = Vec::new();
    for _ in 0..3 {
        let mut out = Vec::with_capacity(SEGMENT);
        c.compress_vec(&zeros, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.len() < out.capacity() && c.total_in().is_multiple_of(SEGMENT as u64));
        segments.push(out);
    }
    // Once the window is full of zeros, every segment compresses to the same bytes.
    assert_eq!(segments[1], segments[2]);
    let mut bomb = segments[0].clone();
    for _ in 1..1024 {
        bomb.extend_from_slice(&segments[1]);
    }
    assert!(bomb.ends_with(&TAIL));
    bomb.truncate(bomb.len() - TAIL.len());
    assert!(bomb.len() < 2 << 20, "{} compressed bytes for 1 GiB", bomb.len());

    // The bomb is genuine: its first 8 segments inflate to 8 MiB of zeros.
    let prefix = &bomb[..segments[0].len() + 7 * segments[1].len() - TAIL.len()];
    let mut i = MessageInflater::new(&params(15, false), 16 << 20, INFLATE_CHUNK);
    let out = inflate(&mut i, prefix).unwrap();
    assert!(out.len() == 8 * SEGMENT && out.iter().all(|&b| b == 0));

    // With a 1 MiB limit it fails after producing at most the limit plus one byte.
    let limit = 1 << 20;
    let mut i = MessageInflater::new(&params(15, false), limit, INFLATE_CHUNK);
    let (mut input, mut total) = (&bomb[..], 0);
    let err = loop {
        let mut out = Vec::new();
        match i.inflate(input, true, &mut out) {
            Ok(step) => {
                total += step.produced;
                input = &input[step.consumed..];
                assert_ne!(step.next, Next::MessageEnd);
            }
            Err(e) => {
                total += out.len();
                break e;
            }
        }
    };
    assert_eq!(err, InflateError::TooBig { limit });
    assert_eq!(ProtocolError::from(err).close_code(), CloseCode::TOO_BIG);
    assert!(total <= limit + INFLATE_CHUNK, "{total} bytes produced");
    assert!(input.len() > bomb.len() / 2, "stopped early in the input");
}

#[test]
fn a_message_exactly_at_the_limit_passes() {
    let message = vec![b'x'; 5000];
    let payload = deflate(&mut deflater(15, true), &message);
    let mut i = MessageInflater::new(&params(15, true), 5000, 64);
    assert_eq!(inflate(&mut i, &payload).unwrap(), message);
    let mut i = MessageInflater::new(&params(15, true), 4999, 64);
    assert_eq!(inflate(&mut i, &payload), Err(InflateError::TooBig { limit: 4999 }));
}

#[test]
fn corrupt_input_is_an_error_never_a_panic() {
    // BTYPE 11 is reserved.
    let err = inflate(&mut inflater(15, false), &[0x06, 0x00]).unwrap_err();
    assert!(matches!(err, InflateError::Corrupt(_)), "{err}");
    assert_eq!(ProtocolError::from(err).close_code(), CloseCode::INVALID_PAYLOAD);
    // A stored block whose NLEN is not the complement of LEN.
    assert!(inflate(&mut inflater(15, false), &[0x00, 0x05, 0x00, 0x00, 0x00, 0x48]).is_err());
    // Random garbage and bit flips of a real message: Ok or Err, bounded, no panic.
    let mut rng = Rng(42);
    let message = rng.message(3000);
    let payload = deflate(&mut deflater(15, false), &message);
    let mut errors = 0;
    for n in 0..400 {
        let mut bad = payload.clone();
        if n % 2 == 0 {
            let at = rng.below(bad.len());
            bad[at] ^= 1 << rng.below(8);
        } else {
            bad = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        }
        let mut i = MessageInflater::new(&params(15, false), 10_000, 512);
        match inflate(&mut i, &bad) {
            Ok(out) => assert!(out.len() <= 10_000),
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 100, "{errors} of 400 rejected");
}

/// zlib-rs's inflater keeps a full 32 KiB window whatever its window bits (the bits only
/// check a zlib header), so a peer that compresses with a larger window than it negotiated
/// is tolerated, not detected: its messages still decode. (Within one message zlib checks
/// distances against the bytes produced so far, never against the window size.) What the
/// negotiated bits do guarantee is checked too: a 9-bit compressor's output decodes.
#[test]
fn inflater_tolerates_references_beyond_the_negotiated_window() {
    let mut rng = Rng(3);
    let block: Vec<u8> = (0..600).map(|_| rng.next() as u8).collect();
    let mut d = deflater(15, false);
    let first = deflate(&mut d, &block);
    let again = deflate(&mut d, &block);
    assert!(
        again.len() < 20,
        "the repeat is a back-reference 600 bytes into the last message"
    );
    let mut i = inflater(9, false);
    assert_eq!(inflate(&mut i, &first).unwrap(), block);
    assert_eq!(inflate(&mut i, &again).unwrap(), block);
    // Without context takeover the reference has nothing to point at: invalid data.
    let mut i = inflater(9, true);
    assert_eq!(inflate(&mut i, &first).unwrap(), block);
    let err = inflate(&mut i, &again).unwrap_err();
    assert!(matches!(err, InflateError::Corrupt(_)), "{err}");
    // A 9-bit compressor with takeover: every message decodes with a 9-bit inflater.
    let mut d = deflater(9, false);
    let mut i = inflater(9, false);
    for _ in 0..3 {
        let payload = deflate(&mut d, &block);
        assert_eq!(inflate(&mut i, &payload).unwrap(), block);
    }
}

#[test]
fn client_window_of_8_inflates_with_9() {
    let head = "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n\r\n";
    let request = parse_request(head.as_bytes(), 8).expect("parses");
    let params = *DeflateConfig::default()
        .negotiate(request.extensions())
        .unwrap()
        .params();
    assert_eq!(params.client_max_window_bits(), 8);
    let mut i = MessageInflater::new(&params, 1 << 20, INFLATE_CHUNK);
    assert_eq!(i.window_bits, 9);
    assert_eq!(inflate(&mut i, &HELLO_DEFLATED).unwrap(), HELLO);
}

#[test]
fn state_is_held_between_messages_only_with_takeover() {
    let config = DeflateConfig::default();
    let mut d = MessageDeflater::new(&params(12, true), &config);
    assert!(!d.should_compress(config.min_size() - 1) && d.should_compress(config.min_size()));
    let first = deflate(&mut d, &[b'z'; 200]);
    assert!(
        !d.is_allocated(),
        "without takeover the state goes back after the message"
    );
    assert_eq!(
        deflate(&mut d, &[b'z'; 200]),
        first,
        "a reset state compresses the same"
    );
    // Mid-message, or with context takeover, the state is held.
    let mut out = Vec::new();
    d.compress(b"abc", false, &mut out).unwrap();
    assert!(d.is_allocated());
    let mut kept = deflater(12, false);
    assert!(!kept.is_allocated(), "nothing before the first message");
    deflate(&mut kept, b"abc");
    assert!(kept.is_allocated());

    let mut i = inflater(12, true);
    assert_eq!(inflate(&mut i, &first).unwrap(), [b'z'; 200]);
    assert!(!i.is_allocated());
    assert_eq!(inflate(&mut i, &first).unwrap(), [b'z'; 200]);
    assert!(i.inflate(&first[..3], false, &mut Vec::new()).is_ok());
    assert!(i.is_allocated(), "held while a message is inflated");
    let mut kept = inflater(12, false);
    inflate(&mut kept, &first).unwrap();
    assert!(kept.is_allocated());
}

#[test]
fn server_window_of_8_sends_uncompressed_or_stored() {
    let mut d = deflater(8, false);
    assert!(
        !d.should_compress(1 << 20),
        "8 bits cannot be honoured by zlib: send uncompressed"
    );
    // Compressing anyway yields stored blocks (BTYPE 00), which refer to nothing.
    let message = b"Hello Hello Hello Hello Hello Hello Hello Hello";
    let payload = deflate(&mut d, message);
    assert_eq!(payload[0] & 0b110, 0, "stored block");
    assert!(payload.len() > message.len());
    assert_eq!(inflate(&mut inflater(15, false), &payload).unwrap(), message);
}
