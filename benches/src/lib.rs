//! Shared setup for eventum's benchmarks (`cargo bench -p eventum-benches`, see
//! `benches/README.md`): an in-memory stream for driving tungstenite without sockets,
//! client-frame builders, and the ratio report printed after a criterion run.
#![forbid(unsafe_code)]

pub mod report;

use std::borrow::Cow;
use std::io::{self, Read, Write};

use eventum_core::frame::{encode_client_frame, OpCode};

/// A browser-like upgrade request (Chromium's headers), used by every handshake workload.
pub const BROWSER_REQUEST: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\n\
Host: 127.0.0.1:9001\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:9001\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// The masking key of every benchmark client frame.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// `count` masked client frames, each one unfragmented message of `payload`.
pub fn client_frames(opcode: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (payload.len() + 14));
    for _ in 0..count {
        encode_client_frame(&mut out, true, opcode, payload, KEY);
    }
    out
}

/// A byte stream in memory: reads come from `input` (then `WouldBlock`, like an empty
/// non-blocking socket), writes are appended to `output`.
///
/// [`rewind`](Self::rewind) replays the same input, so one buffer of frames serves every
/// iteration of a benchmark.
#[derive(Debug, Default)]
pub struct MemStream {
    input: Cow<'static, [u8]>,
    pos: usize,
    /// Everything written so far.
    pub output: Vec<u8>,
}

impl MemStream {
    /// A stream that will read `input` once (a `&'static [u8]` is not copied).
    pub fn new(input: impl Into<Cow<'static, [u8]>>) -> Self {
        MemStream {
            input: input.into(),
            pos: 0,
            output: Vec::new(),
        }
    }

    /// Makes the whole input readable again and forgets the output.
    pub fn rewind(&mut self) {
        self.rewind_input();
        self.output.clear();
    }

    /// Makes the whole input readable again, keeping the output.
    pub fn rewind_input(&mut self) {
        self.pos = 0;
    }

    /// Replaces the input (read from its start) and forgets the output.
    pub fn set_input(&mut self, input: &[u8]) {
        let buf = self.input.to_mut();
        buf.clear();
        buf.extend_from_slice(input);
        self.rewind();
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON chat event of exactly `size` bytes (at least 64): repeated keys and varied values,
/// as events are, so it compresses as real ones do (about 3.5× at level 1 for 1 KiB).
pub fn json_message(size: usize) -> String {
    let mut out = String::from("{\"event\":\"messages\",\"data\":[");
    let mut i = 0u32;
    while out.len() + 80 < size {
        let n = i.wrapping_mul(2_654_435_761) % 100_000;
        out.push_str(&format!(
            "{{\"id\":{n},\"user\":\"user{}\",\"text\":\"message number {i}\"}},",
            n % 97
        ));
        i += 1;
    }
    out.push_str("{}]}");
    while out.len() < size {
        out.insert(out.len() - 2, ' ');
    }
    out
}

/// What a browser sends for `message` under permessage-deflate: raw DEFLATE (level 6, the
/// message on its own) without the `00 00 ff ff` tail of its sync flush (RFC 7692 §7.2.1).
pub fn client_deflate(message: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(message.len() + 64);
    loop {
        let done = usize::try_from(compress.total_in()).unwrap_or(message.len());
        let flushed = compress.compress_vec(&message[done..], &mut out, flate2::FlushCompress::Sync);
        assert!(flushed.is_ok(), "compressing in memory cannot fail");
        if compress.total_in() as usize == message.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(
        out.ends_with(&[0, 0, 0xff, 0xff]),
        "a sync flush ends with an empty stored block"
    );
    out.truncate(out.len() - 4);
    out
}

/// Inflates a compressed server message (the tail appended, RFC 7692 §7.2.2); `None` when
/// it is not valid DEFLATE.
pub fn inflate_message(payload: &[u8]) -> Option<Vec<u8>> {
    let input = [payload, &[0, 0, 0xff, 0xff][..]].concat();
    let mut decompress = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(input.len() * 4 + 64);
    loop {
        let done = usize::try_from(decompress.total_in()).ok()?;
        let before = out.len();
        decompress
            .decompress_vec(&input[done..], &mut out, flate2::FlushDecompress::Sync)
            .ok()?;
        if decompress.total_in() as usize == input.len() && out.len() < out.capacity() {
            return Some(out);
        }
        if out.len() == before && decompress.total_in() as usize == done {
            // No progress: done if all input was taken (the output had filled exactly).
            return (done == input.len()).then_some(out);
        }
        out.reserve(out.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_stream_reads_then_would_block_and_rewinds() {
        let mut s = MemStream::new(b"abcdef".to_vec());
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        assert_eq!(s.read(&mut buf).unwrap(), 2);
        assert_eq!(s.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        s.write_all(b"xy").unwrap();
        assert_eq!(s.output, b"xy");
        s.rewind();
        assert_eq!(s.remaining(), 6);
        assert!(s.output.is_empty());
    }

    #[test]
    fn json_messages_have_their_size_and_round_trip_through_deflate() {
        for size in [64, 128, 1024, 1025, 16 * 1024, 100_000] {
            let message = json_message(size);
            assert_eq!(message.len(), size);
            assert!(
                serde_json::from_str::<serde_json::Value>(&message).is_ok(),
                "{size}: JSON"
            );
            let compressed = client_deflate(message.as_bytes());
            assert!(compressed.len() < size, "{size}: compresses");
            assert_eq!(
                inflate_message(&compressed).as_deref(),
                Some(message.as_bytes()),
                "{size}"
            );
        }
        assert_eq!(inflate_message(&[0x06, 0x00]), None, "reserved block type");
    }

    #[test]
    fn client_frames_are_masked_and_repeated() {
        let frames = client_frames(OpCode::Text, b"hi", 3);
        assert_eq!(frames.len(), 3 * (2 + 4 + 2));
        assert_eq!(frames[0], 0x81);
        assert_eq!(frames[1], 0x82);
    }
}
