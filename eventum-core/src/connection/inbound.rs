//! The receive side: one buffer shared by the request head and the frames after it, and
//! the frame/message decoder that turns its bytes into steps.
//!
//! Frames are decoded lazily, one step per call, so that each reported message borrows
//! from the buffer and the state changes only as the application takes events (h11's
//! "no spooky time travel"). A complete unfragmented message is unmasked and validated in
//! place and never copied; fragments are appended to one message buffer (one copy).
//! A compressed message (permessage-deflate, RSV1 on its first frame) is unmasked in
//! place and inflated into the message buffer as its bytes arrive, at most one chunk per
//! step, with the size limit applied to the inflated bytes and UTF-8 checked on them.

use std::ops::Range;

use crate::close::{parse_close_payload, CloseCode};
use crate::deflate::{MessageInflater, Next};
use crate::error::ProtocolError;
use crate::frame::{apply_mask, decode_header, DecodeRules, FrameHeader, OpCode};
use crate::utf8::Utf8Validator;

/// Receive buffers larger than this are released when they empty, so idle connections
/// stay small.
const KEEP_CAPACITY: usize = 8 * 1024;

/// Where a reported message's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// In the receive buffer (an unfragmented message, unmasked in place).
    Rx,
    /// In the message buffer (a reassembled fragmented message).
    Message,
}

/// The outcome of one decoding step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// No complete step is possible with the bytes received.
    NeedMore,
    /// Progress was made (a header decoded, a fragment buffered); step again.
    Continue,
    Text(Range<usize>, Source),
    Binary(Range<usize>, Source),
    Ping(Range<usize>),
    Pong(Range<usize>),
    /// A valid close frame: its code and the range of its reason in the receive buffer.
    Close(Option<(CloseCode, Range<usize>)>),
    Error(ProtocolError),
}

#[derive(Debug, Clone, Copy)]
struct FrameProgress {
    header: FrameHeader,
    /// Payload bytes already unmasked (and validated, for text); for a compressed
    /// frame, already inflated.
    done: u64,
    /// Whether the payload stays in the receive buffer until the frame is complete
    /// (control frames and unfragmented messages) instead of streaming out of it.
    in_place: bool,
    /// A frame of a compressed message: inflated as it arrives.
    compressed: bool,
    /// Compressed frames only: payload bytes already unmasked (at least `done`).
    unmasked: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Inbound {
    pub(super) rx: Vec<u8>,
    /// Bytes of `rx` before this offset are consumed.
    pos: usize,
    frame: Option<FrameProgress>,
    /// The opcode of the fragmented message in progress.
    message: Option<OpCode>,
    message_buf: Vec<u8>,
    /// `message_buf` holds a message already reported; clear it before the next step.
    message_reported: bool,
    utf8: Utf8Validator,
    /// Inflates compressed messages once permessage-deflate is agreed; without it RSV1
    /// is a protocol error. Boxed: a connection without compression pays one pointer.
    inflater: Option<Box<MessageInflater>>,
    /// The message in progress is compressed.
    compressed: bool,
    pub(crate) eof: bool,
    /// `rx` is a driver's read buffer, lent for one input (see `lend`).
    lent: bool,
}

impl Inbound {
    /// Accepts compressed messages from now on (permessage-deflate was agreed).
    pub(crate) fn enable_compression(&mut self, inflater: MessageInflater) {
        self.inflater = Some(Box::new(inflater));
    }

    pub(crate) fn compression_enabled(&self) -> bool {
        self.inflater.is_some()
    }

    /// Appends received bytes, first compacting what was consumed.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.compact();
        self.rx.extend_from_slice(data);
    }

    /// Takes the bytes in `buffer` as received. When nothing is pending, the buffer itself
    /// becomes the receive buffer until [`give_back`](Self::give_back), so its bytes are
    /// decoded where they lie rather than copied (`buffer` holds the connection's own
    /// empty buffer meanwhile); otherwise they are appended, and `buffer` is emptied.
    pub(crate) fn lend(&mut self, buffer: &mut Vec<u8>) {
        if self.pos == self.rx.len() && !self.lent {
            self.rx.clear();
            self.pos = 0;
            std::mem::swap(&mut self.rx, buffer);
            self.lent = true;
        } else {
            self.push(buffer);
            buffer.clear();
        }
    }

    /// Ends a [`lend`](Self::lend): the bytes not consumed yet (the start of a frame) are
    /// copied into the connection's own buffer, and the driver's goes back to `buffer`,
    /// empty. Positions count from `pos`, so moving the unconsumed bytes is what
    /// `compact` does.
    pub(crate) fn give_back(&mut self, buffer: &mut Vec<u8>) {
        if !std::mem::take(&mut self.lent) {
            return;
        }
        buffer.extend_from_slice(&self.rx[self.pos..]);
        self.pos = 0;
        std::mem::swap(&mut self.rx, buffer);
        buffer.clear();
    }

    /// All bytes received and not consumed, from the start of the request head while
    /// the handshake is read.
    pub(crate) fn unconsumed(&self) -> &[u8] {
        &self.rx[self.pos..]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.rx.len());
    }

    /// Drops every byte received and any message in progress.
    pub(crate) fn discard_all(&mut self) {
        if self.lent {
            // Not ours to free: the driver gets it back, empty, from `give_back`.
            self.rx.clear();
        } else {
            self.rx = Vec::new();
        }
        self.pos = 0;
        self.frame = None;
        self.abandon_message();
    }

    /// Forgets a fragmented message in progress (we sent a close; data is discarded now,
    /// so the inflater is not used again).
    pub(crate) fn abandon_message(&mut self) {
        self.message = None;
        self.message_buf = Vec::new();
        self.utf8.reset();
        self.compressed = false;
    }

    /// Moves unconsumed bytes to the front and releases a large empty buffer.
    pub(crate) fn compact(&mut self) {
        if self.pos == self.rx.len() {
            self.pos = 0;
            if self.rx.capacity() > KEEP_CAPACITY {
                self.rx = Vec::new();
            } else {
                self.rx.clear();
            }
        } else if self.pos > 0 && self.pos >= self.rx.len() / 2 {
            self.rx.drain(..self.pos);
            self.pos = 0;
            // Give back the room a large frame needed once it is gone.
            if self.rx.capacity() > KEEP_CAPACITY && self.rx.capacity() > 4 * self.rx.len() {
                self.rx.shrink_to(self.rx.len().max(KEEP_CAPACITY));
            }
        }
    }

    /// Bytes buffered but not yet turned into events.
    pub(crate) fn pending_len(&self) -> usize {
        self.rx.len() - self.pos
    }

    pub(crate) fn rx_slice(&self, range: Range<usize>) -> &[u8] {
        &self.rx[range]
    }

    pub(crate) fn message_slice(&self, range: Range<usize>) -> &[u8] {
        &self.message_buf[range]
    }

    /// Decodes one step. `discarding` is set while we wait for the peer's close reply:
    /// data frames are skipped without buffering and only control frames are reported.
    ///
    /// The common case, a whole small frame (`whole_small_frame`), is decided here, inline
    /// in the caller; everything else is left to the general decoder out of line.
    #[inline]
    pub(crate) fn step(&mut self, max_frame: usize, max_message: usize, discarding: bool) -> Step {
        if !discarding {
            if let Some(step) = self.next_small_message(max_frame.min(max_message)) {
                return step;
            }
        }
        self.step_general(max_frame, max_message, discarding)
    }

    /// The step when it is a whole small frame (`whole_small_frame`) and nothing else is
    /// in progress; `None` leaves it to `step`. The caller must not be discarding.
    #[inline(always)]
    pub(crate) fn next_small_message(&mut self, limit: usize) -> Option<Step> {
        if self.message_reported {
            self.release_reported_message();
        }
        if self.frame.is_some() || self.message.is_some() {
            return None;
        }
        self.whole_small_frame(limit)
    }

    /// Clears the message buffer once its reassembled message has been reported.
    #[cold]
    fn release_reported_message(&mut self) {
        self.message_reported = false;
        self.message_buf.clear();
        if self.message_buf.capacity() > KEEP_CAPACITY {
            self.message_buf = Vec::new();
        }
    }

    /// `step` for everything but a whole small frame (which `next_small_message` has
    /// already tried, unless discarding).
    #[inline(never)]
    fn step_general(&mut self, max_frame: usize, max_message: usize, discarding: bool) -> Step {
        if self.message_reported {
            self.release_reported_message();
        }
        if discarding && self.message.is_some() {
            self.abandon_message();
        }
        if self.frame.is_none() {
            // A decoded header goes straight on to its payload: one step per small frame.
            let started = self.start_frame(max_frame, max_message, discarding);
            if !matches!(started, Step::Continue) {
                return started;
            }
        }
        match self.frame {
            None => Step::Continue,
            Some(progress) if discarding && !progress.header.opcode.is_control() => self.skip_payload(progress),
            Some(progress) if progress.in_place => self.advance_in_place(progress),
            Some(progress) if progress.compressed => self.advance_compressed(progress),
            Some(progress) => self.advance_fragment(progress),
        }
    }

    /// The common case in one go: a complete, unfragmented, uncompressed text or binary
    /// frame with a 7- or 16-bit length, masked, within `limit`. It is unmasked where it lies
    /// and reported without recording progress; anything else (including every frame this
    /// would have to refuse) is left to the general path, which reports the same frames the
    /// same way (the `reference` fuzz target checks the decoder against an RFC 6455 model).
    #[inline(always)]
    fn whole_small_frame(&mut self, limit: usize) -> Option<Step> {
        let input = &mut self.rx[self.pos..];
        // FIN set, RSV bits clear: 0x81 text, 0x82 binary; then the mask bit and a length
        // below 126, or 126 and a 16-bit length (127 announces a 64-bit one).
        let &[first, second, ..] = input.first_chunk::<2>()?;
        if !matches!(first, 0x81 | 0x82) || second & 0x80 == 0 {
            return None;
        }
        let (len, header_len) = match second & 0x7f {
            126 => {
                let &[_, _, high, low] = input.first_chunk::<4>()?;
                (usize::from(u16::from_be_bytes([high, low])), 8)
            }
            127 => return None,
            short => (usize::from(short), 6),
        };
        if len > limit || input.len() < header_len || input.len() - header_len < len {
            return None;
        }
        let (head, payload) = input.split_at_mut(header_len);
        let &[.., k0, k1, k2, k3] = head.last_chunk::<4>()?;
        apply_mask(&mut payload[..len], [k0, k1, k2, k3], 0);
        let range = self.pos + header_len..self.pos + header_len + len;
        self.pos = range.end;
        self.compressed = false;
        Some(match first {
            0x81 => Step::Text(range, Source::Rx),
            _ => Step::Binary(range, Source::Rx),
        })
    }

    fn start_frame(&mut self, max_frame: usize, max_message: usize, discarding: bool) -> Step {
        // Client frames must be masked; RSV1 is permessage-deflate's once it is agreed.
        let rules = DecodeRules {
            require_mask: true,
            allow_rsv1: self.inflater.is_some(),
        };
        let (header, header_len) = match decode_header(&self.rx[self.pos..], rules) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return Step::NeedMore,
            Err(e) => return Step::Error(e),
        };
        let control = header.opcode.is_control();
        let continuation = header.opcode == OpCode::Continuation;
        if header.rsv1 && (control || continuation) {
            return Step::Error(ProtocolError::MisplacedCompressionBit);
        }
        if !control && !discarding {
            if let Err(e) = self.check_data_frame(&header, max_frame, max_message) {
                return Step::Error(e);
            }
        }
        self.pos += header_len;
        if !control && !continuation {
            self.compressed = header.rsv1;
        }
        let compressed = !control && !discarding && self.compressed;
        let in_place = control || (header.fin && !continuation && !discarding && !compressed);
        if !control && !in_place && !discarding && !continuation {
            self.message = Some(header.opcode);
        }
        self.frame = Some(FrameProgress {
            header,
            done: 0,
            in_place,
            compressed,
            unmasked: 0,
        });
        Step::Continue
    }

    /// RFC 6455 §5.4 fragmentation rules and the size limits, decided from the header
    /// alone so an oversized message is refused before any of it is buffered.
    fn check_data_frame(
        &self,
        header: &FrameHeader,
        max_frame: usize,
        max_message: usize,
    ) -> Result<(), ProtocolError> {
        match (header.opcode, self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            _ => {}
        }
        if header.payload_len > max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge { limit: max_frame });
        }
        let compressed = if header.opcode == OpCode::Continuation {
            self.compressed
        } else {
            header.rsv1
        };
        if compressed {
            return Ok(()); // the inflater applies `max_message` to the inflated bytes
        }
        let so_far = if self.message.is_some() {
            self.message_buf.len() as u64
        } else {
            0
        };
        if so_far + header.payload_len > max_message as u64 {
            return Err(ProtocolError::MessageTooLarge { limit: max_message });
        }
        Ok(())
    }

    /// Unmasks (and validates) newly arrived payload bytes where they lie; reports the
    /// frame once all of it is there.
    fn advance_in_place(&mut self, mut progress: FrameProgress) -> Step {
        let header = progress.header;
        let available = (self.rx.len() - self.pos) as u64;
        let ready = available.min(header.payload_len);
        // A text frame that is all here at its first step needs no incremental check: it is
        // validated once, where its event is built, which fails just as early.
        let whole_at_once = progress.done == 0 && ready == header.payload_len;
        if ready > progress.done {
            let start = self.pos + progress.done as usize;
            let end = self.pos + ready as usize;
            let piece = &mut self.rx[start..end];
            if let Some(key) = header.mask {
                apply_mask(piece, key, progress.done);
            }
            if header.opcode == OpCode::Text && !whole_at_once {
                if let Err(e) = self.utf8.feed(piece) {
                    return Step::Error(e);
                }
            }
            progress.done = ready;
        }
        if progress.done < header.payload_len {
            self.frame = Some(progress);
            return Step::NeedMore;
        }
        self.frame = None;
        let range = self.pos..self.pos + header.payload_len as usize;
        self.pos = range.end;
        match header.opcode {
            OpCode::Text if whole_at_once => Step::Text(range, Source::Rx),
            OpCode::Text => match self.utf8.finish() {
                Ok(()) => Step::Text(range, Source::Rx),
                Err(e) => Step::Error(e),
            },
            OpCode::Binary => Step::Binary(range, Source::Rx),
            OpCode::Ping => Step::Ping(range),
            OpCode::Pong => Step::Pong(range),
            OpCode::Close => match parse_close_payload(&self.rx[range.clone()]) {
                Ok(None) => Step::Close(None),
                Ok(Some((code, _))) => Step::Close(Some((code, range.start + 2..range.end))),
                Err(e) => Step::Error(e),
            },
            // Continuation frames are never kept in place.
            OpCode::Continuation => Step::Continue,
        }
    }

    /// Moves the arrived part of a fragment into the message buffer.
    fn advance_fragment(&mut self, mut progress: FrameProgress) -> Step {
        let header = progress.header;
        let take = self.take_len(&progress);
        if take == 0 && progress.done < header.payload_len {
            return Step::NeedMore;
        }
        let piece = &mut self.rx[self.pos..self.pos + take];
        if let Some(key) = header.mask {
            apply_mask(piece, key, progress.done);
        }
        let opcode = self.message.unwrap_or(OpCode::Binary);
        if opcode == OpCode::Text {
            if let Err(e) = self.utf8.feed(piece) {
                return Step::Error(e);
            }
        }
        self.message_buf.extend_from_slice(piece);
        self.pos += take;
        progress.done += take as u64;
        if progress.done < header.payload_len {
            self.frame = Some(progress);
            return Step::NeedMore;
        }
        self.frame = None;
        if !header.fin {
            return Step::Continue;
        }
        self.report_message(opcode)
    }

    /// Ends the message in the message buffer and reports it (text once its UTF-8 is
    /// complete); the buffer is cleared at the next step.
    fn report_message(&mut self, opcode: OpCode) -> Step {
        self.message = None;
        self.compressed = false;
        self.message_reported = true;
        let range = 0..self.message_buf.len();
        match opcode {
            OpCode::Text => match self.utf8.finish() {
                Ok(()) => Step::Text(range, Source::Message),
                Err(e) => Step::Error(e),
            },
            _ => Step::Binary(range, Source::Message),
        }
    }

    /// Unmasks the arrived part of a compressed frame in place and inflates from it, at
    /// most one chunk of output per step.
    fn advance_compressed(&mut self, mut progress: FrameProgress) -> Step {
        let header = progress.header;
        let buffered = self.take_len(&progress);
        let unmasked = (progress.unmasked - progress.done) as usize;
        if buffered > unmasked {
            let piece = &mut self.rx[self.pos + unmasked..self.pos + buffered];
            if let Some(key) = header.mask {
                apply_mask(piece, key, progress.unmasked);
            }
            progress.unmasked = progress.done + buffered as u64;
        }
        let frame_here = progress.done + buffered as u64 == header.payload_len;
        let Some(inflater) = self.inflater.as_mut() else {
            // Unreachable: RSV1 decodes only with an inflater.
            return Step::Error(ProtocolError::ReservedBits);
        };
        let start = self.message_buf.len();
        let input = &self.rx[self.pos..self.pos + buffered];
        let inflated = match inflater.inflate(input, header.fin && frame_here, &mut self.message_buf) {
            Ok(inflated) => inflated,
            Err(e) => return Step::Error(e.into()),
        };
        self.pos += inflated.consumed;
        progress.done += inflated.consumed as u64;
        let opcode = self.message.unwrap_or(OpCode::Binary);
        if opcode == OpCode::Text {
            if let Err(e) = self.utf8.feed(&self.message_buf[start..]) {
                return Step::Error(e);
            }
        }
        match inflated.next {
            Next::Continue => {
                self.frame = Some(progress);
                Step::Continue
            }
            Next::NeedFrame if frame_here && progress.done == header.payload_len => {
                self.frame = None;
                Step::Continue
            }
            Next::NeedFrame => {
                self.frame = Some(progress);
                Step::NeedMore
            }
            Next::MessageEnd => {
                self.frame = None;
                self.report_message(opcode)
            }
        }
    }

    /// Skips a data frame's payload while discarding.
    fn skip_payload(&mut self, mut progress: FrameProgress) -> Step {
        if progress.in_place {
            // Bytes unmasked in place so far still sit in the buffer: drop them first.
            self.pos += progress.done as usize;
            progress.in_place = false;
        }
        let take = self.take_len(&progress);
        self.pos += take;
        progress.done += take as u64;
        if progress.done < progress.header.payload_len {
            self.frame = Some(progress);
            return Step::NeedMore;
        }
        self.frame = None;
        Step::Continue
    }

    /// How many payload bytes of the current frame are buffered and unprocessed.
    fn take_len(&self, progress: &FrameProgress) -> usize {
        let remaining = progress.header.payload_len - progress.done;
        // `min` with the buffered length keeps the value within usize.
        remaining.min((self.rx.len() - self.pos) as u64) as usize
    }
}
