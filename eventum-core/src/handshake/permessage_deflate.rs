//! Negotiation of the permessage-deflate extension (RFC 7692 §5, §7.1).
//!
//! [`Config::compression`](crate::Config::compression) holds the server's settings (on by
//! default), [`Accept::compression`](super::Accept::compression) overrides them for one
//! connection, and [`Connection::compression`](crate::Connection::compression) tells what
//! was agreed. In an app, the upgrade handler decides per connection and handlers read
//! what was agreed:
//!
//! ```
//! use eventum_core::app::{App, Route};
//! use eventum_core::handshake::DeflateConfig;
//! use eventum_core::Config;
//!
//! let config = Config::builder()
//!     .compression(DeflateConfig::default().compression_level(1)) // or DeflateConfig::disabled()
//!     .build()
//!     .unwrap();
//! let app = App::builder()
//!     .config(config)
//!     .route(Route::new("/ws").on_upgrade(|upgrade| {
//!         if upgrade.header("x-no-compression").is_some() {
//!             upgrade.set_compression(DeflateConfig::disabled()); // this connection only
//!         }
//!         Ok(())
//!     }))
//!     .on_text(|ctx, _| {
//!         let agreed = ctx.compression().map(|p| p.server_max_window_bits());
//!         ctx.send_text(&format!("compression: {agreed:?}")).unwrap();
//!     })
//!     .build();
//! # let _ = app;
//! ```
//!
//! The client offers `permessage-deflate` in `Sec-WebSocket-Extensions`, possibly several
//! times with different parameters, in its order of preference. [`DeflateConfig::negotiate`]
//! accepts the first offer the server's configuration can honour and returns the
//! [`DeflateParams`] both codecs use plus the response header value; an offer it cannot
//! honour is declined, and declining every offer is not an error: the connection simply
//! proceeds uncompressed (RFC 7692 §5).
//!
//! The four parameters, as §7.1.1–7.1.2 define them (each may appear at most once, and an
//! unknown parameter or a malformed value declines the offer):
//!
//! | parameter | in an offer | in our response |
//! |---|---|---|
//! | `server_no_context_takeover` | no value; the client asks us to reset our compressor per message | echoed when offered; also sent when configured |
//! | `client_no_context_takeover` | no value; a hint that the client resets per message | echoed when offered; also sent when configured (the client must then reset) |
//! | `server_max_window_bits=N` | value required, 8..=15; our compressor must use at most 2^N | sent whenever offered (value ≤ N), or when our window is below 15 |
//! | `client_max_window_bits[=N]` | without a value: the client supports the parameter; with one: it will use at most 2^N | sent only when offered, and only when it limits the client further |
//!
//! Values are decimal integers without leading zeros; quoted values (`"10"`) are accepted
//! after unquoting (RFC 7692 §7.1, the parser of [`ExtensionOffer`] unquotes them).
//! Parameter and extension names are matched case-insensitively.
//!
//! **`server_max_window_bits=8` is accepted, and we then send every message uncompressed.**
//! zlib (and zlib-rs) cannot produce raw deflate with a 256-byte window: it refuses window
//! bits 8 for raw streams, and silently uses 9 for zlib-wrapped ones "until 256-byte window
//! bug fixed" (deflate.c). The common workaround of compressing with 9 bits while promising
//! 8 is not honest: a 512-byte window can emit back-references 257..=512 bytes long that a
//! client inflating with a 256-byte window must reject as "invalid distance too far back".
//! Sending uncompressed messages (RSV1 clear) is always allowed under the extension (RFC
//! 7692 §6), so we accept the offer, keep the promise trivially, and the client still
//! compresses towards us. `client_max_window_bits=8` is fine too: our inflater uses 9
//! bits, and a decompressor with a larger window decodes anything a smaller one produced.

use super::{ExtensionOffer, Request};

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Smallest window our compressor and decompressor can use (zlib's raw-deflate minimum).
const MIN_CODEC_BITS: u8 = 9;
/// Largest window, and the default of both parameters when they are absent (RFC 7692 §7.1.2).
const MAX_BITS: u8 = 15;

/// The server's permessage-deflate settings: whether to accept the extension, and within
/// which limits.
///
/// Defaults, chosen for memory (figures measured with zlib-rs, see `crate::deflate`):
///
/// | setting | default | why |
/// |---|---|---|
/// | `enabled` | `true` | every browser offers it, and JSON events shrink 3–10× |
/// | `server_max_window_bits` | 12 (4 KiB window) | a compressor costs ≈ 371 KiB at 15 bits and ≈ 259 KiB at 12; typical messages are under 4 KiB, so the ratio loss is small |
/// | `server_no_context_takeover` | `true` | each message is compressed on its own: the compressor is borrowed from a process-wide cache per message (an idle connection holds none), and a broadcast is compressed once and shared by every member. Takeover gains most on small repeated messages, at ≈ 259 KiB per connection that ever received a compressed message |
/// | `client_max_window_bits` | 15 (no limit) | zlib-rs's inflater costs ≈ 46 KiB whatever the window, so limiting the client saves us nothing and costs it ratio |
/// | `client_no_context_takeover` | `true` | likewise for the inflater: held only while a message arrives, not ≈ 46 KiB per connection that ever sent one |
/// | `compression_level` | 1 | measured on JSON events with a 12-bit window, each message on its own: 1 KiB takes 3.2 µs and shrinks 3.5× at level 1, 9.3 µs and 4.5× at level 6; 16 KiB 28 µs and 4.3× against 82 µs and 6.8×. Level 1 keeps a compressing server within a few µs per message; raise it when bandwidth costs more than CPU |
/// | `threshold` | 128 bytes | smaller messages gain at most tens of bytes, and never allocate a compressor |
///
/// ```
/// use eventum_core::handshake::DeflateConfig;
///
/// let config = DeflateConfig::default().server_max_window_bits(10).server_no_context_takeover(true);
/// assert_eq!(config.server_window_bits(), 10);
/// assert!(!DeflateConfig::disabled().is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    enabled: bool,
    server_max_window_bits: u8,
    server_no_context_takeover: bool,
    client_max_window_bits: u8,
    client_no_context_takeover: bool,
    compression_level: u32,
    threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: true,
            server_max_window_bits: 12,
            server_no_context_takeover: true,
            client_max_window_bits: MAX_BITS,
            client_no_context_takeover: true,
            compression_level: 1,
            threshold: 128,
        }
    }
}

impl DeflateConfig {
    /// A configuration that declines every offer.
    pub fn disabled() -> Self {
        DeflateConfig {
            enabled: false,
            ..DeflateConfig::default()
        }
    }

    /// Whether offers are considered at all (default `true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The largest window our compressor uses, as log2 of its size; clamped to 9..=15
    /// (default 12). A client's smaller `server_max_window_bits` lowers it further.
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(MIN_CODEC_BITS, MAX_BITS);
        self
    }

    /// Always reset our compressor between messages, even if the client did not ask
    /// (default `true`; `false` keeps the context when the client allows it).
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// The largest window we ask the client to compress with, clamped to 9..=15 (default 15).
    /// Applied only when the client offers `client_max_window_bits`; a client that does not
    /// (Firefox) is accepted anyway and may use 15.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(MIN_CODEC_BITS, MAX_BITS);
        self
    }

    /// Always require the client to reset its compressor between messages (default `true`;
    /// `false` lets the client keep its context unless it offers to reset).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// zlib compression level, clamped to 0..=9 (default 1: see the table above).
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression_level = level.min(9);
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed (default 128).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Whether offers are considered at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The configured limit of our compressor's window (log2).
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }

    /// The configured zlib compression level.
    pub fn level(&self) -> u32 {
        self.compression_level
    }

    /// The configured size below which messages go uncompressed.
    pub fn min_size(&self) -> usize {
        self.threshold
    }

    /// Picks the first `permessage-deflate` offer this configuration can honour.
    ///
    /// `None` means decline: answer without the extension and proceed uncompressed.
    /// Chromium's `permessage-deflate; client_max_window_bits` gets, with the defaults,
    /// `permessage-deflate; server_no_context_takeover; client_no_context_takeover;
    /// server_max_window_bits=12` (each message compressed on its own, our compressor uses
    /// 4 KiB, the client keeps 15 bits); Firefox's bare `permessage-deflate` gets the same.
    pub fn negotiate(&self, offers: &[ExtensionOffer]) -> Option<Negotiated> {
        if !self.enabled {
            return None;
        }
        offers
            .iter()
            .filter(|offer| offer.name().eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
            .find_map(|offer| {
                let params = offer.params().iter().map(|(name, value)| (name, value.as_deref()));
                self.accept(&Offer::parse(params)?)
            })
    }

    /// [`negotiate`](Self::negotiate) with the offers of `request`, read in place from its
    /// head (without the copies [`Request::extensions`] makes).
    pub(crate) fn negotiate_request(&self, request: &Request) -> Option<Negotiated> {
        if !self.enabled {
            return None;
        }
        request
            .extension_offers()
            .filter(|offer| offer.name().eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
            .find_map(|offer| self.accept(&Offer::parse(offer.params())?))
    }

    /// The answer to one well-formed offer, or `None` if it cannot be honoured.
    fn accept(&self, offer: &Offer) -> Option<Negotiated> {
        let server_bits = match offer.server_max_window_bits {
            // 8 stays 8: see the module docs (we then send uncompressed).
            Some(n) => n.min(self.server_max_window_bits),
            None => self.server_max_window_bits,
        };
        let send_server_bits = offer.server_max_window_bits.is_some() || server_bits < MAX_BITS;
        let (client_bits, send_client_bits) = match offer.client_max_window_bits {
            // The client did not offer the parameter: we must not send it (§7.1.2.2).
            None => (MAX_BITS, false),
            Some(offered) => {
                let limit = offered.unwrap_or(MAX_BITS);
                let bits = limit.min(self.client_max_window_bits);
                (bits, bits < limit)
            }
        };
        let params = DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover || self.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        let mut response = ResponseText::default();
        response.push(PERMESSAGE_DEFLATE);
        if params.server_no_context_takeover {
            response.push("; server_no_context_takeover");
        }
        if params.client_no_context_takeover {
            response.push("; client_no_context_takeover");
        }
        if send_server_bits {
            response.push("; server_max_window_bits=");
            response.push_window_bits(server_bits);
        }
        if send_client_bits {
            response.push("; client_max_window_bits=");
            response.push_window_bits(client_bits);
        }
        Some(Negotiated { params, response })
    }
}

/// The parameters of one offer, checked against RFC 7692 §7.1 but not yet against our
/// configuration.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// `None` for an offer with an unknown or repeated parameter or an invalid value.
    fn parse<N: AsRef<str>, V: AsRef<str>>(params: impl Iterator<Item = (N, Option<V>)>) -> Option<Offer> {
        let mut parsed = Offer::default();
        let mut seen = [false; 4];
        for (name, value) in params {
            let (name, value) = (name.as_ref(), value.as_ref().map(AsRef::as_ref));
            let index = [
                "server_no_context_takeover",
                "client_no_context_takeover",
                "server_max_window_bits",
                "client_max_window_bits",
            ]
            .iter()
            .position(|known| name.eq_ignore_ascii_case(known))?;
            if std::mem::replace(&mut seen[index], true) {
                return None; // duplicate parameter (§7.1)
            }
            match (index, value) {
                (0, None) => parsed.server_no_context_takeover = true,
                (1, None) => parsed.client_no_context_takeover = true,
                (2, Some(v)) => parsed.server_max_window_bits = Some(window_bits(v)?),
                (3, None) => parsed.client_max_window_bits = Some(None),
                (3, Some(v)) => parsed.client_max_window_bits = Some(Some(window_bits(v)?)),
                _ => return None, // a value where none is allowed, or a missing required one
            }
        }
        Some(parsed)
    }
}

/// A window-bits value: a decimal 8..=15 without leading zeros (§7.1.2.1, §7.1.2.2).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// What the server agreed to: the codec parameters and the response header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    params: DeflateParams,
    response: ResponseText,
}

/// The longest answer: all four parameters, both window sizes with two digits (126 bytes).
const RESPONSE_CAPACITY: usize = 128;

/// The answer's header value, kept inline: negotiating allocates nothing.
#[derive(Clone, PartialEq, Eq)]
struct ResponseText {
    bytes: [u8; RESPONSE_CAPACITY],
    len: usize,
}

impl Default for ResponseText {
    fn default() -> Self {
        ResponseText {
            bytes: [0; RESPONSE_CAPACITY],
            len: 0,
        }
    }
}

impl ResponseText {
    /// Appends `text`; the parts [`DeflateConfig::accept`] writes always fit.
    fn push(&mut self, text: &str) {
        let end = self.len + text.len();
        if let Some(room) = self.bytes.get_mut(self.len..end) {
            room.copy_from_slice(text.as_bytes());
            self.len = end;
        }
    }

    /// Appends a window size (8..=15) in decimal.
    fn push_window_bits(&mut self, bits: u8) {
        let digits = [b'1', b'0' + bits % 10];
        let from = if bits >= 10 { 0 } else { 1 };
        self.push(std::str::from_utf8(&digits[from..]).unwrap_or_default());
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Debug for ResponseText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl Negotiated {
    /// The parameters both directions' codecs use.
    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response, e.g.
    /// `permessage-deflate; server_max_window_bits=12`.
    pub fn response(&self) -> &str {
        self.response.as_str()
    }
}

/// The negotiated parameters of a permessage-deflate connection (server's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
}

impl DeflateParams {
    /// Our compressor resets after every message.
    pub fn server_no_context_takeover(&self) -> bool {
        self.server_no_context_takeover
    }

    /// The client resets its compressor after every message, so our inflater may too.
    pub fn client_no_context_takeover(&self) -> bool {
        self.client_no_context_takeover
    }

    /// The largest window (log2) our compressor may use, 8..=15. zlib cannot compress
    /// within 8 bits, so with 8 every message we send goes uncompressed.
    pub fn server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }

    /// The largest window (log2) the client may compress with, 8..=15. Our inflater uses
    /// at least 9, which decodes anything a smaller window produced.
    pub fn client_max_window_bits(&self) -> u8 {
        self.client_max_window_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_request;

    fn request(value: &str) -> Request {
        let head = format!("GET / HTTP/1.1\r\nSec-WebSocket-Extensions: {value}\r\n\r\n");
        parse_request(head.as_bytes(), 8).expect("parses")
    }

    /// The offers of one `Sec-WebSocket-Extensions` header, through the real parser.
    fn offers(value: &str) -> Vec<ExtensionOffer> {
        request(value).extensions().to_vec()
    }

    /// The answer to one header value, the same whether the offers are read in place
    /// (as a connection does) or from their owned copies.
    fn response(config: &DeflateConfig, value: &str) -> Option<String> {
        let in_place = config.negotiate_request(&request(value));
        assert_eq!(in_place, config.negotiate(&offers(value)), "{value}");
        in_place.map(|n| n.response().to_owned())
    }

    /// Server window 15 and nothing forced: the response echoes only what the offer needs.
    fn plain() -> DeflateConfig {
        DeflateConfig::default()
            .server_max_window_bits(15)
            .server_no_context_takeover(false)
            .client_no_context_takeover(false)
    }

    /// What the defaults answer to every offer that does not ask for more.
    const DEFAULT_ANSWER: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12";

    #[test]
    fn browser_offers() {
        // Chromium.
        let chromium = "permessage-deflate; client_max_window_bits";
        assert_eq!(response(&plain(), chromium).as_deref(), Some("permessage-deflate"));
        let n = DeflateConfig::default().negotiate(&offers(chromium)).expect("accepted");
        assert_eq!(n.response(), DEFAULT_ANSWER);
        assert_eq!(
            (n.params().server_max_window_bits(), n.params().client_max_window_bits()),
            (12, 15)
        );
        assert!(n.params().server_no_context_takeover() && n.params().client_no_context_takeover());
        // Firefox.
        assert_eq!(
            response(&plain(), "permessage-deflate").as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            response(&DeflateConfig::default(), "permessage-deflate").as_deref(),
            Some(DEFAULT_ANSWER)
        );
    }

    #[test]
    fn no_context_takeover_parameters() {
        let n = plain()
            .negotiate(&offers("permessage-deflate; server_no_context_takeover"))
            .expect("accepted");
        assert_eq!(n.response(), "permessage-deflate; server_no_context_takeover");
        assert!(n.params().server_no_context_takeover());
        let n = plain()
            .negotiate(&offers("permessage-deflate; client_no_context_takeover"))
            .expect("accepted");
        assert_eq!(n.response(), "permessage-deflate; client_no_context_takeover");
        assert!(n.params().client_no_context_takeover());
        // Sent by configuration even when not offered (§7.1.1.1, §7.1.1.2).
        let forced = plain()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true);
        assert_eq!(
            response(&forced, "permessage-deflate").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        // With a value: declined.
        for bad in [
            "server_no_context_takeover=1",
            "client_no_context_takeover=true",
            "server_no_context_takeover=\"\"",
        ] {
            assert_eq!(response(&plain(), &format!("permessage-deflate; {bad}")), None, "{bad}");
        }
    }

    #[test]
    fn server_max_window_bits() {
        // Offered: always answered, with the smaller of the two.
        for (offered, config, answered) in [(15, 15, 15), (10, 15, 10), (15, 12, 12), (9, 12, 9), (13, 11, 11)] {
            let n = plain()
                .server_max_window_bits(config)
                .negotiate(&offers(&format!(
                    "permessage-deflate; server_max_window_bits={offered}"
                )))
                .expect("accepted");
            assert_eq!(
                n.response(),
                format!("permessage-deflate; server_max_window_bits={answered}")
            );
            assert_eq!(n.params().server_max_window_bits(), answered);
        }
        // 8: accepted, and honoured by sending uncompressed (see module docs).
        let n = plain()
            .negotiate(&offers("permessage-deflate; server_max_window_bits=8"))
            .expect("accepted");
        assert_eq!(n.response(), "permessage-deflate; server_max_window_bits=8");
        assert_eq!(n.params().server_max_window_bits(), 8);
        // Without a value: the value is required, declined.
        assert_eq!(response(&plain(), "permessage-deflate; server_max_window_bits"), None);
    }

    #[test]
    fn client_max_window_bits() {
        let cases = [
            // (offer params, configured client bits, response suffix, negotiated client bits)
            ("", 15, "", 15),
            ("", 10, "", 15), // not offered: we must not send it; the client may use 15
            ("; client_max_window_bits", 15, "", 15),
            ("; client_max_window_bits", 10, "; client_max_window_bits=10", 10),
            ("; client_max_window_bits=12", 15, "", 12),
            ("; client_max_window_bits=12", 10, "; client_max_window_bits=10", 10),
            ("; client_max_window_bits=8", 15, "", 8),
            ("; client_max_window_bits=15", 9, "; client_max_window_bits=9", 9),
        ];
        for (params, config, suffix, bits) in cases {
            let n = plain()
                .client_max_window_bits(config)
                .negotiate(&offers(&format!("permessage-deflate{params}")))
                .expect("accepted");
            assert_eq!(
                n.response(),
                format!("permessage-deflate{suffix}"),
                "{params} / {config}"
            );
            assert_eq!(n.params().client_max_window_bits(), bits, "{params} / {config}");
        }
    }

    #[test]
    fn invalid_window_bits_values_decline() {
        for param in ["server_max_window_bits", "client_max_window_bits"] {
            for value in [
                "0", "7", "16", "abc", "08", "010", "1", "99", "-9", "15.0", "\"\"", "\"16\"",
            ] {
                let offer = format!("permessage-deflate; {param}={value}");
                assert_eq!(response(&plain(), &offer), None, "{offer}");
            }
            // Every valid value is accepted, quoted or not.
            for bits in 9..=15 {
                for value in [format!("{bits}"), format!("\"{bits}\"")] {
                    let offer = format!("permessage-deflate; {param}={value}");
                    assert!(response(&plain(), &offer).is_some(), "{offer}");
                }
            }
        }
        let n = plain()
            .negotiate(&offers(
                "permessage-deflate; server_max_window_bits=\"10\"; client_max_window_bits=\"11\"",
            ))
            .expect("accepted");
        assert_eq!(n.response(), "permessage-deflate; server_max_window_bits=10");
        assert_eq!(n.params().client_max_window_bits(), 11);
    }

    #[test]
    fn duplicate_and_unknown_parameters_decline() {
        for params in [
            "server_no_context_takeover; server_no_context_takeover",
            "client_no_context_takeover; CLIENT_NO_CONTEXT_TAKEOVER",
            "server_max_window_bits=10; server_max_window_bits=10",
            "client_max_window_bits; client_max_window_bits=10",
            "client_max_window_bits=10; client_max_window_bits=11",
            "x_unknown",
            "server_max_window_bits=10; mux",
            "max_window_bits=10",
        ] {
            let offer = format!("permessage-deflate; {params}");
            assert_eq!(response(&plain(), &offer), None, "{offer}");
        }
    }

    #[test]
    fn first_acceptable_offer_wins() {
        let header = "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits, \
                      permessage-deflate; unknown, permessage-deflate; server_max_window_bits=10; \
                      client_max_window_bits, permessage-deflate";
        let n = plain()
            .negotiate(&offers(header))
            .expect("third deflate offer accepted");
        assert_eq!(n.response(), "permessage-deflate; server_max_window_bits=10");
        // All declined: None, never an error.
        assert_eq!(
            response(
                &plain(),
                "permessage-deflate; a, permessage-deflate; server_max_window_bits=7"
            ),
            None
        );
        assert_eq!(response(&plain(), "x-other; a=1"), None);
        assert_eq!(response(&plain(), ""), None);
    }

    #[test]
    fn names_are_case_insensitive() {
        let n = plain()
            .negotiate(&offers(
                "PerMessage-Deflate; Server_No_Context_Takeover; CLIENT_MAX_WINDOW_BITS=9; server_max_WINDOW_bits=11",
            ))
            .expect("accepted");
        assert_eq!(
            n.response(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"
        );
        assert_eq!(n.params().client_max_window_bits(), 9);
    }

    #[test]
    fn everything_at_once() {
        let config = plain()
            .server_max_window_bits(13)
            .client_max_window_bits(11)
            .client_no_context_takeover(true);
        let n = config
            .negotiate(&offers(
                "permessage-deflate; client_max_window_bits; server_max_window_bits=14; server_no_context_takeover",
            ))
            .expect("accepted");
        assert_eq!(
            n.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=13; client_max_window_bits=11"
        );
        assert_eq!(
            *n.params(),
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 13,
                client_max_window_bits: 11,
            }
        );
    }

    #[test]
    fn disabled_declines_and_setters_clamp() {
        assert_eq!(response(&DeflateConfig::disabled(), "permessage-deflate"), None);
        assert_eq!(response(&plain().enabled(false), "permessage-deflate"), None);
        assert_eq!(
            DeflateConfig::default().server_max_window_bits(8).server_window_bits(),
            9
        );
        assert_eq!(
            DeflateConfig::default().server_max_window_bits(99).server_window_bits(),
            15
        );
        assert_eq!(DeflateConfig::default().compression_level(12).level(), 9);
        assert_eq!(DeflateConfig::default().threshold(0).min_size(), 0);
        let n = DeflateConfig::default()
            .client_max_window_bits(3)
            .negotiate(&offers("permessage-deflate; client_max_window_bits"))
            .expect("accepted");
        assert_eq!(n.params().client_max_window_bits(), 9);
    }

    /// One `Sec-WebSocket-Extensions` value: offers of known and unknown extensions with
    /// known, unknown, repeated, quoted, escaped and invalid parameters.
    fn extensions_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        use proptest::sample::select;
        let param = (
            select(vec![
                "server_no_context_takeover",
                "client_no_context_takeover",
                "server_max_window_bits",
                "CLIENT_MAX_WINDOW_BITS",
                "x",
            ]),
            proptest::option::of(select(vec![
                "8", "9", "10", "15", "16", "08", "\"12\"", "\"1\\1\"", "\"", "",
            ])),
        )
            .prop_map(|(name, value)| match value {
                Some(value) => format!("{name}={value}"),
                None => name.to_owned(),
            });
        let offer = (
            select(vec!["permessage-deflate", "Permessage-Deflate", "x-foo", ""]),
            proptest::collection::vec(param, 0..4),
        )
            .prop_map(|(name, params)| {
                std::iter::once(name.to_owned())
                    .chain(params)
                    .collect::<Vec<_>>()
                    .join(" ; ")
            });
        proptest::collection::vec(offer, 0..4).prop_map(|offers| offers.join(", "))
    }

    proptest::proptest! {
        /// Offers read in place and their owned copies are negotiated alike, whatever the
        /// header holds.
        #[test]
        fn offers_in_place_and_owned_negotiate_alike(
            value in extensions_value(),
            config in proptest::sample::select(vec![
                DeflateConfig::default(),
                plain(),
                DeflateConfig::default().client_max_window_bits(10),
            ]),
        ) {
            let _ = response(&config, &value);
        }
    }
}
