//! The parsed request head and the RFC 6455 §4.2.1 upgrade checks.

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::HandshakeError;

/// A parsed HTTP request head, owned, as the application sees it before deciding to accept
/// or refuse.
///
/// Header values are decoded as Latin-1 (each byte becomes the `char` with that code point),
/// so any byte sequence a client sends is kept losslessly. Header names are HTTP tokens and
/// therefore ASCII; lookups by name are case-insensitive.
///
/// What is read out of the head (the decoded query, the subprotocols, the extension
/// offers) is read on first use and kept: a handshake that never asks allocates nothing
/// for them.
///
/// ```
/// use eventum_core::handshake::Request;
///
/// /// Picks the subprotocol for a chat endpoint, or `None` to refuse.
/// fn choose(req: &Request) -> Option<&str> {
///     if req.path() != "/chat" || req.query_param("room").is_none() {
///         return None;
///     }
///     let _origin = req.header("origin");
///     req.subprotocols().iter().map(String::as_str).find(|p| *p == "chat.v2")
/// }
/// # let _ = choose;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, the target, then every header's name and (Latin-1 decoded) value, one
    /// after the other (but for lines of [`COMMON_HEADERS`]): the whole head in one
    /// allocation.
    text: Box<str>,
    /// Where the method ends and the target begins in `text`. (Offsets are `u32`: a head is
    /// shorter than `COMMON_MARK` bytes, so an idle connection keeps half the bytes for them.)
    method_end: u32,
    /// Where the target ends (and the first header name begins) in `text`.
    target_end: u32,
    /// Index of the `?` in the target, or its length when there is no query.
    path_end: u32,
    version: u8,
    /// Whether the `Upgrade` list holds `websocket`, read once when the head is parsed: the
    /// head's validation, the event's kind and `accept` each ask (the `bool` fits in the
    /// struct's padding).
    upgrade: bool,
    /// Each header as offsets into `text`: where its value starts (its name's end) and where
    /// its value ends. A name starts where the header before it ends (the first at
    /// `target_end`): the head is stored in order, without separators. A header that is a
    /// line of [`COMMON_HEADERS`] byte for byte is not in `text`: its first offset is
    /// `COMMON_MARK` plus its index there, its second where the text stands (so the next
    /// name still starts there).
    headers: Box<[[u32; 2]]>,
    /// What is decoded from the text on first use.
    read: ReadOnce<Box<ReadValues>>,
}

/// The values [`Request`] decodes from its text on first use and keeps: boxed together, as
/// most connections read none of them, and a connection keeps its request (inline, the three
/// would be 72 bytes of each idle connection). Each is a boxed slice, not a `Vec`: a
/// capacity field is 8 bytes kept for nothing.
#[derive(Debug, Clone, Default)]
struct ReadValues {
    query: ReadOnce<Box<[(String, String)]>>,
    subprotocols: ReadOnce<Box<[String]>>,
    extensions: ReadOnce<Box<[ExtensionOffer]>>,
}

/// A value read out of the request's text on first use and kept. Two requests with the
/// same text read the same values, so it takes no part in comparing them.
#[derive(Debug, Clone)]
struct ReadOnce<T>(OnceLock<T>);

impl<T> Default for ReadOnce<T> {
    fn default() -> Self {
        ReadOnce(OnceLock::new())
    }
}

impl<T> ReadOnce<T> {
    fn get_or_read(&self, read: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(read)
    }
}

impl<T> PartialEq for ReadOnce<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for ReadOnce<T> {}

impl Request {
    /// The request method as sent, e.g. `"GET"` (methods are case-sensitive).
    pub fn method(&self) -> &str {
        self.text.get(..self.method_end as usize).unwrap_or_default()
    }

    /// The raw request-target as sent, e.g. `"/chat?room=a%20b"`.
    pub fn target(&self) -> &str {
        self.text
            .get(self.method_end as usize..self.target_end as usize)
            .unwrap_or_default()
    }

    /// The target without its query, e.g. `"/chat"`; percent-decoding is not applied.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.get(..self.path_end as usize).unwrap_or(target)
    }

    /// The raw query after the first `?`, if there is a `?` (possibly empty).
    pub fn query_string(&self) -> Option<&str> {
        self.target().get(self.path_end as usize..)?.strip_prefix('?')
    }

    /// The decoded query pairs, in order and with repeats.
    ///
    /// `+` becomes a space and `%XX` the byte it encodes; invalid escapes are kept literally
    /// and bytes that are not UTF-8 are replaced by U+FFFD. A pair without `=` has an empty
    /// value; empty pairs (`a=1&&b=2`) are skipped.
    pub fn query(&self) -> &[(String, String)] {
        self.read_values().query.get_or_read(|| {
            self.query_string()
                .map(decode_query)
                .unwrap_or_default()
                .into_boxed_slice()
        })
    }

    /// The decoded value of the first query pair named `name` (compared exactly).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query().iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn http_version(&self) -> u8 {
        self.version
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The values of every header named `name` (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header as `(name as sent, value)`, in order, repeats kept.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = |from: u32, to: u32| self.text.get(from as usize..to as usize).unwrap_or_default();
        let starts = std::iter::once(self.target_end).chain(self.headers.iter().map(|&[_, end]| end));
        self.headers.iter().zip(starts).map(move |(&[value, end], name)| {
            match value
                .checked_sub(COMMON_MARK)
                .and_then(|i| COMMON_HEADERS.get(i as usize))
            {
                Some(&common) => common,
                None => (text(name, value), text(value, end)),
            }
        })
    }

    /// The subprotocols offered in `Sec-WebSocket-Protocol`, in order: comma lists across
    /// repeated headers, each item trimmed, empty items dropped.
    pub fn subprotocols(&self) -> &[String] {
        self.read_values()
            .subprotocols
            .get_or_read(|| self.subprotocol_offers().map(str::to_owned).collect())
    }

    /// The subprotocols as [`subprotocols`](Self::subprotocols) has them, read in place.
    pub(crate) fn subprotocol_offers(&self) -> impl Iterator<Item = &str> {
        self.header_all("sec-websocket-protocol")
            .flat_map(|v| v.split(','))
            .map(trim_ows)
            .filter(|p| !p.is_empty())
    }

    /// The extensions offered in `Sec-WebSocket-Extensions`, in order across repeated
    /// headers. Malformed items are skipped.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        self.read_values()
            .extensions
            .get_or_read(|| self.extension_offers().map(OfferText::to_owned).collect())
    }

    fn read_values(&self) -> &ReadValues {
        self.read.get_or_read(Box::default)
    }

    /// The extension offers as [`extensions`](Self::extensions) has them, read in place.
    pub(crate) fn extension_offers(&self) -> impl Iterator<Item = OfferText<'_>> {
        self.header_all("sec-websocket-extensions")
            .flat_map(|v| split_unquoted(v, b','))
            .filter_map(OfferText::parse)
    }

    /// Whether the `Upgrade` header list contains the token `websocket` (case-insensitive,
    /// across repeated headers and comma lists).
    ///
    /// This only says what the client asked for; the core checks the rest of RFC 6455
    /// §4.2.1 before the application sees an upgrade request.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The `Sec-WebSocket-Key` value (the first one, trimmed), if present.
    pub fn websocket_key(&self) -> Option<&str> {
        self.header("sec-websocket-key").map(trim_ows)
    }

    /// Whether any comma-list item of any `header` equals `token` case-insensitively.
    fn has_token(&self, header: &str, token: &str) -> bool {
        self.header_all(header)
            .flat_map(|v| v.split(','))
            .any(|item| trim_ows(item).eq_ignore_ascii_case(token))
    }
}

/// One extension offered in `Sec-WebSocket-Extensions` (RFC 6455 §9.1), e.g.
/// `permessage-deflate; client_max_window_bits`.
///
/// Quoted parameter values are unquoted (backslash escapes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    name: String,
    params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// The extension name as sent, e.g. `"permessage-deflate"`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters in order, each `(name, value)`; `None` for a parameter without `=`.
    pub fn params(&self) -> &[(String, Option<String>)] {
        &self.params
    }

    /// The first parameter named `name` (case-insensitive): `None` if absent,
    /// `Some(None)` if present without a value, `Some(Some(v))` with one.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

/// Parses a complete head (as delimited by [`HeadReader`](super::HeadReader)).
///
/// More than `max_headers` header fields is [`HandshakeError::TooManyHeaders`]; anything
/// httparse refuses, an incomplete head, or a target that is not origin-form (starting
/// with `/`) is [`HandshakeError::Malformed`].
pub(crate) fn parse_request(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
    // httparse's slots on the stack for the usual limit, so parsing allocates nothing.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let slots = match on_stack.get_mut(..max_headers) {
        Some(slots) => slots,
        None => {
            on_heap.resize(max_headers, httparse::EMPTY_HEADER);
            &mut on_heap[..]
        }
    };
    let mut parsed = httparse::Request::new(slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HandshakeError::Malformed("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders { limit: max_headers }),
        Err(e) => return Err(HandshakeError::Malformed(httparse_error_text(e))),
    }
    let incomplete = HandshakeError::Malformed("incomplete request line");
    let method = parsed.method.ok_or_else(|| incomplete.clone())?;
    let target = parsed.path.ok_or_else(|| incomplete.clone())?;
    let version = parsed.version.ok_or(incomplete)?;
    if !target.starts_with('/') {
        return Err(HandshakeError::Malformed("request target must be an absolute path"));
    }

    // First each header's mark: `COMMON_MARK` plus its line's index in COMMON_HEADERS, or
    // `AS_TEXT` for a header kept as text; the lines are compared once, here.
    let mut headers: Vec<[u32; 2]> = parsed
        .headers
        .iter()
        .map(|header| {
            let line = COMMON_HEADERS
                .iter()
                .position(|&(name, value)| header.name == name && header.value == value.as_bytes());
            [line.map_or(AS_TEXT, |index| COMMON_MARK + index as u32), 0]
        })
        .collect();
    // The whole head as one string (but for common lines): a Latin-1 byte above 0x7f takes
    // two bytes in UTF-8.
    let length = method.len()
        + target.len()
        + parsed
            .headers
            .iter()
            .zip(&headers)
            .filter(|(_, &[mark, _])| mark == AS_TEXT)
            .map(|(h, _)| h.name.len() + h.value.len() + h.value.iter().filter(|&&b| b >= 0x80).count())
            .sum::<usize>();
    // Offsets are u32 below `COMMON_MARK`: a head that long never fits `max_head_bytes` in
    // practice, but the limit is the user's to set.
    let offset = |at: usize| match u32::try_from(at) {
        Ok(at) if at < COMMON_MARK => Ok(at),
        _ => Err(HandshakeError::HeadTooLarge {
            limit: COMMON_MARK as usize,
        }),
    };
    offset(length)?;
    let mut text = String::with_capacity(length);
    text.push_str(method);
    let method_end = offset(text.len())?;
    text.push_str(target);
    let target_end = offset(text.len())?;
    // Then the offsets: a common line's mark stays, and its end is where the text stands.
    for (header, [value, end]) in parsed.headers.iter().zip(&mut headers) {
        if *value == AS_TEXT {
            text.push_str(header.name);
            *value = offset(text.len())?;
            push_latin1(&mut text, header.value);
        }
        *end = offset(text.len())?;
    }

    let mut request = Request {
        // Both were reserved at their exact length, so neither moves.
        text: text.into_boxed_str(),
        method_end,
        target_end,
        path_end: offset(target.find('?').unwrap_or(target.len()))?,
        version,
        upgrade: false,
        headers: headers.into_boxed_slice(),
        read: ReadOnce::default(),
    };
    request.upgrade = request.has_token("upgrade", "websocket");
    Ok(request)
}

/// Header lines nearly every WebSocket client sends exactly so (RFC 6455's three, and what
/// browsers add), as sent: a request keeps an index for them, not their text. The
/// connection keeps its request for its life, and at the load generator's request these
/// are half of the head's text (56 of 114 bytes).
const COMMON_HEADERS: [(&str, &str); 6] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
];

/// The first offset of a header of [`COMMON_HEADERS`]: index 0. Offsets into the text stay
/// below it (a longer head is refused as too large).
const COMMON_MARK: u32 = u32::MAX - COMMON_HEADERS.len() as u32;

/// `parse_request`'s first mark for a header kept as text, until its offset is known: above
/// every common line's mark, and never left in a parsed request.
const AS_TEXT: u32 = u32::MAX;

/// httparse slots kept on the stack: the default [`Config::max_headers`](crate::Config::max_headers).
const STACK_HEADERS: usize = 100;

/// The RFC 6455 §4.2.1 checks for a request whose [`Request::is_websocket_upgrade`] is true,
/// in this order: GET, HTTP/1.1, `Host`, `Connection: upgrade`, `Sec-WebSocket-Version: 13`
/// (every such header, trimmed), exactly one `Sec-WebSocket-Key` that is padded standard
/// base64 of 16 bytes.
pub(crate) fn validate_upgrade(req: &Request) -> Result<(), HandshakeError> {
    if req.method() != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.http_version() != 1 {
        return Err(HandshakeError::NotHttp11);
    }
    if req.header("host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !req.has_token("connection", "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    let mut versions = req.header_all("sec-websocket-version").peekable();
    if versions.peek().is_none() || !versions.all(|v| trim_ows(v) == "13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = req.header_all("sec-websocket-key").map(trim_ows);
    let key = keys.next().ok_or(HandshakeError::MissingKey)?;
    // 16 bytes are 24 base64 characters with padding; check the length before decoding.
    let valid = keys.next().is_none()
        && key.len() == 24
        && STANDARD.decode_slice(key, &mut [0u8; 18]).is_ok_and(|len| len == 16);
    if !valid {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(())
}

fn httparse_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Appends `bytes` as Latin-1: each byte becomes the `char` with that code point.
fn push_latin1(text: &mut String, bytes: &[u8]) {
    if bytes.is_ascii() {
        // ASCII reads the same in both: the common case, copied in one go.
        text.push_str(std::str::from_utf8(bytes).unwrap_or_default());
    } else {
        text.extend(bytes.iter().map(|&b| char::from(b)));
    }
}

/// Trims HTTP optional whitespace (space and tab) only; `str::trim` would also eat
/// Latin-1 characters such as U+0085 and U+00A0.
pub(super) fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i..i + 2).and_then(hex_pair) {
                Some(decoded) => {
                    out.push(decoded);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: &u8| char::from(*b).to_digit(16);
    match pair {
        [hi, lo] => Some(u8::try_from(digit(hi)? * 16 + digit(lo)?).ok()?),
        _ => None,
    }
}

/// Splits `s` at the first `sep` outside a quoted string (a backslash escapes the next
/// character inside quotes; an unterminated quote runs to the end of `s`): what comes
/// before, and what comes after if there was a `sep`.
///
/// `sep` is an ASCII byte. The scan goes by bytes, not `char`s: `sep`, `"` and `\` are
/// ASCII and no byte of a multi-byte character is, so it splits where a `char` scan would
/// (an escaped multi-byte character leaves its continuation bytes to the loop, which
/// passes over them).
fn split_once_unquoted(s: &str, sep: u8) -> (&str, Option<&str>) {
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b if b == sep && !quoted => return (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
            _ => {}
        }
    }
    (s, None)
}

/// Splits `s` at every `sep` outside quoted strings (see [`split_once_unquoted`]).
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let (item, after) = split_once_unquoted(rest?, sep);
        rest = after;
        Some(item)
    })
}

/// One well-formed item of `Sec-WebSocket-Extensions`, `name *( ";" param )`, read in
/// place from the request's text: only a quoted value with backslash escapes is copied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OfferText<'a> {
    name: &'a str,
    /// What follows the name's `;`, if anything does.
    params: Option<&'a str>,
}

impl<'a> OfferText<'a> {
    /// `None` for an empty or malformed item (a name or a parameter that is not a token,
    /// a value that is neither a token nor a quoted string).
    fn parse(item: &'a str) -> Option<Self> {
        let (name, params) = split_once_unquoted(item, b';');
        let offer = OfferText {
            name: Some(trim_ows(name)).filter(|n| is_token(n))?,
            params,
        };
        let well_formed = params.is_none_or(|p| split_unquoted(p, b';').all(|param| parse_param(param).is_some()));
        well_formed.then_some(offer)
    }

    /// The extension name as sent.
    pub(crate) fn name(&self) -> &'a str {
        self.name
    }

    /// The well-formed parameters in order, each `(name, value)`; after [`parse`](Self::parse)
    /// accepted the item, that is all of them.
    pub(crate) fn params(&self) -> impl Iterator<Item = (&'a str, Option<Cow<'a, str>>)> {
        self.params
            .into_iter()
            .flat_map(|p| split_unquoted(p, b';'))
            .map_while(parse_param)
    }

    fn to_owned(self) -> ExtensionOffer {
        ExtensionOffer {
            name: self.name.to_owned(),
            params: self
                .params()
                .map(|(k, v)| (k.to_owned(), v.map(Cow::into_owned)))
                .collect(),
        }
    }
}

/// One extension parameter, `token [ "=" ( token / quoted-string ) ]` with optional
/// whitespace around each part, as `(name, value)`; `None` if it is not that.
fn parse_param(param: &str) -> Option<(&str, Option<Cow<'_, str>>)> {
    let param = trim_ows(param);
    let (key, value) = match param.split_once('=') {
        Some((k, v)) => (trim_ows(k), Some(parse_param_value(trim_ows(v))?)),
        None => (param, None),
    };
    is_token(key).then_some((key, value))
}

/// A token, or a quoted-string with its quotes and backslash escapes removed.
fn parse_param_value(value: &str) -> Option<Cow<'_, str>> {
    let Some(inner) = value.strip_prefix('"') else {
        return is_token(value).then_some(Cow::Borrowed(value));
    };
    if let Some(unquoted) = inner.strip_suffix('"').filter(|u| !u.contains(['\\', '"'])) {
        return Some(Cow::Borrowed(unquoted));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(Cow::Owned(out)),
            c => out.push(c),
        }
    }
    None // unterminated
}

/// Whether `s` is a non-empty RFC 7230 token.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RFC_SAMPLE: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(head: &str) -> Request {
        parse_request(head.as_bytes(), 32).expect("parses")
    }

    /// A valid upgrade request with `edit` applied to its lines.
    fn upgrade_with(edit: impl FnOnce(&mut Vec<&'static str>)) -> Request {
        let mut lines = vec![
            "GET /chat HTTP/1.1",
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        edit(&mut lines);
        parse(&format!("{}\r\n\r\n", lines.join("\r\n")))
    }

    fn without(name: &'static str) -> impl FnOnce(&mut Vec<&'static str>) {
        move |lines| lines.retain(|l| !l.starts_with(name))
    }

    fn replace(name: &'static str, line: &'static str) -> impl FnOnce(&mut Vec<&'static str>) {
        move |lines| {
            for l in lines.iter_mut().filter(|l| l.starts_with(name)) {
                *l = line;
            }
        }
    }

    fn push(line: &'static str) -> impl FnOnce(&mut Vec<&'static str>) {
        move |lines| lines.push(line)
    }

    fn check(req: &Request) -> Result<(), HandshakeError> {
        assert!(req.is_websocket_upgrade());
        validate_upgrade(req)
    }

    #[test]
    fn rfc_sample_request() {
        let req = parse(RFC_SAMPLE);
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat");
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query_string(), None);
        assert!(req.query().is_empty());
        assert_eq!(req.http_version(), 1);
        assert_eq!(req.header("HOST"), Some("server.example.com"));
        assert_eq!(req.header("origin"), Some("http://example.com"));
        assert_eq!(req.headers().count(), 7);
        assert_eq!(req.headers().next(), Some(("Host", "server.example.com")));
        assert_eq!(req.subprotocols(), ["chat", "superchat"]);
        assert!(req.extensions().is_empty());
        assert!(req.is_websocket_upgrade());
        assert_eq!(req.websocket_key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(validate_upgrade(&req), Ok(()));
    }

    #[test]
    fn header_values_are_latin1_and_repeats_kept() {
        let head = b"GET / HTTP/1.1\r\nX-A: caf\xe9\r\nx-a: \x80\xff\r\nX-B: b\r\n\r\n";
        let req = parse_request(head, 8).expect("parses");
        assert_eq!(req.header("x-a"), Some("caf\u{e9}"));
        assert_eq!(req.header_all("X-A").collect::<Vec<_>>(), ["caf\u{e9}", "\u{80}\u{ff}"]);
        assert_eq!(
            req.headers().collect::<Vec<_>>(),
            [("X-A", "caf\u{e9}"), ("x-a", "\u{80}\u{ff}"), ("X-B", "b")]
        );
        assert_eq!(req.header("missing"), None);
    }

    #[test]
    fn not_an_upgrade() {
        let req = parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!req.is_websocket_upgrade());
        assert_eq!(req.websocket_key(), None);
        let req = parse("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n");
        assert!(!req.is_websocket_upgrade());
    }

    #[test]
    fn upgrade_token_is_case_insensitive_in_lists_and_repeats() {
        assert!(upgrade_with(replace("Upgrade", "Upgrade: WebSocket")).is_websocket_upgrade());
        assert!(upgrade_with(replace("Upgrade", "upgrade: h2c, websocket")).is_websocket_upgrade());
        let repeated = upgrade_with(|l| {
            replace("Upgrade", "Upgrade: h2c")(l);
            l.push("UPGRADE:  WEBSOCKET ");
        });
        assert!(repeated.is_websocket_upgrade());
        assert_eq!(validate_upgrade(&repeated), Ok(()));
    }

    #[test]
    fn method_not_get() {
        let req = parse(&RFC_SAMPLE.replacen("GET", "POST", 1));
        assert_eq!(check(&req), Err(HandshakeError::MethodNotGet));
        let req = parse(&RFC_SAMPLE.replacen("GET", "get", 1));
        assert_eq!(check(&req), Err(HandshakeError::MethodNotGet));
    }

    #[test]
    fn not_http11() {
        let req = parse(&RFC_SAMPLE.replacen("HTTP/1.1", "HTTP/1.0", 1));
        assert_eq!(req.http_version(), 0);
        assert_eq!(check(&req), Err(HandshakeError::NotHttp11));
    }

    #[test]
    fn missing_host() {
        let req = upgrade_with(without("Host"));
        assert_eq!(check(&req), Err(HandshakeError::MissingHost));
    }

    #[test]
    fn connection_must_list_upgrade() {
        let ok = [
            "Connection: keep-alive, Upgrade",
            "connection: UPGRADE",
            "Connection: keep-alive,upgrade ,x",
        ];
        for line in ok {
            assert_eq!(check(&upgrade_with(replace("Connection", line))), Ok(()), "{line}");
        }
        let two = upgrade_with(|l| {
            replace("Connection", "Connection: keep-alive")(l);
            l.push("Connection: Upgrade");
        });
        assert_eq!(check(&two), Ok(()));

        let bad = HandshakeError::ConnectionNotUpgrade;
        assert_eq!(check(&upgrade_with(without("Connection"))), Err(bad.clone()));
        let not_token = replace("Connection", "Connection: keep-alive, upgraded");
        assert_eq!(check(&upgrade_with(not_token)), Err(bad));
    }

    #[test]
    fn version_must_be_13() {
        let unsupported = Err(HandshakeError::UnsupportedVersion);
        let version = |line| check(&upgrade_with(replace("Sec-WebSocket-Version", line)));
        assert_eq!(version("Sec-WebSocket-Version: 8"), unsupported);
        assert_eq!(version("Sec-WebSocket-Version: 13, 8"), unsupported);
        assert_eq!(version("Sec-WebSocket-Version: 013"), unsupported);
        assert_eq!(version("sec-websocket-version:  13 "), Ok(()));
        assert_eq!(check(&upgrade_with(without("Sec-WebSocket-Version"))), unsupported);
        let repeat = |line| check(&upgrade_with(push(line)));
        assert_eq!(repeat("Sec-WebSocket-Version: 13"), Ok(()));
        assert_eq!(repeat("Sec-WebSocket-Version: 8"), unsupported);
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
    }

    #[test]
    fn missing_key() {
        let req = upgrade_with(without("Sec-WebSocket-Key"));
        assert_eq!(check(&req), Err(HandshakeError::MissingKey));
    }

    #[test]
    fn invalid_key() {
        let invalid = Err(HandshakeError::InvalidKey);
        let key = |line| check(&upgrade_with(replace("Sec-WebSocket-Key", line)));
        // 15 and 17 bytes.
        assert_eq!(key("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"), invalid);
        assert_eq!(key("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="), invalid);
        assert_eq!(key("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="), Ok(()));
        // Not base64, unpadded, URL-safe alphabet, empty.
        assert_eq!(key("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="), invalid);
        assert_eq!(key("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA"), invalid);
        assert_eq!(key("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA-_=="), invalid);
        assert_eq!(key("Sec-WebSocket-Key:"), invalid);
        let twice = push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(check(&upgrade_with(twice)), invalid);
    }

    #[test]
    fn validation_order() {
        let req = parse("POST / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(check(&req), Err(HandshakeError::MethodNotGet));
        let req = parse("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(check(&req), Err(HandshakeError::NotHttp11));
        let req = parse("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(check(&req), Err(HandshakeError::MissingHost));
        let req = parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(check(&req), Err(HandshakeError::ConnectionNotUpgrade));
        let req = upgrade_with(|l| {
            without("Sec-WebSocket-Version")(l);
            without("Sec-WebSocket-Key")(l);
        });
        assert_eq!(check(&req), Err(HandshakeError::UnsupportedVersion));
    }

    #[test]
    fn malformed_requests() {
        let malformed = |head: &[u8]| match parse_request(head, 8) {
            Err(HandshakeError::Malformed(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(head)),
        };
        malformed(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n");
        malformed(b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n");
        malformed(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
        malformed(b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n");
        malformed(b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n");
        malformed(b"GET /\xff HTTP/1.1\r\n\r\n");
        malformed(b"GET / HTTP/1.1\r\nHost: a\r\n");
        malformed(b"\r\n\r\n");
        malformed(b"");
        assert_eq!(
            parse_request(b"GET * HTTP/1.1\r\n\r\n", 8).err(),
            Some(HandshakeError::Malformed("request target must be an absolute path"))
        );
    }

    #[test]
    fn header_count_limit() {
        let head = |n: usize| {
            let headers: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
            format!("GET / HTTP/1.1\r\n{headers}\r\n")
        };
        assert_eq!(parse_request(head(5).as_bytes(), 5).map(|r| r.headers().count()), Ok(5));
        assert_eq!(
            parse_request(head(6).as_bytes(), 5).err(),
            Some(HandshakeError::TooManyHeaders { limit: 5 })
        );
        assert!(parse_request(head(0).as_bytes(), 0).is_ok());
        assert_eq!(
            parse_request(head(1).as_bytes(), 0).err(),
            Some(HandshakeError::TooManyHeaders { limit: 0 })
        );
    }

    #[test]
    fn query_decoding() {
        let req = parse("GET /a%2Fb/c?room=a%20b&x=1+2&x=%zz%4&flag&&caf%C3%A9=%E9&=v&k=a=b HTTP/1.1\r\n\r\n");
        assert_eq!(req.path(), "/a%2Fb/c");
        assert_eq!(
            req.query_string(),
            Some("room=a%20b&x=1+2&x=%zz%4&flag&&caf%C3%A9=%E9&=v&k=a=b")
        );
        let pairs: Vec<(&str, &str)> = req.query().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("room", "a b"),
                ("x", "1 2"),
                ("x", "%zz%4"),
                ("flag", ""),
                ("caf\u{e9}", "\u{fffd}"),
                ("", "v"),
                ("k", "a=b"),
            ]
        );
        assert_eq!(req.query_param("x"), Some("1 2"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("nope"), None);

        let empty = parse("GET /p? HTTP/1.1\r\n\r\n");
        assert_eq!((empty.path(), empty.query_string()), ("/p", Some("")));
        assert!(empty.query().is_empty());
        let question = parse("GET /p?a?b=c%3f HTTP/1.1\r\n\r\n");
        assert_eq!(question.query_param("a?b"), Some("c?"));
        // Separators sent encoded are data: decoded after the split, never split on.
        let encoded = parse("GET /p?a%26b%3Dc=d%26e HTTP/1.1\r\n\r\n");
        assert_eq!(encoded.query_param("a&b=c"), Some("d&e"));
        assert_eq!(encoded.query().len(), 1);
    }

    #[test]
    fn subprotocol_lists() {
        let req = parse(
            "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a, ,b ,\r\nX: y\r\n\
             sec-websocket-protocol: c\r\nSec-WebSocket-Protocol:\r\n\
             Sec-WebSocket-Protocol: a\r\n\r\n",
        );
        assert_eq!(req.subprotocols(), ["a", "b", "c", "a"]);
    }

    #[test]
    fn extension_offers() {
        let req = parse(
            "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate; \
             client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\"\r\n\
             sec-websocket-extensions: x-foo ; a = 1 ; b=\"q\\\"u,o;te\" ; c\r\n\r\n",
        );
        let ext = req.extensions();
        assert_eq!(ext.len(), 3);
        assert_eq!(ext[0].name(), "permessage-deflate");
        assert_eq!(ext[0].params(), [("client_max_window_bits".into(), None)]);
        assert_eq!(ext[0].param("CLIENT_MAX_WINDOW_BITS"), Some(None));
        assert_eq!(ext[0].param("server_max_window_bits"), None);
        assert_eq!(ext[1].param("server_max_window_bits"), Some(Some("10")));
        assert_eq!(ext[2].name(), "x-foo");
        assert_eq!(
            ext[2].params(),
            [
                ("a".into(), Some("1".into())),
                ("b".into(), Some("q\"u,o;te".into())),
                ("c".into(), None),
            ]
        );
    }

    #[test]
    fn malformed_extension_items_are_skipped() {
        let req = parse(
            "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: , a; =1, b c, d; p=\"x\"y, \
             e; p=\"open, f; p=, g;, h\r\n\
             Sec-WebSocket-Extensions: \"i\", j; k=l\r\n\r\n",
        );
        let names: Vec<&str> = req.extensions().iter().map(ExtensionOffer::name).collect();
        // "e; p=\"open, f; ..." swallows the rest of its header as one unterminated quote.
        assert_eq!(names, ["j"]);
        let req = parse("GET / HTTP/1.1\r\nSec-WebSocket-Extensions: g;, h\r\n\r\n");
        let names: Vec<&str> = req.extensions().iter().map(ExtensionOffer::name).collect();
        assert_eq!(names, ["h"]);
    }

    /// [`split_once_unquoted`] as it was written first, one `char` at a time: the reference
    /// for the byte scan.
    fn split_once_by_char(s: &str, sep: char) -> (&str, Option<&str>) {
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => return (&s[..i], Some(&s[i + c.len_utf8()..])),
                _ => {}
            }
        }
        (s, None)
    }

    /// Whether `needle` occurs in `haystack`.
    fn contains(haystack: &[u8], needle: &str) -> bool {
        needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// A token as RFC 9110 §5.6.2 defines it, read independently of the parser's check:
    /// visible ASCII except the delimiters.
    fn is_rfc9110_token(text: &str) -> bool {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_graphic() && !"\"(),/:;<=>?@[\\]{}".contains(c))
    }

    /// Lines of `COMMON_HEADERS` are kept as an index, not as text, and read back exactly
    /// as sent, in order, among other lines and near misses (another case, another value).
    #[test]
    fn common_header_lines_read_back_as_sent() {
        let lines: Vec<(&str, &str)> = COMMON_HEADERS
            .iter()
            .copied()
            .chain([
                ("Host", "example.com"),
                ("upgrade", "websocket"),
                ("Upgrade", "WebSocket"),
                ("Sec-WebSocket-Version", "8"),
                ("X-Latin", "caf\u{e9}"),
            ])
            .collect();
        // Every line once, then each pair in both orders.
        let mut orders: Vec<Vec<usize>> = vec![(0..lines.len()).collect()];
        for a in 0..lines.len() {
            for b in 0..lines.len() {
                orders.push(vec![a, b, a]);
            }
        }
        for order in orders {
            let mut head = b"GET /x HTTP/1.1\r\n".to_vec();
            for &i in &order {
                let (name, value) = lines[i];
                head.extend(name.bytes());
                head.extend(b": ");
                head.extend(value.chars().map(|c| c as u8));
                head.extend(b"\r\n");
            }
            head.extend(b"\r\n");
            let req = parse_request(&head, 100).expect("a valid head");
            let expected: Vec<(&str, &str)> = order.iter().map(|&i| lines[i]).collect();
            let headers: Vec<(&str, &str)> = req.headers().collect();
            assert_eq!(headers, expected);
            assert_eq!(req.path(), "/x");
            let common: usize = order
                .iter()
                .filter(|&&i| i < COMMON_HEADERS.len())
                .map(|&i| lines[i].0.len() + lines[i].1.len())
                .sum();
            let all: usize = expected.iter().map(|(n, v)| n.len() + v.len()).sum();
            assert_eq!(req.text.len(), "GET/x".len() + all - common, "{order:?}");
        }
    }

    proptest! {
        /// Whatever the bytes, parsing does not panic, and what it reports was in them:
        /// the method, the target, every header's name and value, within the header limit.
        #[test]
        fn parsing_arbitrary_bytes_reports_only_what_was_sent(head in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(req) = parse_request(&head, 8) {
                let _ = validate_upgrade(&req);
                prop_assert!(contains(&head, req.method()));
                prop_assert!(contains(&head, req.target()));
                prop_assert!(req.target().starts_with(req.path()));
                prop_assert!(req.headers().count() <= 8);
                for (name, value) in req.headers() {
                    let lower = head.to_ascii_lowercase();
                    prop_assert!(contains(&lower, &name.to_ascii_lowercase()), "{name:?}");
                    prop_assert!(contains(&head, value), "{value:?}");
                }
            }
        }

        /// Subprotocols are the comma list's items, trimmed and non-empty (kept byte for
        /// byte otherwise, so a Latin-1 one can be echoed); extension offers are tokens, as
        /// RFC 7692 requires; a query parameter's name never holds a separator that was sent
        /// as itself.
        #[test]
        fn header_parsers_keep_only_well_formed_offers(
            query in "[!-~]{0,40}",
            value in "[ -~\u{80}-\u{ff}]{0,80}",
        ) {
            let head = format!(
                "GET /?{query} HTTP/1.1\r\nSec-WebSocket-Extensions: {value}\r\n\
                 Sec-WebSocket-Protocol: {value}\r\nConnection: {value}\r\n\r\n"
            );
            let bytes: Vec<u8> = head.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect();
            if let Ok(req) = parse_request(&bytes, 8) {
                for protocol in req.subprotocols() {
                    prop_assert!(!protocol.is_empty() && !protocol.contains(','), "{protocol:?}");
                    prop_assert_eq!(protocol.trim_matches([' ', '\t']), protocol.as_str());
                }
                for offer in req.extensions() {
                    prop_assert!(is_rfc9110_token(offer.name()), "extension {:?}", offer.name());
                    for (name, _) in offer.params() {
                        prop_assert!(is_rfc9110_token(name), "parameter {name:?}");
                    }
                }
                // A separator sent percent-encoded (`%26`) is decoded into the name, as
                // documented; one sent as itself never is.
                if !query.contains('%') {
                    for (name, _) in req.query() {
                        prop_assert!(!name.contains('&') && !name.contains('='), "query name {name:?}");
                    }
                }
            }
        }

        /// The byte-wise split agrees with splitting `char` by `char`, on text full of
        /// quotes, escapes, separators and multi-byte characters.
        #[test]
        fn unquoted_split_matches_a_char_scan(s in "[a;,\"\\\\ é€😀]{0,24}", sep in prop::sample::select(vec![b';', b','])) {
            prop_assert_eq!(split_once_unquoted(&s, sep), split_once_by_char(&s, char::from(sep)));
        }
    }
}
