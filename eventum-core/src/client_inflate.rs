//! The client side of permessage-deflate, for the in-memory test client and the fuzz
//! targets' checkers: flate2 used directly, apart from the core's own codec (`deflate`), so
//! what the server sends is read by something that does not share its code.

/// Inflates one compressed server message with the client's `inflater`, kept for the
/// whole connection (which serves a server with or without context takeover), appending
/// the sync-flush tail first (RFC 7692 §7.2.2).
///
/// # Panics
///
/// On invalid or truncated data: the server is the code under test.
pub(crate) fn inflate_server_message(inflater: &mut flate2::Decompress, payload: &[u8]) -> Vec<u8> {
    let input = [payload, &[0x00, 0x00, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(input.len() * 4 + 64);
    let start = inflater.total_in();
    loop {
        let used = usize::try_from(inflater.total_in() - start).unwrap_or(input.len());
        let rest = input.get(used..).unwrap_or_default();
        if rest.is_empty() && out.len() < out.capacity() {
            return out; // all input taken, and zlib had room to flush all output
        }
        out.reserve(out.capacity());
        let before = (inflater.total_in(), out.len());
        inflater
            .decompress_vec(rest, &mut out, flate2::FlushDecompress::Sync)
            .unwrap_or_else(|e| panic!("the server's compressed message does not inflate: {e}"));
        if (inflater.total_in(), out.len()) == before {
            // Only an output buffer that had filled exactly leaves nothing to do.
            assert!(rest.is_empty(), "the server's compressed message ended early");
            return out;
        }
    }
}
