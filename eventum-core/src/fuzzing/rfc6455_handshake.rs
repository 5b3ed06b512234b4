//! An independent reading of RFC 6455 §4.2.1 for the `handshake` target: what a server
//! must answer to a request head, decided without the core's parser or validator.
//!
//! The model reads only a plain subset of HTTP/1.x that any parser must agree on: a
//! request line `METHOD SP /target SP HTTP/1.0|1.1`, header lines `Name: value` of
//! printable ASCII, CRLF line ends, the blank line, within the size and count limits. For
//! anything else it abstains (`None`), and the target's other checks apply alone.
//!
//! The checks, in the order eventum documents for its status codes (the first failure
//! decides):
//!
//! 1. not an upgrade (no `Upgrade` field listing `websocket`, any case): with the HTTP
//!    fallback, a plain request; without it, `400`;
//! 2. the method is `GET` (methods are case-sensitive, RFC 9110 §9.1), else `400`;
//! 3. HTTP/1.1 or later, else `400`;
//! 4. a `Host` field, else `400`;
//! 5. a `Connection` field listing `Upgrade` (any case), else `400`;
//! 6. `Sec-WebSocket-Version` present, and every such field `13`, else `426`;
//! 7. exactly one `Sec-WebSocket-Key`, the base64 of 16 bytes, else `400`;
//!
//! and then the upgrade is valid.

/// What the server must do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expected {
    /// A valid upgrade request, handed to the app.
    Upgrade,
    /// A plain request, handed to the HTTP fallback.
    Http,
    /// Refused with this status.
    Refused(u16),
}

/// The expected outcome of `input` (a request head, possibly followed by more bytes), or
/// `None` when it is outside the plain subset.
pub(super) fn expected(input: &[u8], http_fallback: bool, max_head: usize, max_headers: usize) -> Option<Expected> {
    let end = input.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 >= max_head {
        return None;
    }
    let head = std::str::from_utf8(&input[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let (method, http11) = request_line(lines.next()?)?;
    let mut fields = Vec::new();
    for line in lines {
        fields.push(field(line)?);
    }
    if fields.len() > max_headers {
        return None;
    }
    let named = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect()
    };
    let lists = |name: &str, token: &str| {
        named(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|item| item.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
    };
    if !lists("upgrade", "websocket") {
        return Some(if http_fallback {
            Expected::Http
        } else {
            Expected::Refused(400)
        });
    }
    if method != "GET" || !http11 || named("host").is_empty() || !lists("connection", "upgrade") {
        return Some(Expected::Refused(400));
    }
    let versions = named("sec-websocket-version");
    if versions.is_empty() || versions.iter().any(|v| v.trim_matches([' ', '\t']) != "13") {
        return Some(Expected::Refused(426));
    }
    match named("sec-websocket-key")[..] {
        [key] if is_base64_of_16_bytes(key.trim_matches([' ', '\t'])) => Some(Expected::Upgrade),
        _ => Some(Expected::Refused(400)),
    }
}

/// `METHOD SP /target SP HTTP/1.x`: the method and whether the version is 1.1.
fn request_line(line: &str) -> Option<(&str, bool)> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let plain_target = |c: char| c.is_ascii_alphanumeric() || "/._~-?=&%".contains(c);
    let ok = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_alphabetic())
        && target.starts_with('/')
        && target.chars().all(plain_target);
    match (ok, version) {
        (true, "HTTP/1.1") => Some((method, true)),
        (true, "HTTP/1.0") => Some((method, false)),
        _ => None,
    }
}

/// `Name: value`, a name of letters, digits and dashes, a value of printable ASCII.
fn field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let value_ok = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    (name_ok && value_ok).then_some((name, value.trim_matches(' ')))
}

/// 24 characters of the standard alphabet with `==` padding, whose last data character
/// carries no stray bits: exactly 16 bytes (RFC 4648 §4; RFC 6455 §4.1 step 7).
fn is_base64_of_16_bytes(key: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = key.as_bytes();
    if bytes.len() != 24 || &bytes[22..] != b"==" {
        return false;
    }
    let values: Option<Vec<usize>> = bytes[..22]
        .iter()
        .map(|b| ALPHABET.iter().position(|a| a == b))
        .collect();
    // 16 bytes are 128 bits: 21 full characters and 2 bits of the 22nd; its low 4 bits
    // must be zero.
    values.is_some_and(|v| v[21] & 0x0f == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn verdict(request: &str) -> Option<Expected> {
        expected(request.as_bytes(), false, 2048, 32)
    }

    #[test]
    fn the_rfc_example_is_an_upgrade_and_each_rule_refuses() {
        assert_eq!(verdict(RFC), Some(Expected::Upgrade));
        let cases = [
            ("GET /chat", "POST /chat", 400),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost", 400),
            ("Host: server.example.com\r\n", "", 400),
            ("Connection: Upgrade", "Connection: keep-alive", 400),
            ("Version: 13", "Version: 8", 426),
            ("Key: dGhlIHNhbXBsZSBub25jZQ==", "Key: dGhlIHNhbXBsZSBub25jZR==", 400),
        ];
        for (from, to, status) in cases {
            assert_eq!(verdict(&RFC.replace(from, to)), Some(Expected::Refused(status)), "{to}");
        }
        assert_eq!(
            verdict(&RFC.replace("Upgrade: websocket", "Upgrade: h2c")),
            Some(Expected::Refused(400))
        );
        let plain = RFC.replace("Upgrade: websocket", "Upgrade: h2c");
        assert_eq!(expected(plain.as_bytes(), true, 2048, 32), Some(Expected::Http));
        assert_eq!(verdict(&RFC.replace("Host:", "Host :")), None, "outside the subset");
    }
}
