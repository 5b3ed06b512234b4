//! The `Sec-WebSocket-Accept` value (RFC 6455 §4.2.2).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Base64 of a SHA-1 digest: 20 bytes become 28 characters.
const ACCEPT_LEN: usize = 28;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
///
/// ```
/// use eventum_core::handshake::accept_key;
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    STANDARD.encode(digest(key))
}

/// Appends the accept value for `key` to `out` without an intermediate `String`.
pub(crate) fn write_accept_key(key: &str, out: &mut Vec<u8>) {
    let mut encoded = [0u8; ACCEPT_LEN];
    match STANDARD.encode_slice(digest(key), &mut encoded) {
        Ok(ACCEPT_LEN) => out.extend_from_slice(&encoded),
        // Unreachable: a 20-byte digest always encodes to exactly 28 bytes.
        _ => out.extend_from_slice(accept_key(key).as_bytes()),
    }
}

fn digest(key: &str) -> impl AsRef<[u8]> {
    Sha1::new().chain_update(key.as_bytes()).chain_update(GUID).finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_section_1_3_vector() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let mut out = b"prefix:".to_vec();
        write_accept_key("dGhlIHNhbXBsZSBub25jZQ==", &mut out);
        assert_eq!(out, b"prefix:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn other_keys() {
        // Vectors cross-checked with Python's hashlib/base64.
        assert_eq!(accept_key(""), "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
        assert_eq!(accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }
}
