//! The outgoing byte queue of one connection: whole frames in order, drained by the driver.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;
use std::sync::{Arc, OnceLock};

use crate::deflate::MessageDeflater;
use crate::frame::{encode_header, header_bytes, OpCode};

/// Frames are appended to the queue's last chunk so the driver writes few large chunks
/// instead of many small ones. A frame that fits the chunk's capacity is appended; one that
/// does not grows the chunk only up to this size, and past it starts a new chunk.
const COALESCE_LIMIT: usize = 64 * 1024;

/// The capacity a new chunk for small frames starts with.
const CHUNK_CAPACITY: usize = 4096;

/// The largest emptied chunk a thread keeps as its spare. Above `COALESCE_LIMIT`, so that a
/// large message's own chunk is reused too: freeing one per 64 KiB echo let the allocator
/// hand the pages back and fault them in again, once per read (`madvise`, 400,000 page
/// faults in 3 s in one run).
const SPARE_LIMIT: usize = 256 * 1024;

thread_local! {
    /// One emptied chunk per thread, for the next queue that needs one. A connection whose
    /// queue drains after every reply (an echo) then reuses the same buffer instead of
    /// allocating one per reply, and an idle connection still holds no chunk. At most one
    /// chunk of at most `SPARE_LIMIT` bytes per thread.
    static SPARE_CHUNK: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

/// A chunk with room for `capacity` bytes: the thread's spare if it has the room.
fn new_chunk(capacity: usize) -> Vec<u8> {
    let spare = SPARE_CHUNK.try_with(Cell::take).ok().flatten();
    match spare {
        Some(chunk) if chunk.capacity() >= capacity => chunk,
        other => {
            // Too small for this frame: it stays the spare.
            if let Some(chunk) = other {
                let _ = SPARE_CHUNK.try_with(|spare| spare.set(Some(chunk)));
            }
            Vec::with_capacity(capacity)
        }
    }
}

/// Keeps an emptied chunk as the thread's spare (replacing the one before) unless it is
/// larger than `SPARE_LIMIT`, which is freed.
fn recycle(chunk: Chunk) {
    if let Chunk::Owned(mut bytes) = chunk {
        if (CHUNK_CAPACITY..=SPARE_LIMIT).contains(&bytes.capacity()) {
            bytes.clear();
            // During thread teardown the slot may be gone: then the chunk is just freed.
            let _ = SPARE_CHUNK.try_with(|spare| spare.set(Some(bytes)));
        }
    }
}

/// A complete server frame encoded once and shared by every connection it is pushed to
/// (a broadcast), so N recipients cost one allocation, not N.
///
/// Recipients that negotiated permessage-deflate without server context takeover (the
/// default) share one compressed copy too: the first of them compresses the message and
/// the rest reuse the result.
///
/// ```
/// use eventum_core::SharedFrame;
/// let frame = SharedFrame::text("hello everyone");
/// assert_eq!(&frame.as_bytes()[..2], &[0x81, 14]);
/// let copy = frame.clone(); // a reference count, not a copy of the bytes
/// assert_eq!(copy.len(), 16);
/// ```
#[derive(Clone)]
pub struct SharedFrame(Arc<FrameBytes>);

struct FrameBytes {
    /// The encoded frame.
    bytes: Box<[u8]>,
    /// Where the payload starts in `bytes`.
    header_len: usize,
    opcode: OpCode,
    /// The message compressed on its own (RFC 7692), made once: the window bits it was
    /// compressed with, and the frame (`None` when compressing did not shrink it).
    deflated: OnceLock<(u8, Option<SharedFrame>)>,
}

impl SharedFrame {
    /// Encodes a text message as one unfragmented frame.
    pub fn text(text: &str) -> Self {
        Self::encode(OpCode::Text, false, text.as_bytes())
    }

    /// Encodes a binary message as one unfragmented frame.
    pub fn binary(data: &[u8]) -> Self {
        Self::encode(OpCode::Binary, false, data)
    }

    fn encode(opcode: OpCode, compressed: bool, payload: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(payload.len() + crate::frame::MAX_HEADER_LEN);
        let header_len = encode_header(&mut bytes, true, compressed, opcode, payload.len() as u64);
        bytes.extend_from_slice(payload);
        SharedFrame(Arc::new(FrameBytes {
            bytes: bytes.into(),
            header_len,
            opcode,
            deflated: OnceLock::new(),
        }))
    }

    /// The encoded frame, header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// Length of the encoded frame in bytes.
    pub fn len(&self) -> usize {
        self.0.bytes.len()
    }

    /// Always false: a frame has at least its 2-byte header.
    pub fn is_empty(&self) -> bool {
        self.0.bytes.is_empty()
    }

    /// The message, without the frame header.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.0.bytes[self.0.header_len..]
    }

    pub(crate) fn opcode(&self) -> OpCode {
        self.0.opcode
    }

    /// The message compressed on its own with `deflater` (which must have no context
    /// takeover), shared by every recipient: compressed by the first caller, reused by the
    /// rest. `None` when compressing does not shrink the message. A recipient whose window
    /// is smaller than the shared copy's gets a copy of its own.
    pub(crate) fn deflated(&self, deflater: &mut MessageDeflater) -> Option<SharedFrame> {
        let own_bits = deflater.window_bits();
        let (bits, frame) = self.0.deflated.get_or_init(|| (own_bits, self.deflate(deflater)));
        if *bits <= own_bits {
            frame.clone()
        } else {
            self.deflate(deflater)
        }
    }

    fn deflate(&self, deflater: &mut MessageDeflater) -> Option<SharedFrame> {
        let compressed = deflater.deflate_message(self.payload()).ok()??;
        Some(SharedFrame::encode(self.0.opcode, true, &compressed))
    }
}

impl PartialEq for SharedFrame {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SharedFrame {}

impl fmt::Debug for SharedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedFrame").field(&self.as_bytes()).finish()
    }
}

/// The bytes a connection has for the wire, borrowed from its output queue: write them
/// (all, or a prefix), then report how many were written with `transmitted`.
///
/// ```
/// use eventum_core::{Config, Connection};
/// use std::{io::IoSlice, sync::Arc, time::Instant};
///
/// let now = Instant::now();
/// let mut conn = Connection::new(Arc::new(Config::default()), now);
/// conn.handle_input(now, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); // not an upgrade: 400
/// let transmit = conn.poll_transmit();
/// let mut slices = [IoSlice::new(&[]); 16];
/// let filled = transmit.io_slices(&mut slices); // for write_vectored
/// assert_eq!(slices[..filled].iter().map(|s| s.len()).sum::<usize>(), transmit.len());
/// assert!(transmit.first().starts_with(b"HTTP/1.1 400 Bad Request\r\n")); // for write
/// let n = transmit.len();
/// conn.transmitted(n); // the transport took every byte
/// assert!(conn.poll_transmit().is_empty());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    out: &'a Outbound,
}

impl<'a> Transmit<'a> {
    pub(crate) fn new(out: &'a Outbound) -> Self {
        Transmit { out }
    }

    /// Total bytes waiting.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The first contiguous run of waiting bytes (empty when none), for a plain `write`.
    pub fn first(&self) -> &'a [u8] {
        self.out.front()
    }

    /// Fills `slices` with the waiting chunks in order, for a vectored write; returns how
    /// many slices were filled (fewer than waiting chunks when `slices` is short).
    pub fn io_slices(&self, slices: &mut [IoSlice<'a>]) -> usize {
        self.out.fill_io_slices(slices)
    }

    /// The waiting chunks in order.
    pub fn chunks(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.out.chunks()
    }
}

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Shared(SharedFrame),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(f) => f.as_bytes(),
        }
    }
}

/// Bytes waiting for the wire: sealed chunks, then the tail that new frames are written
/// to; `front_offset` bytes of the first of them are already written.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Chunks that come before `tail` and take no more frames: shared frames, and owned
    /// chunks that reached the coalescing limit. Usually empty, and then unallocated.
    sealed: VecDeque<Chunk>,
    /// Where frames are appended, after every sealed chunk. Without capacity whenever the
    /// queue is empty (its buffer is the thread's spare then), so an idle connection holds
    /// no chunk.
    tail: Vec<u8>,
    front_offset: usize,
    len: usize,
}

impl Outbound {
    /// Bytes queued and not yet consumed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one unmasked frame, with RSV1 set if its payload is `compressed`: the header
    /// is written in front of the payload in the same buffer, so the payload is copied
    /// once, from the caller into the queue.
    #[inline]
    pub(crate) fn push_frame(&mut self, opcode: OpCode, compressed: bool, payload: &[u8]) {
        let (header, header_len) = header_bytes(true, compressed, opcode, payload.len() as u64);
        let buf = self.tail_with_room(header.len() + payload.len());
        // The whole header array, then cut to the header's length: a copy of a constant
        // size is two moves, where one of `header_len` bytes is a call to `memcpy`.
        let start = buf.len();
        buf.extend_from_slice(&header);
        buf.truncate(start + header_len);
        buf.extend_from_slice(payload);
        self.len += header_len + payload.len();
    }

    /// Queues bytes that already form whole frames.
    pub(crate) fn push_raw(&mut self, bytes: &[u8]) {
        self.tail_with_room(bytes.len()).extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues what `write` appends to the queue's tail, with room for `capacity` bytes
    /// reserved first (an HTTP response, written in place); nothing when it fails.
    pub(crate) fn push_written<E>(
        &mut self,
        capacity: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let tail = self.tail_with_room(capacity);
        let before = tail.len();
        let written = write(tail);
        match written {
            Ok(()) => self.len += tail.len() - before,
            Err(_) => tail.truncate(before),
        }
        written
    }

    /// Queues an already encoded shared frame without copying it.
    pub(crate) fn push_shared(&mut self, frame: &SharedFrame) {
        if frame.len() < 512 {
            // Tiny frames are cheaper to copy than to keep as separate chunks.
            self.push_raw(frame.as_bytes());
            return;
        }
        self.seal_tail();
        self.len += frame.len();
        self.sealed.push_back(Chunk::Shared(frame.clone()));
    }

    /// The first contiguous run of pending bytes (empty when nothing is pending).
    pub(crate) fn front(&self) -> &[u8] {
        match self.sealed.front() {
            Some(chunk) => &chunk.bytes()[self.front_offset..],
            None => &self.tail[self.front_offset..],
        }
    }

    /// The pending chunks in order (the first without its written prefix).
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let offset = self.front_offset;
        let tail = (!self.tail.is_empty()).then_some(self.tail.as_slice());
        self.sealed
            .iter()
            .map(Chunk::bytes)
            .chain(tail)
            .enumerate()
            .map(move |(i, bytes)| if i == 0 { &bytes[offset..] } else { bytes })
    }

    /// Fills `slices` with the pending chunks in order, for a vectored write; returns how
    /// many were filled.
    pub(crate) fn fill_io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (bytes, slot) in self.chunks().zip(slices.iter_mut()) {
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        filled
    }

    /// Marks `n` bytes as written. `n` larger than what is pending consumes everything.
    pub(crate) fn consume(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        if self.len == 0 {
            // All written: the chunks go (the tail last, to be the thread's spare), and
            // with them the queue's own memory.
            self.front_offset = 0;
            std::mem::take(&mut self.sealed).into_iter().for_each(recycle);
            recycle(Chunk::Owned(std::mem::take(&mut self.tail)));
            return;
        }
        while let Some(front) = self.sealed.front() {
            let left = front.bytes().len() - self.front_offset;
            if n < left {
                break;
            }
            n -= left;
            self.front_offset = 0;
            if let Some(chunk) = self.sealed.pop_front() {
                recycle(chunk);
            }
        }
        // The rest is within the first chunk left (a sealed one, or the tail).
        self.front_offset += n;
    }

    /// Drops everything pending (the transport is being abandoned).
    pub(crate) fn clear(&mut self) {
        self.sealed = VecDeque::new();
        self.tail = Vec::new();
        self.front_offset = 0;
        self.len = 0;
    }

    /// The tail, with room for `extra` more bytes. The common case, a frame that fits the
    /// tail's capacity, is one comparison.
    #[inline]
    fn tail_with_room(&mut self, extra: usize) -> &mut Vec<u8> {
        if self.tail.capacity() - self.tail.len() < extra {
            self.make_room(extra);
        }
        &mut self.tail
    }

    /// A tail without the room: the thread's spare chunk (or a new one) for an empty tail,
    /// a new chunk after this one once it would grow past the coalescing limit, else the
    /// tail grown in place.
    #[cold]
    fn make_room(&mut self, extra: usize) {
        if !self.tail.is_empty() && self.tail.len() + extra > COALESCE_LIMIT {
            self.seal_tail();
        }
        if self.tail.is_empty() {
            self.tail = new_chunk(extra.max(CHUNK_CAPACITY));
        } else {
            self.tail.reserve(extra);
        }
    }

    /// Ends the tail: what is in it goes to the sealed chunks, and frames go to a new one.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.sealed.push_back(Chunk::Owned(std::mem::take(&mut self.tail)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut Outbound) -> Vec<u8> {
        let mut all = Vec::new();
        while !out.is_empty() {
            let front = out.front().to_vec();
            // Consume in uneven pieces to exercise partial writes.
            let n = (front.len() / 2).max(1);
            all.extend_from_slice(&front[..n]);
            out.consume(n);
        }
        all
    }

    #[test]
    fn frames_come_out_in_order_with_headers() {
        let mut out = Outbound::default();
        out.push_frame(OpCode::Text, false, b"Hello");
        out.push_frame(OpCode::Ping, false, b"");
        let big = vec![7u8; 100_000];
        out.push_frame(OpCode::Binary, false, &big);
        let shared = SharedFrame::binary(&[1u8; 1000]);
        out.push_shared(&shared);
        assert_eq!(out.len(), 7 + 2 + 10 + 100_000 + shared.len());
        let bytes = drain(&mut out);
        assert_eq!(&bytes[..7], b"\x81\x05Hello");
        assert_eq!(&bytes[7..9], b"\x89\x00");
        assert_eq!(&bytes[9..19], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xa0]);
        assert_eq!(&bytes[19 + 100_000..], shared.as_bytes());
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn small_frames_coalesce_into_one_chunk() {
        let mut out = Outbound::default();
        for _ in 0..100 {
            out.push_frame(OpCode::Text, false, b"abc");
        }
        assert_eq!(out.front().len(), 500);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(out.fill_io_slices(&mut slices), 1);
    }

    #[test]
    fn a_drained_chunk_is_reused_by_the_next_reply_on_the_thread() {
        let mut first = Outbound::default();
        first.push_frame(OpCode::Text, false, b"one");
        let chunk = first.front().as_ptr();
        first.consume(usize::MAX);
        // Another queue on the same thread (the next connection served) gets it.
        let mut second = Outbound::default();
        second.push_frame(OpCode::Text, false, b"two");
        assert_eq!(second.front().as_ptr(), chunk);
        assert_eq!(second.front(), b"\x81\x03two");
        // A frame too large for the spare gets a chunk of its own and leaves it be.
        second.consume(usize::MAX);
        let mut third = Outbound::default();
        third.push_frame(OpCode::Binary, false, &[5u8; 2 * CHUNK_CAPACITY]);
        assert_ne!(third.front().as_ptr(), chunk);
        first.push_frame(OpCode::Text, false, b"three");
        assert_eq!(first.front().as_ptr(), chunk);
        // A chunk beyond the spare's limit is freed when drained, not kept.
        first.consume(usize::MAX);
        let mut huge = Outbound::default();
        huge.push_frame(OpCode::Binary, false, &[6u8; SPARE_LIMIT + 1]);
        huge.consume(usize::MAX);
        second.push_frame(OpCode::Text, false, b"four");
        assert_eq!(second.front().as_ptr(), chunk);
        // A large message's own chunk, within it, is the next spare (a 64 KiB echo
        // allocates once, not per reply).
        second.consume(usize::MAX);
        let mut large = Outbound::default();
        large.push_frame(OpCode::Binary, false, &[7u8; COALESCE_LIMIT + 1]);
        let large_chunk = large.front().as_ptr();
        large.consume(usize::MAX);
        large.push_frame(OpCode::Binary, false, &[8u8; COALESCE_LIMIT + 1]);
        assert_eq!(large.front().as_ptr(), large_chunk);
    }

    #[test]
    fn vectored_slices_cover_everything_pending() {
        let mut out = Outbound::default();
        out.push_frame(OpCode::Text, false, b"a");
        out.push_shared(&SharedFrame::binary(&[9u8; 600]));
        out.push_frame(OpCode::Text, false, b"b");
        out.consume(1);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = out.fill_io_slices(&mut slices);
        let total: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert_eq!(total, out.len());
        out.consume(usize::MAX);
        assert!(out.is_empty());
        assert!(out.front().is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Frame(usize),
        Shared(usize),
        Raw(usize),
        Write(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Sizes on both sides of the shared-frame cut (512), the chunk capacity, the
        // coalescing limit and the thread's spare limit.
        let size = prop_oneof![
            12 => 0..600usize,
            4 => 3_000..5_000usize,
            2 => 60_000..70_000usize,
            1 => Just(SPARE_LIMIT + 1),
        ];
        prop_oneof![
            size.clone().prop_map(Op::Frame),
            size.clone().prop_map(Op::Shared),
            (0..100usize).prop_map(Op::Raw),
            (0..300_000usize).prop_map(Op::Write),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever is queued, in whatever order, comes out in that order through partial
        /// writes of any size, and `len`, `front`, `chunks` and the vectored slices agree.
        #[test]
        fn the_queue_writes_what_was_queued_in_order(ops in proptest::collection::vec(op(), 1..30)) {
            let mut out = Outbound::default();
            let mut model: Vec<u8> = Vec::new();
            let mut written: Vec<u8> = Vec::new();
            let mut sent = 0;
            for (i, op) in ops.into_iter().enumerate() {
                let fill = i as u8;
                match op {
                    Op::Frame(n) => {
                        let payload = vec![fill; n];
                        out.push_frame(OpCode::Binary, false, &payload);
                        encode_header(&mut model, true, false, OpCode::Binary, n as u64);
                        model.extend_from_slice(&payload);
                    }
                    Op::Shared(n) => {
                        let frame = SharedFrame::binary(&vec![fill; n]);
                        out.push_shared(&frame);
                        model.extend_from_slice(frame.as_bytes());
                    }
                    Op::Raw(n) => {
                        out.push_raw(&vec![fill; n]);
                        model.resize(model.len() + n, fill);
                    }
                    Op::Write(n) => {
                        let pending: Vec<u8> = out.chunks().flatten().copied().collect();
                        proptest::prop_assert_eq!(&pending[..], &model[sent..]);
                        let mut slices = [IoSlice::new(&[]); 64];
                        let filled = out.fill_io_slices(&mut slices);
                        let vectored: Vec<u8> = slices[..filled].iter().flat_map(|s| s.iter().copied()).collect();
                        proptest::prop_assert_eq!(&vectored[..], &pending[..vectored.len()]);
                        // A write takes some of the first chunk, or everything.
                        let front = out.front().to_vec();
                        proptest::prop_assert_eq!(&front[..], &pending[..front.len()]);
                        let n = if n % 2 == 0 { n.min(front.len()) } else { n };
                        written.extend_from_slice(&pending[..n.min(pending.len())]);
                        out.consume(n);
                        sent += n.min(pending.len());
                    }
                }
                proptest::prop_assert_eq!(out.len(), model.len() - sent);
                proptest::prop_assert_eq!(out.is_empty(), out.front().is_empty());
            }
            written.extend(out.chunks().flatten().copied());
            proptest::prop_assert_eq!(written, model);
        }
    }
}
