//! The responses the server sends: the 101 that opens the WebSocket, or a plain HTTP
//! response that refuses the upgrade and closes the connection.

use std::borrow::Cow;

use super::accept_key::write_accept_key;
use super::request::{is_token, Request};
use super::DeflateConfig;
use crate::error::{ApiMisuse, HandshakeError};

/// Headers a refusal writes itself (it always frames its body with `Content-Length`).
const REFUSAL_RESERVED: [&str; 3] = ["content-length", "connection", "transfer-encoding"];

/// Headers the 101 response writes itself.
const ACCEPT_RESERVED: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Options for the `101 Switching Protocols` response that opens the WebSocket.
///
/// ```
/// use eventum_core::handshake::Accept;
///
/// let accept = Accept::new()
///     .subprotocol("chat.v2")
///     .header("Set-Cookie", "session=abc; HttpOnly");
/// assert_eq!(accept.chosen_subprotocol(), Some("chat.v2"));
/// assert_eq!(accept.headers().len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    subprotocol: Option<String>,
    headers: Vec<(String, String)>,
    compression: Option<DeflateConfig>,
}

impl Accept {
    /// Accept with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects the subprotocol to answer with; it must be one of
    /// [`Request::subprotocols`], exactly.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocol = Some(name.into());
        self
    }

    /// Adds an extra response header (e.g. `Set-Cookie`), written after the handshake
    /// headers in the order added. The name must be an HTTP token, the value free of CR,
    /// LF and NUL; the value is written as UTF-8. `Upgrade`, `Connection` and the
    /// `Sec-WebSocket-*` headers the handshake sets itself are refused.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// permessage-deflate settings for this connection instead of
    /// [`Config::compression`](crate::Config::compression): restrict it, or switch it off
    /// with [`DeflateConfig::disabled`].
    ///
    /// ```
    /// use eventum_core::handshake::{Accept, DeflateConfig};
    ///
    /// let accept = Accept::new().compression(DeflateConfig::disabled());
    /// assert_eq!(accept.compression_config(), Some(&DeflateConfig::disabled()));
    /// ```
    pub fn compression(mut self, config: DeflateConfig) -> Self {
        self.compression = Some(config);
        self
    }

    /// The settings given with [`Accept::compression`], if any.
    pub fn compression_config(&self) -> Option<&DeflateConfig> {
        self.compression.as_ref()
    }

    /// The subprotocol selected with [`Accept::subprotocol`], if any.
    pub fn chosen_subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The extra headers, in the order added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// Any HTTP response, used to refuse an upgrade or to answer a plain HTTP request.
///
/// The connection is closed after it is sent: the core adds `Content-Length` and
/// `Connection: close` itself, so neither may be set here (nor `Transfer-Encoding`).
/// Header names must be HTTP tokens, values and the reason phrase free of CR, LF and NUL;
/// values are written as UTF-8. Responses that cannot carry content (1xx, 204, 304) are
/// sent without `Content-Length` and without the body.
///
/// ```
/// use eventum_core::handshake::HttpResponse;
///
/// let resp = HttpResponse::text(403, "origin not allowed").header("Vary", "Origin");
/// assert_eq!(resp.status(), 403);
/// assert_eq!(resp.reason_phrase(), "Forbidden");
/// assert_eq!(resp.body_bytes(), b"origin not allowed");
///
/// let moved = HttpResponse::new(301).header("Location", "/ws");
/// assert!(moved.body_bytes().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    status: u16,
    reason: Cow<'static, str>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    /// The response as bytes for the wire, for adapters that answer without a connection
    /// (e.g. `503` when the server is full). Fails on an invalid status, reason or header.
    ///
    /// ```
    /// use eventum_core::handshake::HttpResponse;
    /// let bytes = HttpResponse::text(503, "busy").to_bytes().unwrap();
    /// assert!(bytes.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
    /// assert!(bytes.ends_with(b"\r\n\r\nbusy"));
    /// ```
    pub fn to_bytes(&self) -> Result<Vec<u8>, ApiMisuse> {
        let mut out = Vec::new();
        write_response(self, &mut out)?;
        Ok(out)
    }

    /// An empty response with the standard reason phrase for `status` (`"Unknown"` for
    /// codes without one). The status is checked when the response is sent: it must be
    /// in 100–999 and not 101.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            reason: Cow::Borrowed(standard_reason(status)),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Replaces the reason phrase.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Cow::Owned(reason.into());
        self
    }

    /// Adds a header, written in the order added.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A response with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// A response with a `text/html; charset=utf-8` body.
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body.into())
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase.
    pub fn reason_phrase(&self) -> &str {
        &self.reason
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The headers, in the order added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// The IANA reason phrase for common status codes, `"Unknown"` otherwise.
fn standard_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Serializes a refusal or plain response, after which the connection is closed:
/// `HTTP/1.1 {status} {reason}`, the headers in order, `Content-Length`,
/// `Connection: close`, then the body (no `Content-Length` and no body for 1xx, 204, 304).
/// Writes nothing to `out` on error.
pub(crate) fn write_response(resp: &HttpResponse, out: &mut Vec<u8>) -> Result<(), ApiMisuse> {
    let status = resp.status;
    if !(100..=999).contains(&status) || status == 101 {
        return Err(ApiMisuse::InvalidStatus(status));
    }
    if !is_clean(&resp.reason) {
        return Err(ApiMisuse::InvalidReason);
    }
    check_headers(&resp.headers, &REFUSAL_RESERVED)?;

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        push_header(out, name, value.as_bytes());
    }
    let has_content = !(status < 200 || status == 204 || status == 304);
    if has_content {
        let len = resp.body.len().to_string();
        push_header(out, "Content-Length", len.as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    if has_content {
        out.extend_from_slice(&resp.body);
    }
    Ok(())
}

/// Serializes the `101 Switching Protocols` for `req`, which must have passed
/// `validate_upgrade` (without a `Sec-WebSocket-Key` it is [`ApiMisuse::NotAnUpgrade`]).
///
/// `extensions` is an already negotiated `Sec-WebSocket-Extensions` value to echo. The
/// chosen subprotocol is written back byte-for-byte as the client sent it (Latin-1).
/// Writes nothing to `out` on error.
pub(crate) fn write_accept(
    req: &Request,
    accept: &Accept,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), ApiMisuse> {
    let key = req.websocket_key().ok_or(ApiMisuse::NotAnUpgrade)?;
    check_headers(&accept.headers, &ACCEPT_RESERVED)?;
    let subprotocol = accept.chosen_subprotocol();
    if let Some(chosen) = subprotocol {
        if !req.subprotocols().iter().any(|offered| offered == chosen) {
            return Err(ApiMisuse::SubprotocolNotOffered(chosen.to_owned()));
        }
    }
    if extensions.is_some_and(|e| !is_clean(e)) {
        return Err(ApiMisuse::InvalidHeader("Sec-WebSocket-Extensions".to_owned()));
    }

    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    write_accept_key(key, out);
    out.extend_from_slice(b"\r\n");
    if let Some(chosen) = subprotocol {
        // Offered values were decoded as Latin-1, so every char fits a byte.
        let bytes: Vec<u8> = chosen.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect();
        push_header(out, "Sec-WebSocket-Protocol", &bytes);
    }
    if let Some(extensions) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", extensions.as_bytes());
    }
    for (name, value) in &accept.headers {
        push_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The response the core sends by itself for a refused handshake: the error's status and
/// text, plus `Sec-WebSocket-Version: 13` and `Upgrade: websocket` for a 426.
pub(crate) fn error_response(err: &HandshakeError) -> HttpResponse {
    let resp = HttpResponse::text(err.status(), err.to_string());
    if matches!(err, HandshakeError::UnsupportedVersion) {
        resp.header("Sec-WebSocket-Version", "13")
            .header("Upgrade", "websocket")
    } else {
        resp
    }
}

/// Token names, values without CR/LF/NUL, and none of `reserved` (case-insensitive).
fn check_headers(headers: &[(String, String)], reserved: &[&str]) -> Result<(), ApiMisuse> {
    for (name, value) in headers {
        if !is_token(name) || !is_clean(value) {
            return Err(ApiMisuse::InvalidHeader(name.clone()));
        }
        if reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(ApiMisuse::ReservedHeader(name.clone()));
        }
    }
    Ok(())
}

fn is_clean(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::request::{parse_request, validate_upgrade};
    use super::*;

    const RFC_SAMPLE: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn sample() -> Request {
        parse_request(RFC_SAMPLE.as_bytes(), 16).expect("parses")
    }

    fn accept_bytes(accept: &Accept, extensions: Option<&str>) -> Result<Vec<u8>, ApiMisuse> {
        let mut out = Vec::new();
        let result = write_accept(&sample(), accept, extensions, &mut out);
        if result.is_err() {
            assert!(out.is_empty(), "wrote {out:?} before failing");
        }
        result.map(|()| out)
    }

    fn response_bytes(resp: &HttpResponse) -> Result<Vec<u8>, ApiMisuse> {
        let mut out = Vec::new();
        let result = write_response(resp, &mut out);
        if result.is_err() {
            assert!(out.is_empty(), "wrote {out:?} before failing");
        }
        result.map(|()| out)
    }

    #[test]
    fn rfc_sample_101_is_byte_exact() {
        let req = sample();
        assert_eq!(validate_upgrade(&req), Ok(()));
        let out = accept_bytes(&Accept::new().subprotocol("chat"), None).expect("accepts");
        let expected = "HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            Sec-WebSocket-Protocol: chat\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn accept_with_extensions_and_extra_headers() {
        let accept = Accept::new().header("Set-Cookie", "a=b").header("X-Y", "");
        let out = accept_bytes(&accept, Some("permessage-deflate")).expect("accepts");
        let expected = "HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            Sec-WebSocket-Extensions: permessage-deflate\r\n\
            Set-Cookie: a=b\r\n\
            X-Y: \r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn accept_refuses_bad_options() {
        for name in [
            "Upgrade",
            "connection",
            "SEC-WEBSOCKET-ACCEPT",
            "Sec-WebSocket-Protocol",
            "sec-websocket-extensions",
        ] {
            let accept = Accept::new().header("X-Ok", "1").header(name, "x");
            let err = ApiMisuse::ReservedHeader(name.to_owned());
            assert_eq!(accept_bytes(&accept, None), Err(err));
        }
        for (name, value) in [
            ("X-A", "a\r\nB: c"),
            ("X-A", "a\nb"),
            ("X-A", "a\0"),
            ("X A", "v"),
            ("", "v"),
            ("X:A", "v"),
            ("X\r\nA", "v"),
        ] {
            let accept = Accept::new().header(name, value);
            let err = ApiMisuse::InvalidHeader(name.to_owned());
            assert_eq!(accept_bytes(&accept, None), Err(err), "{name:?}: {value:?}");
        }
        let not_offered = |p: &str| {
            let err = ApiMisuse::SubprotocolNotOffered(p.to_owned());
            assert_eq!(accept_bytes(&Accept::new().subprotocol(p), None), Err(err));
        };
        not_offered("Chat");
        not_offered("chat, superchat");
        not_offered("");
        assert_eq!(
            accept_bytes(&Accept::new(), Some("x\r\nEvil: 1")),
            Err(ApiMisuse::InvalidHeader("Sec-WebSocket-Extensions".to_owned()))
        );
        let plain = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4).expect("parses");
        let mut out = Vec::new();
        let err = write_accept(&plain, &Accept::new(), None, &mut out);
        assert_eq!((err, out.is_empty()), (Err(ApiMisuse::NotAnUpgrade), true));
    }

    #[test]
    fn latin1_subprotocol_is_echoed_byte_for_byte() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Protocol: caf\xe9\r\n\r\n";
        let req = parse_request(head, 8).expect("parses");
        let mut out = Vec::new();
        let accept = Accept::new().subprotocol("caf\u{e9}");
        write_accept(&req, &accept, None, &mut out).expect("accepts");
        let line: &[u8] = b"Sec-WebSocket-Protocol: caf\xe9\r\n";
        assert!(out.windows(line.len()).any(|w| w == line));
    }

    #[test]
    fn refusal_layout() {
        let resp = HttpResponse::text(403, "nope").header("X-A", "1").header("x-a", "2");
        let out = response_bytes(&resp).expect("writes");
        let expected = "HTTP/1.1 403 Forbidden\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            X-A: 1\r\n\
            x-a: 2\r\n\
            Content-Length: 4\r\n\
            Connection: close\r\n\r\nnope";
        assert_eq!(String::from_utf8_lossy(&out), expected);

        let html = HttpResponse::html(200, "<p>é</p>").reason("Fine");
        let out = response_bytes(&html).expect("writes");
        let expected = "HTTP/1.1 200 Fine\r\n\
            Content-Type: text/html; charset=utf-8\r\n\
            Content-Length: 9\r\n\
            Connection: close\r\n\r\n<p>é</p>";
        assert_eq!(String::from_utf8_lossy(&out), expected);

        let out = response_bytes(&HttpResponse::new(999).body(vec![0, 255])).expect("writes");
        assert_eq!(
            out,
            b"HTTP/1.1 999 Unknown\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\x00\xff"
        );
        let out = response_bytes(&HttpResponse::new(404).reason("")).expect("writes");
        assert_eq!(out, b"HTTP/1.1 404 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn responses_without_content() {
        for status in [100, 204, 304] {
            let out = response_bytes(&HttpResponse::new(status).body("dropped")).expect("writes");
            let expected = format!(
                "HTTP/1.1 {status} {}\r\nConnection: close\r\n\r\n",
                standard_reason(status)
            );
            assert_eq!(String::from_utf8_lossy(&out), expected);
        }
    }

    #[test]
    fn refusal_rejects_bad_input() {
        for status in [0, 99, 101, 1000, u16::MAX] {
            let err = ApiMisuse::InvalidStatus(status);
            assert_eq!(response_bytes(&HttpResponse::new(status)), Err(err));
        }
        for reason in ["a\rb", "a\nb", "a\0b"] {
            let resp = HttpResponse::new(400).reason(reason);
            assert_eq!(response_bytes(&resp), Err(ApiMisuse::InvalidReason));
        }
        for name in ["Content-Length", "connection", "Transfer-Encoding"] {
            let resp = HttpResponse::new(400).header(name, "1");
            let err = ApiMisuse::ReservedHeader(name.to_owned());
            assert_eq!(response_bytes(&resp), Err(err));
        }
        for (name, value) in [
            ("X", "a\r\n\r\nbody"),
            ("X", "\0"),
            ("Bad Name", "v"),
            ("é", "v"),
            ("", ""),
        ] {
            let resp = HttpResponse::new(400).header(name, value);
            let err = ApiMisuse::InvalidHeader(name.to_owned());
            assert_eq!(response_bytes(&resp), Err(err), "{name:?}: {value:?}");
        }
        // Upgrade/Sec-WebSocket-* are ordinary headers in a refusal.
        assert!(response_bytes(&HttpResponse::new(426).header("Upgrade", "websocket")).is_ok());
    }

    #[test]
    fn error_responses() {
        let all = [
            HandshakeError::HeadTooLarge { limit: 8192 },
            HandshakeError::TooManyHeaders { limit: 64 },
            HandshakeError::Malformed("invalid header name"),
            HandshakeError::MethodNotGet,
            HandshakeError::NotHttp11,
            HandshakeError::MissingHost,
            HandshakeError::ConnectionNotUpgrade,
            HandshakeError::MissingKey,
            HandshakeError::InvalidKey,
            HandshakeError::UnsupportedVersion,
            HandshakeError::NotWebSocket,
            HandshakeError::Timeout,
        ];
        for err in &all {
            let resp = error_response(err);
            assert_eq!(resp.status(), err.status());
            assert_eq!(resp.body_bytes(), err.to_string().as_bytes());
            assert!(response_bytes(&resp).is_ok(), "{err:?}");
        }
        let out = response_bytes(&error_response(&HandshakeError::UnsupportedVersion)).expect("writes");
        let body = HandshakeError::UnsupportedVersion.to_string();
        let expected = format!(
            "HTTP/1.1 426 Upgrade Required\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Upgrade: websocket\r\n\
             Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
        let resp = error_response(&HandshakeError::HeadTooLarge { limit: 10 });
        assert_eq!(resp.reason_phrase(), "Request Header Fields Too Large");
        assert_eq!(resp.headers().len(), 1);
    }
}
