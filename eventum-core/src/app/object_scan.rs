//! One validating pass over a JSON object that finds the top-level fields the envelope
//! reads (`event`, `id`, `ack`, `data`) and hands back their values as written.
//!
//! serde_json reads the envelope generically: each key through a field visitor, each
//! value it skips through `IgnoredAny`. For the short messages events are, that generic
//! work cost about as much as the typed parse after it, so this module does the same
//! pass by hand: no allocation, no visitor, one loop over the bytes. It is as strict as
//! serde_json: it accepts exactly the texts `serde_json::from_str::<IgnoredAny>`
//! accepts (RFC 8259, with serde_json's string escape rules), which the `envelope` fuzz
//! target checks against serde_json itself.
//!
//! What it does not decide, it leaves to serde_json: keys and names with escapes, and the
//! values of `id` and `ack`, are decoded by serde_json from the text this pass located; a
//! value nested deeper than [`MAX_DEPTH`] containers makes the caller fall back to reading
//! the whole message with serde_json.
//!
//! It also keeps the fields of the event's payload in order ([`Entries`]): those of the
//! `data` object, or of the whole object when it has no `data` field. A typed handler's
//! payload is then deserialized from them without reading its object a second time
//! ([`super::scanned_object`]).

/// How many containers deep a top-level value may nest for this pass to follow it (one bit
/// of the `u128` container stack each).
pub(crate) const MAX_DEPTH: u32 = 128;

/// Why a text was not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unscanned {
    /// Not a JSON object: a syntax error, or another kind of JSON value.
    NotJson,
    /// A value nests deeper than [`MAX_DEPTH`]: serde_json has to read it.
    TooDeep,
}

/// A field's value as written in the message, and how many containers deep it nests (0 for
/// a string, number or literal; 1 for `[1, 2]`; 2 for `[[1]]`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw<'a> {
    pub(crate) text: &'a str,
    pub(crate) depth: u32,
}

/// How many of an object's fields [`Entries`] keeps: enough for the payloads events carry,
/// few enough for a list on the stack of every text message.
const KEPT_ENTRIES: usize = 8;

/// One field of an object: its key (the text between the quotes, which has no escapes) and
/// its value as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: Raw<'a>,
}

/// The payload's fields in order, as the scan found them, when it kept them all: at most
/// [`KEPT_ENTRIES`], each with a plain key. Start with [`Entries::default`]; the scan fills
/// it in place, so that the list is never moved.
#[derive(Debug)]
pub(crate) struct Entries<'a> {
    list: [Entry<'a>; KEPT_ENTRIES],
    len: usize,
    holds: Holds,
}

/// Whose fields an [`Entries`] list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// The top-level object's, so far.
    TopLevel,
    /// The `data` field's object's.
    Data,
    /// None kept: too many, a key with escapes, or a `data` field that is not an object.
    Nothing,
}

impl Default for Entries<'_> {
    fn default() -> Self {
        Entries {
            list: [Entry::default(); KEPT_ENTRIES],
            len: 0,
            holds: Holds::TopLevel,
        }
    }
}

impl<'a> Entries<'a> {
    /// Every field of the top-level object, in order, if the scan kept them all.
    pub(crate) fn top_level(&self) -> Option<&[Entry<'a>]> {
        self.holding(Holds::TopLevel)
    }

    /// Every field of the `data` field's object, in order, if the scan kept them all.
    pub(crate) fn data(&self) -> Option<&[Entry<'a>]> {
        self.holding(Holds::Data)
    }

    fn holding(&self, holds: Holds) -> Option<&[Entry<'a>]> {
        match self.holds == holds {
            true => self.list.get(..self.len),
            false => None,
        }
    }

    /// Starts over, holding `holds`' fields from now on.
    #[inline(always)]
    fn hold(&mut self, holds: Holds) {
        self.len = 0;
        self.holds = holds;
    }

    /// Keeps a field of the object whose fields the list holds.
    #[inline(always)]
    fn push(&mut self, key: &'a str, escaped: bool, value: Raw<'a>) {
        match self.list.get_mut(self.len) {
            Some(slot) if !escaped => {
                *slot = Entry {
                    key: unquoted(key),
                    value,
                };
                self.len += 1;
            }
            _ => self.holds = Holds::Nothing,
        }
    }
}

/// A key without escapes as its text between the quotes.
#[inline(always)]
fn unquoted(key: &str) -> &str {
    key.get(1..key.len().saturating_sub(1)).unwrap_or_default()
}

/// The envelope's fields of one object: the first value of each, if present.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields<'a> {
    pub(crate) event: Option<Raw<'a>>,
    pub(crate) id: Option<Raw<'a>>,
    pub(crate) ack: Option<Raw<'a>>,
    pub(crate) data: Option<Raw<'a>>,
    /// One of the four fields appeared twice, or a key's escapes do not decode to a string
    /// (a lone surrogate): serde_json's envelope would refuse the object.
    pub(crate) refused: bool,
}

impl<'a> Fields<'a> {
    /// Inlined into the scan's loop with the plain key's match; a key with escapes is decoded
    /// out of line.
    #[inline(always)]
    fn record(&mut self, key: &'a str, escaped: bool, value: Raw<'a>) {
        match escaped {
            false => self.record_named(unquoted(key), value),
            true => self.record_escaped(key, value),
        }
    }

    #[cold]
    fn record_escaped(&mut self, key: &'a str, value: Raw<'a>) {
        match serde_json::from_str::<String>(key) {
            Ok(name) => self.record_named(&name, value),
            Err(_) => self.refused = true,
        }
    }

    #[inline(always)]
    fn record_named(&mut self, name: &str, value: Raw<'a>) {
        let slot = match name {
            "event" => &mut self.event,
            "id" => &mut self.id,
            "ack" => &mut self.ack,
            "data" => &mut self.data,
            _ => return,
        };
        if slot.is_some() {
            self.refused = true;
        }
        slot.get_or_insert(value);
    }
}

/// Scans `text`, which must be one JSON object with nothing but whitespace around it, and
/// keeps its payload's fields in `entries`: those of its `data` object, or its own.
/// Inlined into the envelope's parse, like the reader's steps (see [`Reader`]).
#[inline(always)]
pub(crate) fn scan<'a>(text: &'a str, entries: &mut Entries<'a>) -> Result<Fields<'a>, Unscanned> {
    let mut reader = Reader { text, pos: 0 };
    let mut fields = Fields::default();
    reader.whitespace();
    reader.object(|reader, key, escaped| {
        let start = reader.pos;
        let depth = match key == r#""data""# {
            // The payload is this object: its fields replace the top level's.
            true if reader.peek() == Some(b'{') => {
                entries.hold(Holds::Data);
                let mut deepest = 0;
                reader.object(|reader, key, escaped| {
                    let start = reader.pos;
                    let depth = reader.value(MAX_DEPTH - 1)?;
                    entries.push(key, escaped, reader.raw(start, depth)?);
                    deepest = deepest.max(depth);
                    Ok(())
                })?;
                deepest + 1
            }
            data => {
                if data {
                    entries.hold(Holds::Nothing);
                }
                reader.value(MAX_DEPTH)?
            }
        };
        let value = reader.raw(start, depth)?;
        if entries.holds == Holds::TopLevel {
            entries.push(key, escaped, value);
        }
        fields.record(key, escaped, value);
        Ok(())
    })?;
    reader.whitespace();
    match reader.pos == text.len() {
        true => Ok(fields),
        false => Err(Unscanned::NotJson),
    }
}

/// Whether `byte` ends a string's plain run: a quote, a backslash or a control character
/// (which RFC 8259 §7 forbids unescaped).
#[inline(always)]
fn ends_run(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Where the first byte that [`ends_run`] is in eight bytes read as a little-endian word, if
/// any. Each test flags a byte by its top bit. `v - 0x01…` sets it in a zero byte of `v` (a
/// quote or backslash, after the XOR), `word - 0x20…` in a byte below 0x20; `& !v` and
/// `& !word` drop bytes of 0x80 and above, whose top bit was set already. A subtraction
/// borrows only out of a byte it flags, so a wrong flag can only sit above a true one and the
/// lowest flag is exact. (serde_json skips a string's plain run the same way.)
#[inline(always)]
fn run_end(word: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let flags = (quote | backslash | control) & TOPS;
    (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
}

/// A cursor over the text. Every position it slices the text at is just after an ASCII
/// byte, so always on a character boundary (inside a string's run it may step into a
/// character). Its methods are inlined into [`scan`], so the position stays in a
/// register: as calls, each step stored and reloaded it, and the pass cost as much as
/// serde_json's.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        self.pos += usize::from(matched);
        matched
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Result<(), Unscanned> {
        match self.eat(byte) {
            true => Ok(()),
            false => Err(Unscanned::NotJson),
        }
    }

    #[inline(always)]
    fn since(&self, start: usize) -> Result<&'a str, Unscanned> {
        self.text.get(start..self.pos).ok_or(Unscanned::NotJson)
    }

    /// The value read since `start`, `depth` containers deep.
    #[inline(always)]
    fn raw(&self, start: usize, depth: u32) -> Result<Raw<'a>, Unscanned> {
        Ok(Raw {
            text: self.since(start)?,
            depth,
        })
    }

    /// An object, from its `{` to its `}`: `field` reads each field's value, from just after
    /// the whitespace that follows its key's colon, given the key as written and whether it
    /// has escapes.
    #[inline(always)]
    fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a str, bool) -> Result<(), Unscanned>,
    ) -> Result<(), Unscanned> {
        self.expect(b'{')?;
        self.whitespace();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.whitespace();
            let (key, escaped) = self.key()?;
            self.whitespace();
            field(self, key, escaped)?;
            self.whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(()),
                _ => return Err(Unscanned::NotJson),
            }
        }
    }

    /// JSON's four whitespace bytes (RFC 8259 §2), not Unicode's.
    #[inline(always)]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// A key and its colon: the key's text with its quotes, and whether it has escapes.
    #[inline(always)]
    fn key(&mut self) -> Result<(&'a str, bool), Unscanned> {
        let start = self.pos;
        let escaped = self.string()?;
        let key = self.since(start)?;
        self.whitespace();
        self.expect(b':')?;
        Ok((key, escaped))
    }

    /// A string, from its opening quote; whether it has escapes. Escapes are checked for
    /// form only (`\u` and four hex digits), as serde_json checks a string it skips.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, Unscanned> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
            // The first byte that ends the plain run: eight bytes a step while eight are
            // left, then one at a time.
            let run = match rest.first_chunk::<8>() {
                Some(word) => match run_end(u64::from_le_bytes(*word)) {
                    Some(run) => run,
                    None => {
                        self.pos += 8;
                        continue;
                    }
                },
                None => rest.iter().position(|&b| ends_run(b)).ok_or(Unscanned::NotJson)?,
            };
            self.pos += run;
            match self.next() {
                Some(b'"') => return Ok(escaped),
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            for _ in 0..4 {
                                if !self.next().is_some_and(|b| b.is_ascii_hexdigit()) {
                                    return Err(Unscanned::NotJson);
                                }
                            }
                        }
                        _ => return Err(Unscanned::NotJson),
                    }
                }
                _ => return Err(Unscanned::NotJson),
            }
        }
    }

    /// A number (RFC 8259 §6): `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE] [+-]? [0-9]+)?`
    #[inline(always)]
    fn number(&mut self) -> Result<(), Unscanned> {
        self.eat(b'-');
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Unscanned::NotJson),
        }
        if self.eat(b'.') {
            self.digits1()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits1()?;
        }
        Ok(())
    }

    #[inline(always)]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline(always)]
    fn digits1(&mut self) -> Result<(), Unscanned> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(Unscanned::NotJson),
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Result<(), Unscanned> {
        let end = self.pos + word.len();
        match self.text.as_bytes().get(self.pos..end) == Some(word) {
            true => {
                self.pos = end;
                Ok(())
            }
            false => Err(Unscanned::NotJson),
        }
    }

    /// One value, containers included, without recursion: `open` holds one bit per open
    /// container (1 for an object). Returns how deep its containers nest, at most `limit`
    /// (at most [`MAX_DEPTH`]).
    #[inline(always)]
    fn value(&mut self, limit: u32) -> Result<u32, Unscanned> {
        debug_assert!(limit <= MAX_DEPTH, "one bit of the container stack per level");
        let (mut open, mut depth, mut deepest) = (0u128, 0u32, 0u32);
        loop {
            // A value is expected here.
            self.whitespace();
            match self.peek() {
                Some(bracket @ (b'{' | b'[')) => {
                    self.pos += 1;
                    if depth >= limit {
                        return Err(Unscanned::TooDeep);
                    }
                    let object = bracket == b'{';
                    open = (open << 1) | u128::from(object);
                    depth += 1;
                    deepest = deepest.max(depth);
                    self.whitespace();
                    let close = if object { b'}' } else { b']' };
                    if !self.eat(close) {
                        if object {
                            self.whitespace();
                            self.key()?;
                        }
                        continue;
                    }
                    open >>= 1;
                    depth -= 1;
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(Unscanned::NotJson),
            }
            // After a value: close containers until one continues with a comma.
            loop {
                if depth == 0 {
                    return Ok(deepest);
                }
                self.whitespace();
                let object = open & 1 == 1;
                match self.next() {
                    Some(b',') => {
                        if object {
                            self.whitespace();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Err(Unscanned::NotJson),
                }
                open >>= 1;
                depth -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::{collection, prelude::*};

    /// The scan, for tests of what it finds rather than of what it keeps.
    fn scan(text: &str) -> Result<Fields<'_>, Unscanned> {
        super::scan(text, &mut Entries::default())
    }

    fn raw(text: &str, depth: u32) -> Option<Raw<'_>> {
        Some(Raw { text, depth })
    }

    #[test]
    fn finds_the_envelope_fields_as_written() {
        let fields = scan(r#" { "event" : "join", "x": [1, {"a": null}], "data": {"room": [["r"]]}, "id": 7 } "#)
            .expect("valid");
        assert_eq!(fields.event, raw(r#""join""#, 0));
        assert_eq!(fields.data, raw(r#"{"room": [["r"]]}"#, 3));
        assert_eq!(fields.id, raw("7", 0));
        assert_eq!(fields.ack, None);
        assert!(!fields.refused);
    }

    #[test]
    fn escaped_keys_are_decoded_and_duplicates_refused() {
        let fields = scan(r#"{"\u0065vent": "a"}"#).expect("valid");
        assert_eq!(fields.event, raw(r#""a""#, 0));
        assert!(scan(r#"{"event": "a", "event": "b"}"#).expect("valid").refused);
        assert!(scan(r#"{"data": 1, "d\u0061ta": 2}"#).expect("valid").refused);
        // A lone surrogate is well-formed JSON but no string: serde_json refuses the key.
        assert!(scan(r#"{"\ud800": 1}"#).expect("valid").refused);
        // Other keys may repeat.
        assert!(!scan(r#"{"x": 1, "x": 2}"#).expect("valid").refused);
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        for text in [
            "",
            "{",
            "}",
            "{} {}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{a:1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":"unterminated}"#,
            "{\"a\":1}\u{a0}",
            r#"{"a":+1}"#,
            r#"{"a":.5}"#,
            r#"{"a":[}"#,
        ] {
            assert_eq!(scan(text), Err(Unscanned::NotJson), "{text:?}");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_err(),
                "serde agrees: {text:?}"
            );
        }
    }

    #[test]
    fn other_json_values_are_not_objects() {
        for text in ["[]", "1", r#""{}""#, "null"] {
            assert_eq!(scan(text), Err(Unscanned::NotJson), "{text:?}");
        }
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for text in [
            "{}",
            " {\t}\r\n",
            r#"{"a":-0.5e+10,"b":[true,false,null,"\"\\\/\b\f\n\r\t\u00e9"],"c":{}}"#,
            r#"{"a":[[],[{}],{"b":[]}]}"#,
            "{\"é\":\"ü\"}",
            r#"{"a":"\ud800"}"#,
        ] {
            assert!(scan(text).is_ok(), "{text:?}");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                "serde agrees: {text:?}"
            );
        }
    }

    #[test]
    fn nesting_is_followed_to_the_limit() {
        let nested = |n: usize| format!("{{\"data\":{}{}}}", "[".repeat(n), "]".repeat(n));
        let deepest = nested(MAX_DEPTH as usize);
        let fields = scan(&deepest).expect("valid");
        assert_eq!(fields.data.map(|raw| raw.depth), Some(MAX_DEPTH));
        assert_eq!(scan(&nested(MAX_DEPTH as usize + 1)), Err(Unscanned::TooDeep));
        // The same in a `data` object, whose fields the scan reads one by one.
        let in_object = |n: usize| format!("{{\"data\":{{\"x\":{}{}}}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        let deepest = in_object(MAX_DEPTH as usize);
        let fields = scan(&deepest).expect("valid");
        assert_eq!(fields.data.map(|raw| raw.depth), Some(MAX_DEPTH));
        assert_eq!(scan(&in_object(MAX_DEPTH as usize + 1)), Err(Unscanned::TooDeep));
    }

    /// The byte-at-a-time search `run_end` replaces, over the same eight bytes.
    fn run_end_bytewise(word: [u8; 8]) -> Option<usize> {
        word.iter().position(|&b| ends_run(b))
    }

    #[test]
    fn run_end_finds_the_first_stop_byte_at_every_position() {
        // Every byte value at every position, in plain runs of several kinds (the borrow
        // tricks depend on the bytes around), alone and with stop bytes after it.
        for at in 0..8 {
            for byte in 0..=255u8 {
                for filler in [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
                    let mut word = [filler; 8];
                    word[at] = byte;
                    for later in [None, Some(b'"'), Some(b'\\'), Some(0x1f), Some(0x00)] {
                        if let (Some(stop), true) = (later, at < 7) {
                            word[7] = stop;
                        }
                        let found = run_end(u64::from_le_bytes(word));
                        assert_eq!(found, run_end_bytewise(word), "{word:?}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn run_end_agrees_with_the_bytewise_search(word: [u8; 8]) {
            prop_assert_eq!(run_end(u64::from_le_bytes(word)), run_end_bytewise(word));
        }

        #[test]
        fn strings_scan_as_serde_json_reads_them(body in collection::vec(
            prop_oneof![Just(b'a'), Just(b'"'), Just(b'\\'), Just(0x1f_u8), Just(b'u'), Just(b'0'), 0u8..=255],
            0..40,
        )) {
            // A string field of any bytes (made valid UTF-8) at any length around the
            // eight-byte steps: the scan and serde_json accept exactly the same texts, and
            // without a quote inside, an accepted string ends at the last quote.
            let body = String::from_utf8_lossy(&body);
            let string = format!("\"{body}\"");
            let text = format!("{{\"event\":{string}}}");
            let scanned = scan(&text);
            let serde_accepts = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            prop_assert_eq!(scanned.is_ok(), serde_accepts, "{:?}", text);
            if let (Ok(fields), false) = (scanned, body.contains('"')) {
                prop_assert_eq!(fields.event.map(|raw| raw.text), Some(string.as_str()));
            }
        }
    }
}
