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

use crate::outbound::SharedFrame;

/// The fields the dispatcher needs, read without copying the rest of the message.
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

/// How a text message reads as an event.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// `{"event": "name", ...}`, and whether it has a `data` field.
    Event {
        name: Cow<'a, str>,
        id: Option<Value>,
        has_data: bool,
    },
    /// `{"ack": n, "data": ...}`: the client's answer to a server request.
    Ack(u64),
    /// Valid JSON, but not an object with a string `event` field.
    NoEvent,
    /// Not JSON at all.
    NotJson,
}

pub(crate) fn parse(text: &str) -> Parsed<'_> {
    // Only an object can be an event (serde would also read a struct from an array).
    if !text.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Parsed::NoEvent,
            Err(_) => Parsed::NotJson,
        };
    }
    match serde_json::from_str::<Envelope<'_>>(text) {
        Ok(Envelope {
            event: Some(EventName(name)),
            id,
            has_data,
            ..
        }) => Parsed::Event { name, id, has_data },
        Ok(Envelope { ack: Some(ack), .. }) => match ack.as_u64() {
            Some(n) => Parsed::Ack(n),
            None => Parsed::NoEvent,
        },
        Ok(_) => Parsed::NoEvent,
        Err(e) if e.is_syntax() || e.is_eof() => Parsed::NotJson,
        // Valid JSON of the wrong shape: an array, a number, `event` not a string, ...
        Err(_) => Parsed::NoEvent,
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

    #[test]
    fn classifies_text_messages() {
        assert!(matches!(
            parse(r#"{"event":"join","room":"a"}"#),
            Parsed::Event { name: Cow::Borrowed(name), id: None, has_data: false } if name == "join"
        ));
        assert!(matches!(
            parse(r#"{"id":7,"event":"get","data":null}"#),
            Parsed::Event { name, id: Some(id), has_data: true } if name == "get" && id == json!(7)
        ));
        assert!(matches!(
            parse(r#"{"data":{"a":[1]},"event":"set"}"#),
            Parsed::Event { has_data: true, .. }
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
