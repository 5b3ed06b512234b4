//! The JSON event envelope, both ways.
//!
//! Every message of an eventum app is one JSON object in a text frame. Events, requests,
//! replies and server requests have this shape:
//!
//! ```text
//! {"event": string, "data"?: any, "id"?: any, "ack"?: number}
//! ```
//!
//! Two messages differ from it, and they are the only ones: the client's answer to a server
//! request, `{"ack": N, "data": R}`, has **no `event`** (the `ack` number says what it
//! answers), and the validation error is **flat**, with no `data` (see below).
//!
//! | direction | shape | meaning |
//! |---|---|---|
//! | client → server | `{"event": E, "data": D}` | an event, routed by `E` |
//! | client → server | `{"event": E, "data": D, "id": I}` | a request: the client waits for the reply with the same `id` |
//! | server → client | `{"event": E, "data": R, "id": I}` | the reply to request `I` ([`Context::reply`](super::Context::reply)) |
//! | server → client | `{"event": E, "data": D}` | an event ([`Context::send_event`](super::Context::send_event), [`SharedFrame::event`]) |
//! | server → client | `{"event": E, "data": D, "ack": N}` | a server request ([`Context::request_ack`](super::Context::request_ack)); `N` is a number unique on the connection (numbering restarts on every connection) |
//! | client → server | `{"ack": N, "data": R}` | the client's answer to server request `N`, on the connection the request came on; no `event`: it goes to the callback given with the request, not to an event handler |
//! | server → client | `{"event": "validation_error", "message": M, "id"?: I, "details"?: {...}}` | the event (or request `I`) did not fit its handler's type; flat, no `data` |
//! | server → client | what [`Flow::Reject`](super::Flow::Reject) holds, plus `"id": I` for a request | event middleware refused the event or request `I` |
//!
//! * `data` is the payload. The typed handlers
//!   ([`AppBuilder::on_event`](super::AppBuilder::on_event), its twin
//!   [`AppBuilder::on_typed`](super::AppBuilder::on_typed),
//!   [`AppBuilder::on_request`](super::AppBuilder::on_request) and their schema-recording
//!   forms) all read it the same way: from `data`; a message **without** a `data` field is
//!   the original eventum-asgi's flat form, `{"event": "join", "room": "r"}`, and the whole
//!   object is the payload (its `event`, `id` and `ack` fields included, which a struct
//!   ignores). Untyped handlers ([`AppBuilder::on`](super::AppBuilder::on)) see the whole
//!   object, as in the original.
//! * `id` may be any JSON value; the reply carries it back unchanged, with the request's
//!   own event name. A request nobody answers is the client's to time out.
//! * The validation error stays flat on purpose: eventum-asgi clients read its top-level
//!   `message`, and a `data` copy would say the same thing twice. It adds the failed
//!   request's `id`, so a client can settle that request with the error; with
//!   [`AppBuilder::validation_details`](super::AppBuilder::validation_details) it also
//!   carries `"details": {"event": E, "path": "field.path", "reason": "..."}`. eventum.js
//!   hands a server event without `data` (this one, or a flat event) to its handlers as
//!   the whole message, so `on("validation_error", (e) => e.message)` reads it, and the
//!   generated typings type it that way.
//! * Fields not listed here are ignored, so both ends can add some later.
//!
//! The JavaScript client [`eventum.js`](super::client) speaks exactly this envelope.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::object_scan::{self, Entries, Entry, Fields, Raw, Unscanned};
use crate::outbound::SharedFrame;

/// The fields the dispatcher needs, as serde_json reads them ([`parse_with_serde`]).
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow, default)]
    pub(crate) event: Option<EventName<'a>>,
    #[serde(default)]
    pub(crate) id: Option<Value>,
    #[serde(default)]
    pub(crate) ack: Option<Value>,
    /// Whether the object has a `data` field (even `null`); its value is skipped here.
    #[serde(default, rename = "data", deserialize_with = "is_present")]
    pub(crate) has_data: bool,
}

/// An event name, borrowed from the message unless it has escapes. (serde borrows a bare
/// `Cow` field marked `borrow`, but not one inside an `Option`.)
#[derive(Debug, Deserialize)]
pub(crate) struct EventName<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

fn is_present<'de, D: serde::Deserializer<'de>>(field: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(field).map(|_| true)
}

/// How a text message reads as an event: borrowing the text for `'t`, and the kept fields
/// ([`Entries`]) for `'e`.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed<'t, 'e> {
    /// `{"event": "name", ...}`, its `id`, and where its `data` field is.
    Event {
        name: Cow<'t, str>,
        id: Option<Value>,
        data: DataField<'e>,
    },
    /// `{"ack": n, "data": ...}`: the client's answer to a server request.
    Ack(u64),
    /// Valid JSON, but not an object with a string `event` field.
    NoEvent,
    /// Not JSON at all.
    NotJson,
}

/// An event's `data` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataField<'a> {
    /// No `data` field: the payload is the whole (flat) object; its fields, when the scan
    /// kept them all.
    Absent(Option<&'a [Entry<'a>]>),
    /// The field's value as written, which reads alone exactly as it reads in place; and
    /// when it is an object, its fields, if the scan kept them all.
    Raw(&'a str, Option<&'a [Entry<'a>]>),
    /// A field that must be read in place, in its message: serde_json's nesting limit counts
    /// the envelope's own object, so a value nested near it reads differently alone.
    InPlace,
}

impl DataField<'_> {
    pub(crate) fn is_present(self) -> bool {
        !matches!(self, DataField::Absent(_))
    }
}

/// How many containers deep a field's value may nest and still read alone as it reads in
/// place: serde_json allows 127 nested containers in a message read alone, and inside the
/// envelope's object one of them is the object itself. (A field of the `data` object is one
/// deeper still, but its `data` is at most this deep, so the field is at most one less.)
pub(crate) const ALONE_AS_IN_PLACE_DEPTH: u32 = 126;

/// Reads the envelope of a text message: one hand-written validating pass over the object
/// ([`object_scan`]) on the fast path, serde_json for the rest. It reads every text exactly
/// as [`parse_with_serde`] does (the `envelope` fuzz target checks it). The payload's
/// fields (those of `data`, or of the flat object) are kept in `entries`, for the typed
/// handler ([`DataField`]).
pub(crate) fn parse<'t, 'e>(text: &'t str, entries: &'e mut Entries<'t>) -> Parsed<'t, 'e> {
    if !text.trim_start().starts_with('{') {
        return not_an_object(text);
    }
    let fields: Fields<'_> = match object_scan::scan(text, entries) {
        Ok(fields) => fields,
        Err(Unscanned::NotJson) => return Parsed::NotJson,
        Err(Unscanned::TooDeep) => return parse_with_serde(text),
    };
    if fields.refused {
        return Parsed::NoEvent;
    }
    let name = match present(fields.event) {
        None => None,
        Some(raw) if raw.text.starts_with('"') => match raw.text.get(1..raw.text.len() - 1) {
            Some(plain) if !raw.text.contains('\\') => Some(Cow::Borrowed(plain)),
            // Escapes: serde_json decodes them (and refuses a lone surrogate).
            _ => match serde_json::from_str::<String>(raw.text) {
                Ok(name) => Some(Cow::Owned(name)),
                Err(_) => return Parsed::NoEvent,
            },
        },
        Some(_) => return Parsed::NoEvent,
    };
    // Absent is the common case for both: no call, no `Value` moved.
    let Ok(id) = present(fields.id).map(field_value).transpose() else {
        return Parsed::NoEvent;
    };
    let Ok(ack) = present(fields.ack).map(field_value).transpose() else {
        return Parsed::NoEvent;
    };
    match (name, ack) {
        (Some(name), _) => Parsed::Event {
            name,
            id,
            data: match fields.data {
                None => DataField::Absent(entries.top_level()),
                Some(raw) if raw.depth > ALONE_AS_IN_PLACE_DEPTH => DataField::InPlace,
                Some(raw) => DataField::Raw(raw.text, entries.data()),
            },
        },
        (None, Some(ack)) => ack.as_u64().map_or(Parsed::NoEvent, Parsed::Ack),
        (None, None) => Parsed::NoEvent,
    }
}

/// An `id` or `ack` field's value, which may be any JSON: serde_json builds it (and refuses a
/// number out of range, a lone surrogate, nesting past its limit).
fn field_value(raw: Raw<'_>) -> Result<Value, ()> {
    if raw.depth > ALONE_AS_IN_PLACE_DEPTH {
        return Err(());
    }
    serde_json::from_str::<Value>(raw.text).map_err(|_| ())
}

/// The field, unless it is absent or `null` (as serde reads an `Option`).
fn present(raw: Option<Raw<'_>>) -> Option<Raw<'_>> {
    raw.filter(|raw| raw.text != "null")
}

/// A text that does not start with `{`: other JSON, or not JSON. (serde would also read a
/// struct from an array, so only an object is read as an envelope.)
fn not_an_object(text: &str) -> Parsed<'_, 'static> {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Parsed::NoEvent,
        Err(_) => Parsed::NotJson,
    }
}

/// The envelope as serde_json reads it: [`parse`]'s reference, and its reading of messages
/// nested too deep for the hand-written pass. Not JSON when serde_json cannot skip over the
/// text; otherwise any failure to read the envelope from it means no event.
pub(crate) fn parse_with_serde(text: &str) -> Parsed<'_, '_> {
    if !text.trim_start().starts_with('{') || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return not_an_object(text);
    }
    match serde_json::from_str::<Envelope<'_>>(text) {
        Ok(Envelope {
            event: Some(EventName(name)),
            id,
            has_data,
            ..
        }) => Parsed::Event {
            name,
            id,
            data: if has_data {
                DataField::InPlace
            } else {
                DataField::Absent(None)
            },
        },
        Ok(Envelope { ack: Some(ack), .. }) => ack.as_u64().map_or(Parsed::NoEvent, Parsed::Ack),
        Ok(_) | Err(_) => Parsed::NoEvent,
    }
}

/// Panics unless [`parse`] and [`parse_with_serde`] read `text` alike: not JSON, no event,
/// an acknowledgement and its number, or an event with the same name, the same `id` and a
/// `data` field in both or neither; a `data` field [`parse`] hands out as written must
/// read alone to the same value (or the same failure) as it reads in place; and a payload
/// read from the fields [`parse`] kept (flat, or `data`'s) must read as serde_json reads it
/// from the text.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn assert_reads_as_serde(text: &str) {
    /// A `data` field read in place, inside its object, as a typed handler reads it there.
    #[derive(Deserialize)]
    struct InPlace {
        data: Value,
    }
    let mut entries = Entries::default();
    let fast = parse(text, &mut entries);
    let reference = parse_with_serde(text);
    match (&fast, &reference) {
        (
            Parsed::Event { name, id, data },
            Parsed::Event {
                name: name2,
                id: id2,
                data: data2,
            },
        ) => {
            assert_eq!((name, id), (name2, id2), "{text:?}");
            assert_eq!(data.is_present(), data2.is_present(), "{text:?}");
            match data {
                DataField::Absent(Some(entries)) => super::scanned_object::assert_reads_as_serde(text, entries),
                DataField::Raw(raw, Some(entries)) => super::scanned_object::assert_reads_as_serde(raw, entries),
                _ => {}
            }
            if let DataField::Raw(raw, _) = data {
                let alone = serde_json::from_str::<Value>(raw).ok();
                let in_place = serde_json::from_str::<InPlace>(text).ok().map(|field| field.data);
                assert_eq!(alone, in_place, "data {raw:?} of {text:?}");
            }
        }
        _ => assert_eq!(fast, reference, "{text:?}"),
    }
}

#[derive(Serialize)]
struct Outgoing<'a, T: ?Sized> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<u64>,
    data: &'a T,
}

/// Serializes `{"event": name, ["id": id,] ["ack": n,] "data": data}`.
pub(crate) fn encode_event<T: Serialize + ?Sized>(
    name: &str,
    id: Option<&Value>,
    ack: Option<u64>,
    data: &T,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Outgoing {
        event: name,
        id,
        ack,
        data,
    })
}

/// The text of a validation-error reply; `id` is the failed request's, if it was one.
pub(crate) fn validation_error(message: &str, id: Option<&Value>, details: Option<(&str, &str, &str)>) -> String {
    let mut reply = serde_json::json!({ "event": "validation_error", "message": message });
    if let Some(id) = id {
        reply["id"] = id.clone();
    }
    if let Some((event, path, reason)) = details {
        reply["details"] = serde_json::json!({ "event": event, "path": path, "reason": reason });
    }
    reply.to_string()
}

impl SharedFrame {
    /// Encodes any serializable value as one JSON text frame, for broadcasts.
    ///
    /// ```
    /// use eventum_core::SharedFrame;
    /// let frame = SharedFrame::json(&serde_json::json!({"event": "joined", "room": "a"})).unwrap();
    /// assert_eq!(&frame.as_bytes()[2..], br#"{"event":"joined","room":"a"}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<SharedFrame, serde_json::Error> {
        Ok(SharedFrame::text(&serde_json::to_string(value)?))
    }

    /// Encodes the event `{"event": name, "data": data}` as one text frame, for broadcasts.
    pub fn event<T: Serialize + ?Sized>(name: &str, data: &T) -> Result<SharedFrame, serde_json::Error> {
        Ok(SharedFrame::text(&encode_event(name, None, None, data)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The envelope, with its kept fields leaked for the test's lifetime.
    fn parse(text: &str) -> Parsed<'_, '_> {
        super::parse(text, Box::leak(Box::default()))
    }

    #[test]
    fn classifies_text_messages() {
        assert!(matches!(
            parse(r#"{"event":"join","room":"a"}"#),
            Parsed::Event { name: Cow::Borrowed(name), id: None, data: DataField::Absent(Some([event, room])) }
                if name == "join" && (event.key, room.key, room.value.text) == ("event", "room", r#""a""#)
        ));
        assert!(matches!(
            parse(r#"{"id":7,"event":"get","data":null}"#),
            Parsed::Event { name, id: Some(id), data: DataField::Raw("null", None) } if name == "get" && id == json!(7)
        ));
        assert!(matches!(
            parse(r#"{"data":{"a":[1]},"event":"set"}"#),
            Parsed::Event {
                data: DataField::Raw(r#"{"a":[1]}"#, Some([entry])),
                ..
            } if entry.key == "a" && entry.value.text == "[1]"
        ));
        // Escapes are decoded into a copy.
        assert!(matches!(parse(r#"{"event":"a\"b"}"#), Parsed::Event { name: Cow::Owned(name), .. } if name == "a\"b"));
        assert!(matches!(parse(r#"{"ack":3,"data":{}}"#), Parsed::Ack(3)));
        assert!(matches!(parse(r#"{"ack":"x"}"#), Parsed::NoEvent));
        assert!(matches!(parse(r#"{"room":"a"}"#), Parsed::NoEvent));
        assert!(matches!(parse(r#"{"event":5}"#), Parsed::NoEvent));
        assert!(matches!(parse(r#"["event","x"]"#), Parsed::NoEvent));
        assert!(matches!(parse("42"), Parsed::NoEvent));
        assert!(matches!(parse("hello"), Parsed::NotJson));
        assert!(matches!(parse(r#"{"event":"x""#), Parsed::NotJson));
        assert!(matches!(parse(""), Parsed::NotJson));
    }

    #[test]
    fn nesting_limits_read_as_serde_json_reads_them() {
        let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
        // An `id` 126 containers deep is a value in place; 127 is past serde_json's limit.
        let id = |n| format!(r#"{{"event":"a","id":{}}}"#, nested(n));
        assert!(matches!(parse(&id(126)), Parsed::Event { id: Some(_), .. }));
        assert_eq!(parse(&id(127)), Parsed::NoEvent);
        // `data` that deep is read in place, by the typed handler.
        let data = |n| format!(r#"{{"event":"a","data":{}}}"#, nested(n));
        assert!(matches!(
            parse(&data(126)),
            Parsed::Event {
                data: DataField::Raw(..),
                ..
            }
        ));
        assert!(matches!(
            parse(&data(127)),
            Parsed::Event {
                data: DataField::InPlace,
                ..
            }
        ));
        // Past the scan's own limit, serde_json reads the whole message.
        assert!(matches!(
            parse(&data(500)),
            Parsed::Event {
                data: DataField::InPlace,
                ..
            }
        ));
        for n in [0, 1, 125, 126, 127, 128, 129, 500] {
            assert_reads_as_serde(&id(n));
            assert_reads_as_serde(&data(n));
        }
    }

    #[test]
    fn tricky_texts_read_as_serde_json_reads_them() {
        for text in [
            r#"{"event":"\ud800"}"#,
            r#"{"event":"a","\udc00":1}"#,
            r#"{"event":"a","ack":1e400}"#,
            r#"{"event":"a","id":"\ud800"}"#,
            r#"{"event":"a","event":"a"}"#,
            r#"{"event":"a","data":1,"data":1}"#,
            r#"{"ack":1,"ack":1}"#,
            r#"{"event":"a","x":1,"x":2}"#,
            r#"{"event":null,"ack":4}"#,
            r#"{"event":"a","ack":"x"}"#,
            r#"{"event":1e400}"#,
            r#"{"event":[1,"#,
            r#"{"event":tru}"#,
            r#"{"event":"a"}   "#,
            "\u{a0}{\"event\":\"a\"}",
            " \t\r\n{\"event\":\"a\"}",
        ] {
            assert_reads_as_serde(text);
        }
    }

    proptest::proptest! {
        /// Token soup: mostly broken JSON, some valid, always starting like an object.
        #[test]
        fn any_token_soup_reads_as_serde_json_reads_it(tokens in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", " ", "\"event\"", "\"data\"", "\"id\"", "\"ack\"",
                "\"x\"", "\"\\u0065vent\"", "\"\\ud800\"", "\"a\\\"b\"", "0", "-1.5e3", "1e400",
                "01", "null", "true", "fals", "\"", "\\", "\u{1}",
                // Payload keys and plain values the typed shortcut reads itself.
                "\"y\"", "\"a\"", "\"b\"", "\"d\"", "\"e\"", "\"f\"", "-7", "-0", "300",
                "9999999999999999999", "\"s\"", "false",
            ]),
            0..40,
        )) {
            assert_reads_as_serde(&format!("{{{}", tokens.concat()));
        }
    }

    #[test]
    fn encodes_events_replies_and_ack_requests() {
        assert_eq!(
            encode_event("hi", None, None, &json!({"a": 1})).unwrap(),
            r#"{"event":"hi","data":{"a":1}}"#
        );
        assert_eq!(
            encode_event("get", Some(&json!("r1")), None, &5).unwrap(),
            r#"{"event":"get","id":"r1","data":5}"#
        );
        assert_eq!(
            encode_event("ask", None, Some(2), &()).unwrap(),
            r#"{"event":"ask","ack":2,"data":null}"#
        );
    }

    #[test]
    fn validation_error_text() {
        assert_eq!(
            validation_error("Invalid data received", None, None),
            r#"{"event":"validation_error","message":"Invalid data received"}"#
        );
        assert_eq!(
            validation_error("Invalid data received", Some(&json!(4)), None),
            r#"{"event":"validation_error","id":4,"message":"Invalid data received"}"#
        );
        let detailed: Value =
            serde_json::from_str(&validation_error("bad", None, Some(("join", "room", "missing")))).unwrap();
        assert_eq!(
            detailed["details"],
            json!({"event": "join", "path": "room", "reason": "missing"})
        );
    }
}
