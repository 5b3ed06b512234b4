//! The `envelope` target: the hand-written envelope reader against serde_json's.

use crate::app::envelope;

/// Reads an arbitrary text (the input, if it is UTF-8) as an event envelope both ways.
///
/// Checked: the hand-written pass and serde_json agree on every text (see
/// [`envelope::assert_reads_as_serde`]).
pub fn envelope(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        envelope::assert_reads_as_serde(text);
    }
}
