//! Handshake routes: a path pattern, required headers and the handler that decides.

use std::fmt;
use std::sync::Arc;

use crate::handshake::HttpResponse;

use super::upgrade::Upgrade;

/// What a route handler or middleware returns: `Ok(())` accepts the upgrade (with the
/// headers and subprotocol set on the [`Upgrade`]), `Err(response)` refuses it with any
/// HTTP response.
pub type UpgradeResult = Result<(), HttpResponse>;

pub(crate) type UpgradeHandler = Arc<dyn Fn(&mut Upgrade<'_>) -> UpgradeResult + Send + Sync>;

/// A handshake route: the path it answers, the headers it requires, and an optional
/// handler that accepts or refuses (the default accepts).
///
/// Paths are matched segment by segment: `/rooms/{id}` captures one segment as the
/// parameter `id` (percent-decoded); a last segment `{*rest}` captures the rest of the
/// path, slashes included (possibly empty).
///
/// ```
/// use eventum_core::app::{App, Route};
/// use eventum_core::handshake::HttpResponse;
///
/// let app = App::builder()
///     .route(Route::new("/chat"))
///     .route(Route::new("/rooms/{id}").require_header("x-token").on_upgrade(|upgrade| {
///         if upgrade.param("id") == Some("secret") {
///             return Err(HttpResponse::text(403, "Forbidden room"));
///         }
///         Ok(())
///     }))
///     .build();
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct Route {
    pub(crate) pattern: Pattern,
    pub(crate) required_headers: Vec<String>,
    pub(crate) handler: Option<UpgradeHandler>,
}

impl Route {
    /// A route for `path` (see the type docs for parameters). A malformed pattern (not
    /// starting with `/`, an unclosed `{`, `{*rest}` not last) never matches anything and
    /// is reported by [`AppBuilder::build`](super::AppBuilder::build) through the log.
    pub fn new(path: &str) -> Self {
        Route {
            pattern: Pattern::parse(path),
            required_headers: Vec::new(),
            handler: None,
        }
    }

    /// Requires a header (any value); a request without it is refused with `400` and
    /// the body `Missing required headers`.
    pub fn require_header(mut self, name: &str) -> Self {
        self.required_headers.push(name.to_owned());
        self
    }

    /// Requires several headers.
    pub fn require_headers<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.required_headers.extend(names.into_iter().map(str::to_owned));
        self
    }

    /// The handler that accepts or refuses the upgrade, and may set flags, response
    /// headers and the subprotocol on it.
    pub fn on_upgrade(mut self, handler: impl Fn(&mut Upgrade<'_>) -> UpgradeResult + Send + Sync + 'static) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("pattern", &self.pattern.source)
            .field("required_headers", &self.required_headers)
            .finish_non_exhaustive()
    }
}

/// The path parameters a route captured: each name shared with the route's pattern (a
/// connection keeps its parameters, and a copy of each name cost it an allocation), each
/// value decoded from the path.
pub(crate) type Params = Box<[(Arc<str>, String)]>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(Arc<str>),
    Rest(Arc<str>),
}

/// A parsed path pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub(crate) source: String,
    /// `None` for a malformed pattern, which matches nothing.
    segments: Option<Vec<Segment>>,
}

impl Pattern {
    pub(crate) fn parse(source: &str) -> Self {
        Pattern {
            source: source.to_owned(),
            segments: parse_segments(source),
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.segments.is_some()
    }

    /// Matches a request path; returns the captured parameters.
    pub(crate) fn matches(&self, path: &str) -> Option<Params> {
        let segments = self.segments.as_ref()?;
        let mut rest = path.strip_prefix('/')?;
        // Kept for the connection's life: sized exactly at the first capture rather than
        // grown (a growing `Vec` of pairs starts at four).
        let captures = segments.iter().filter(|s| !matches!(s, Segment::Literal(_))).count();
        let mut params = Vec::new();
        let capture = |params: &mut Vec<(Arc<str>, String)>, name: &Arc<str>, value: String| {
            params.reserve_exact(captures);
            params.push((Arc::clone(name), value));
        };
        for (i, segment) in segments.iter().enumerate() {
            if let Segment::Rest(name) = segment {
                capture(&mut params, name, percent_decode(rest));
                return Some(params.into_boxed_slice());
            }
            let (part, tail) = match rest.split_once('/') {
                Some((part, tail)) => (part, Some(tail)),
                None => (rest, None),
            };
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Param(name) if !part.is_empty() => capture(&mut params, name, percent_decode(part)),
                _ => return None,
            }
            let last = i + 1 == segments.len();
            match (tail, last) {
                (None, true) => return Some(params.into_boxed_slice()),
                (Some(tail), false) => rest = tail,
                // `/chat/` does not match `/chat`, and a path that ends early does not match.
                (Some(_), true) => return None,
                (None, false) => {
                    return match &segments[i + 1..] {
                        [Segment::Rest(name)] => {
                            capture(&mut params, name, String::new());
                            Some(params.into_boxed_slice())
                        }
                        _ => None,
                    };
                }
            }
        }
        None
    }
}

fn parse_segments(source: &str) -> Option<Vec<Segment>> {
    let body = source.strip_prefix('/')?;
    let parts: Vec<&str> = body.split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => match inner.strip_prefix('*') {
                Some(name) if i + 1 == parts.len() && valid_name(name) => Segment::Rest(name.into()),
                Some(_) => return None,
                None if valid_name(inner) => Segment::Param(inner.into()),
                None => return None,
            },
            None if part.contains(['{', '}']) => return None,
            None => Segment::Literal((*part).to_owned()),
        };
        segments.push(segment);
    }
    Some(segments)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Decodes `%XX` escapes; invalid escapes stay as they are, invalid UTF-8 is replaced.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Exactly two hex digits (from_str_radix alone would accept a sign: "%+1").
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let decoded = hex
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], decoded) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        let params = Pattern::parse(pattern).matches(path)?;
        Some(params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn p(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn exact_paths() {
        assert_eq!(params("/chat", "/chat"), p(&[]));
        assert_eq!(params("/", "/"), p(&[]));
        assert_eq!(params("/chat", "/chat/"), None);
        assert_eq!(params("/chat", "/chatter"), None);
        assert_eq!(params("/chat", "/"), None);
        assert_eq!(params("/a/b", "/a"), None);
        assert_eq!(params("/a", "chat"), None);
    }

    #[test]
    fn parameters() {
        assert_eq!(params("/rooms/{id}", "/rooms/42"), p(&[("id", "42")]));
        assert_eq!(params("/rooms/{id}", "/rooms/a%20b"), p(&[("id", "a b")]));
        assert_eq!(params("/rooms/{id}", "/rooms/"), None);
        assert_eq!(params("/rooms/{id}", "/rooms/1/2"), None);
        assert_eq!(params("/{a}/x/{b}", "/1/x/2"), p(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn rest_captures_everything_left() {
        assert_eq!(params("/{*path}", "/"), p(&[("path", "")]));
        assert_eq!(params("/{*path}", "/a/b/c"), p(&[("path", "a/b/c")]));
        assert_eq!(params("/files/{*path}", "/files"), p(&[("path", "")]));
        assert_eq!(params("/files/{*path}", "/files/x/y"), p(&[("path", "x/y")]));
        assert_eq!(params("/files/{*path}", "/other/x"), None);
    }

    #[test]
    fn malformed_patterns_match_nothing() {
        for bad in ["chat", "/{id", "/{*rest}/x", "/{}", "/a{b}", "/{bad-name}"] {
            let pattern = Pattern::parse(bad);
            assert!(!pattern.is_valid(), "{bad}");
            assert_eq!(pattern.matches("/chat"), None);
        }
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("%+1%-f"), "%+1%-f");
    }
}
