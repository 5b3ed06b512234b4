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
    fn client_frames_are_masked_and_repeated() {
        let frames = client_frames(OpCode::Text, b"hi", 3);
        assert_eq!(frames.len(), 3 * (2 + 4 + 2));
        assert_eq!(frames[0], 0x81);
        assert_eq!(frames[1], 0x82);
    }
}
