//! An event's payload deserialized from the fields the envelope's scan kept ([`Entry`]),
//! instead of from its text a second time.
//!
//! A typed handler's payload is an object: the `data` field's, as in
//! `{"event": "move", "data": {"x": 1, "y": 2}}`, or, in the flat form, the event's own,
//! `{"event": "move", "x": 1, "y": 2}`. serde_json would read that object again, key by key
//! (skipping `event` in the flat form); the scan has already checked it and found every key
//! and where every value is written. So [`deserialize`] hands the keys to the struct's visitor
//! as they are and reads only the values.
//!
//! It reads a payload only where it is sure to read it as serde_json does, and says `None`
//! otherwise; the caller then reads the text with serde_json, whose verdict it is. The
//! deserializer below therefore answers only the requests serde_json answers for an object
//! whatever the type asking:
//! - the object as a map or a struct (`deserialize_any`, `deserialize_map`,
//!   `deserialize_struct`), and nothing else;
//! - each key as a string, as serde_json's key deserializer gives one (borrowed: the scan
//!   keeps only keys without escapes), and not as a number, `bool`, option, newtype, enum or
//!   bytes;
//! - each value as serde_json reads it: a plain integer or string, a literal, or a value
//!   the struct skips, here; anything else by serde_json from the value's own text, which
//!   reads alone as it reads in place unless it nests near serde_json's depth limit (then
//!   `None`);
//! - and only a read without any error: a type may go on from one (a lenient field), but
//!   after it serde_json's parser would not be where this one is.
//!
//! The `envelope` fuzz target checks the claim against serde_json itself, for several
//! payload types.

use std::cell::Cell;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::envelope::ALONE_AS_IN_PLACE_DEPTH;
use super::object_scan::{Entry, Raw};

/// `T` read from an object's fields, or `None` where serde_json must read it from the text.
/// A `Some` is what serde_json reads from the object's text; a `None` says nothing.
pub(crate) fn deserialize<T: DeserializeOwned>(entries: &[Entry<'_>]) -> Option<T> {
    let failed = Cell::new(false);
    let read = T::deserialize(Object {
        entries,
        errors: Errors(&failed),
    });
    // A type may go on from an error (a lenient field, an `Option` of a failed read), but
    // serde_json's parser would not be where this one is after it: only a read without any
    // error stands.
    match failed.get() {
        false => read.ok(),
        true => None,
    }
}

type Error = serde_json::Error;

/// Where every error on the way is noted, even one the type goes on from.
#[derive(Clone, Copy)]
struct Errors<'f>(&'f Cell<bool>);

impl Errors<'_> {
    /// Notes an error.
    fn watch<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_err() {
            self.0.set(true);
        }
        result
    }

    /// Not read here: the caller reads the text with serde_json, which gives the verdict.
    #[cold]
    fn unread<T>(self) -> Result<T, Error> {
        self.watch(Err(de::Error::custom("left to serde_json")))
    }
}

/// Deserializer methods answered with [`Errors::unread`]: what serde_json would answer
/// differently, or only by reading the text.
macro_rules! left_to_serde_json {
    ($($method:ident($($arg:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $(_: $arg,)* _: V) -> Result<V::Value, Error> {
            self.errors.unread()
        }
    )*};
}

/// The whole object.
struct Object<'a, 'e> {
    entries: &'e [Entry<'a>],
    errors: Errors<'e>,
}

impl<'de> de::Deserializer<'de> for Object<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut fields = Fields {
            entries: self.entries.iter(),
            value: None,
            errors: self.errors,
        };
        let read = self.errors.watch(visitor.visit_map(&mut fields))?;
        // serde_json refuses an object whose visitor stops before its end.
        match fields.entries.len() == 0 && fields.value.is_none() {
            true => Ok(read),
            false => self.errors.unread(),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    left_to_serde_json! {
        deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32() deserialize_i64()
        deserialize_i128() deserialize_u8() deserialize_u16() deserialize_u32() deserialize_u64()
        deserialize_u128() deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_bytes() deserialize_byte_buf() deserialize_option()
        deserialize_unit() deserialize_unit_struct(&'static str)
        deserialize_newtype_struct(&'static str) deserialize_seq() deserialize_tuple(usize)
        deserialize_tuple_struct(&'static str, usize)
        deserialize_enum(&'static str, &'static [&'static str])
        deserialize_identifier() deserialize_ignored_any()
    }
}

/// The object's fields, one key and then its value at a time.
struct Fields<'a, 'e> {
    entries: std::slice::Iter<'e, Entry<'a>>,
    /// The value of the key just read.
    value: Option<Raw<'a>>,
    errors: Errors<'e>,
}

impl<'de> MapAccess<'de> for Fields<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.value.is_some() {
            return self.errors.unread();
        }
        match self.entries.next() {
            Some(entry) => {
                self.value = Some(entry.value);
                let key = Key {
                    text: entry.key,
                    errors: self.errors,
                };
                self.errors.watch(seed.deserialize(key).map(Some))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let raw = match self.value.take() {
            Some(raw) if raw.depth <= ALONE_AS_IN_PLACE_DEPTH => raw,
            _ => return self.errors.unread(),
        };
        let value = FieldValue {
            text: raw.text,
            errors: self.errors,
        };
        self.errors.watch(seed.deserialize(value))
    }
}

/// A key without escapes, given as serde_json's key deserializer gives a string.
struct Key<'a, 'e> {
    text: &'a str,
    errors: Errors<'e>,
}

impl<'de> de::Deserializer<'de> for Key<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.errors.watch(visitor.visit_borrowed_str(self.text))
    }

    // What serde_json's key deserializer also reads as a string.
    forward_to_deserialize_any! {
        char str string unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }

    // What it reads otherwise: a number or `bool` inside the quotes, an option, a newtype, an
    // enum, bytes.
    left_to_serde_json! {
        deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32() deserialize_i64()
        deserialize_i128() deserialize_u8() deserialize_u16() deserialize_u32() deserialize_u64()
        deserialize_u128() deserialize_f32() deserialize_f64() deserialize_bytes()
        deserialize_byte_buf() deserialize_option() deserialize_newtype_struct(&'static str)
        deserialize_enum(&'static str, &'static [&'static str])
    }
}

/// A field's value as written. What needs no decision (a plain integer or string, a literal,
/// a value skipped) is read here as serde_json reads it; everything else by serde_json, from
/// the value's text alone.
struct FieldValue<'a, 'e> {
    text: &'a str,
    errors: Errors<'e>,
}

impl<'de> FieldValue<'de, '_> {
    fn serde_json<T>(
        self,
        read: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut value = serde_json::Deserializer::from_str(self.text);
        let read = self.errors.watch(read(&mut value))?;
        self.errors.watch(value.end())?;
        Ok(read)
    }

    /// The text between a string's quotes, if it has no escapes.
    fn plain_string(&self) -> Option<&'de str> {
        self.text
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .filter(|inner| !inner.contains('\\'))
    }
}

/// A plain integer as serde_json reads one: without a fraction or exponent, and short enough
/// not to overflow. serde_json gives a negative one as `i64`, any other as `u64`, and `-0` as
/// a float (left to it here).
enum Integer {
    Unsigned(u64),
    Negative(i64),
}

fn integer(text: &str) -> Option<Integer> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    // 18 digits fit an `i64`, 19 a `u64`.
    if digits.is_empty() || digits.len() > 18 + usize::from(!negative) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    match (negative, magnitude) {
        (false, n) => Some(Integer::Unsigned(n)),
        (true, 0) => None,
        (true, n) => i64::try_from(n).ok().map(|n| Integer::Negative(-n)),
    }
}

/// Integer requests: a plain integer here, anything else by serde_json.
macro_rules! integer_or_serde_json {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match integer(self.text) {
                Some(Integer::Unsigned(n)) => self.errors.watch(visitor.visit_u64(n)),
                Some(Integer::Negative(n)) => self.errors.watch(visitor.visit_i64(n)),
                None => self.serde_json(|value| de::Deserializer::$method(value, visitor)),
            }
        }
    )*};
}

/// Requests serde_json answers, from the value's text.
macro_rules! serde_json_reads {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            self.serde_json(|value| de::Deserializer::$method(value, $($arg,)* visitor))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for FieldValue<'de, '_> {
    type Error = Error;

    integer_or_serde_json! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.plain_string() {
            Some(text) => self.errors.watch(visitor.visit_borrowed_str(text)),
            None => self.serde_json(|value| de::Deserializer::deserialize_str(value, visitor)),
        }
    }

    /// serde_json reads a `String` as it reads a `&str`.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.text {
            "true" => self.errors.watch(visitor.visit_bool(true)),
            "false" => self.errors.watch(visitor.visit_bool(false)),
            _ => self.serde_json(|value| de::Deserializer::deserialize_bool(value, visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let errors = self.errors;
        match self.text {
            "null" => errors.watch(visitor.visit_none()),
            _ => errors.watch(visitor.visit_some(self)),
        }
    }

    /// The scan checked the value as serde_json checks one it skips.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.errors.watch(visitor.visit_unit())
    }

    serde_json_reads! {
        deserialize_any() deserialize_i128() deserialize_u128() deserialize_f32() deserialize_f64()
        deserialize_char() deserialize_bytes() deserialize_byte_buf() deserialize_unit()
        deserialize_unit_struct(name: &'static str) deserialize_newtype_struct(name: &'static str)
        deserialize_seq() deserialize_tuple(len: usize) deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_map() deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str]) deserialize_identifier()
    }
}

/// Payload types of several kinds, each with the keys short fuzzed texts hit.
#[cfg(any(test, feature = "fuzzing"))]
mod shapes {
    use std::collections::{BTreeMap, HashMap};

    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Debug, PartialEq, Deserialize)]
    pub(super) struct Point {
        pub(super) x: i64,
        pub(super) y: i64,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub(super) struct Mixed {
        a: Option<String>,
        #[serde(default)]
        b: Vec<Value>,
        c: Option<std::borrow::Cow<'static, str>>,
        d: Option<f64>,
        #[serde(rename = "event")]
        name: Option<char>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Strict {
        event: String,
        a: Option<u8>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(tag = "event")]
    pub(super) enum Tagged {
        #[serde(rename = "a")]
        A { x: Option<i32> },
        #[serde(rename = "b")]
        B(HashMap<String, Value>),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    pub(super) enum Untagged {
        Point(Point),
        Other { a: bool },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub(super) struct Flattened {
        a: Option<u64>,
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub(super) struct Scalars {
        pub(super) a: Option<i64>,
        pub(super) b: Option<u64>,
        pub(super) c: Option<bool>,
        pub(super) d: Option<String>,
        pub(super) e: Option<u8>,
        pub(super) f: Option<Option<i8>>,
        pub(super) g: Option<f32>,
    }

    /// Reads the first key and stops there: serde_json refuses the rest of the object.
    #[derive(Debug, PartialEq)]
    pub(super) struct FirstKeyOnly(pub(super) Option<String>);

    impl<'de> Deserialize<'de> for FirstKeyOnly {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct First;
            impl<'de> serde::de::Visitor<'de> for First {
                type Value = FirstKeyOnly;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FirstKeyOnly, A::Error> {
                    map.next_key().map(FirstKeyOnly)
                }
            }
            deserializer.deserialize_map(First)
        }
    }

    /// Goes on from a failed read of its payload, after which serde_json's parser would be
    /// elsewhere than the shortcut's.
    #[derive(Debug, PartialEq)]
    pub(super) struct LenientTop(pub(super) Option<Point>);

    impl<'de> Deserialize<'de> for LenientTop {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            Ok(LenientTop(Option::<Point>::deserialize(deserializer).ok().flatten()))
        }
    }

    /// The same for one field.
    #[derive(Debug, PartialEq, Deserialize)]
    pub(super) struct LenientField {
        #[serde(default, deserialize_with = "lenient")]
        pub(super) a: Option<u8>,
        pub(super) b: Option<i64>,
    }

    fn lenient<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
        Ok(u8::deserialize(deserializer).ok())
    }

    /// Keys read as numbers: left to serde_json.
    pub(super) type NumberKeys = BTreeMap<u32, Value>;
    pub(super) type Map = HashMap<String, Value>;
    pub(super) type Unit = ();
    pub(super) type Optional = Option<Point>;
}

/// Panics unless every payload type reads from `entries` as serde_json reads it from `text`,
/// or is left to serde_json: the claim [`deserialize`] makes.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn assert_reads_as_serde(text: &str, entries: &[Entry<'_>]) {
    fn check<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str, entries: &[Entry<'_>]) {
        if let Some(read) = deserialize::<T>(entries) {
            let reference = serde_json::from_str::<T>(text).ok();
            assert_eq!(Some(read), reference, "{} from {text:?}", std::any::type_name::<T>());
        }
    }
    check::<serde_json::Value>(text, entries);
    check::<shapes::Point>(text, entries);
    check::<shapes::Mixed>(text, entries);
    check::<shapes::Scalars>(text, entries);
    check::<shapes::Strict>(text, entries);
    check::<shapes::Tagged>(text, entries);
    check::<shapes::Untagged>(text, entries);
    check::<shapes::Flattened>(text, entries);
    check::<shapes::FirstKeyOnly>(text, entries);
    check::<shapes::LenientTop>(text, entries);
    check::<shapes::LenientField>(text, entries);
    check::<shapes::NumberKeys>(text, entries);
    check::<shapes::Map>(text, entries);
    check::<shapes::Unit>(text, entries);
    check::<shapes::Optional>(text, entries);
}

#[cfg(test)]
mod tests {
    use super::shapes::*;
    use super::*;
    use crate::app::object_scan;

    /// The flat payload read from the scan's fields, or `None` where it is left to
    /// serde_json; and the same payload as the `data` field of an event.
    fn read<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) -> Option<T> {
        let mut kept = object_scan::Entries::default();
        object_scan::scan(text, &mut kept).expect(text);
        let flat = kept.top_level()?;
        assert_reads_as_serde(text, flat);
        let read = deserialize::<T>(flat);
        let event = format!(r#"{{"event":"e","data":{text}}}"#);
        let mut kept = object_scan::Entries::default();
        object_scan::scan(&event, &mut kept).expect("an object");
        assert!(
            kept.data().is_some_and(|data| deserialize::<T>(data) == read),
            "{event:?}"
        );
        read
    }

    #[test]
    fn a_flat_event_reads_from_its_fields() {
        let text = r#"{"event":"move","x":1,"y":-2}"#;
        assert_eq!(read::<Point>(text), Some(Point { x: 1, y: -2 }));
        assert_eq!(read::<serde_json::Value>(text), serde_json::from_str(text).ok());
        assert_eq!(read::<Map>(text), serde_json::from_str(text).ok());
        // Whitespace, strings with escapes, nested values and a borrowed key.
        let text = r#" { "event" : "a" , "x" : [1, {"y": "\u00e9\"" }] } "#;
        assert_eq!(read::<serde_json::Value>(text), serde_json::from_str(text).ok());
        // A payload tagged by the event's name.
        assert_eq!(read::<Tagged>(r#"{"event":"a","x":5}"#), Some(Tagged::A { x: Some(5) }));
    }

    #[test]
    fn plain_values_read_as_serde_json_reads_them() {
        let scalars = |text: &str| read::<Scalars>(text).expect("read here");
        let all = scalars(r#"{"a":-12,"b":9999999999999999999,"c":true,"d":"plain","e":255,"f":null,"g":7}"#);
        assert_eq!(
            all,
            Scalars {
                a: Some(-12),
                b: Some(9_999_999_999_999_999_999),
                c: Some(true),
                d: Some("plain".to_owned()),
                e: Some(255),
                // serde reads `null` as the outer `None`.
                f: None,
                g: Some(7.0),
            }
        );
        assert_eq!(
            scalars(r#"{"a":-999999999999999999}"#).a,
            Some(-999_999_999_999_999_999)
        );
        assert_eq!(
            scalars(r#"{"a":0,"c":false}"#),
            Scalars {
                a: Some(0),
                c: Some(false),
                ..scalars("{}")
            }
        );
        // Left to serde_json and read the same: longer integers, escapes, a number for a
        // string, `-0` (a float to serde_json), out of range for the type.
        for text in [
            r#"{"b":18446744073709551615}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"d":"\u00e9\n"}"#,
            r#"{"d":5}"#,
            r#"{"a":-0}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e2}"#,
            r#"{"e":256}"#,
            r#"{"f":-129}"#,
            r#"{"c":"true"}"#,
            r#"{"b":-1}"#,
        ] {
            let (here, reference) = (read::<Scalars>(text), serde_json::from_str::<Scalars>(text).ok());
            assert!(here.is_none() || here == reference, "{text}");
        }
        assert_eq!(read::<Scalars>(r#"{"a":-0}"#), None);
        assert_eq!(read::<Scalars>(r#"{"e":256}"#), None);
    }

    #[test]
    fn what_it_cannot_read_as_serde_json_does_is_left_to_serde_json() {
        // Each of these reads, or fails, through serde_json instead.
        assert_eq!(read::<NumberKeys>(r#"{"1":null}"#), None);
        assert_eq!(read::<Optional>(r#"{"x":1,"y":2}"#), None);
        assert_eq!(read::<Unit>("{}"), None);
        // A type that goes on from an error: serde_json's parser would not be where the
        // shortcut's is after it (here it reads the point, or refuses the `[`).
        assert_eq!(read::<LenientTop>(r#"{"x":1,"y":2}"#), None);
        assert_eq!(
            serde_json::from_str::<LenientTop>(r#"{"x":1,"y":2}"#).ok(),
            Some(LenientTop(Some(Point { x: 1, y: 2 })))
        );
        assert_eq!(read::<LenientField>(r#"{"a":[1],"b":2}"#), None);
        assert!(serde_json::from_str::<LenientField>(r#"{"a":[1],"b":2}"#).is_err());
        assert_eq!(
            read::<LenientField>(r#"{"a":7,"b":2}"#),
            Some(LenientField { a: Some(7), b: Some(2) })
        );
        // A visitor that stops before the object's end: serde_json refuses that.
        assert_eq!(read::<FirstKeyOnly>("{}"), Some(FirstKeyOnly(None)));
        assert_eq!(read::<FirstKeyOnly>(r#"{"a":1}"#), None);
        // Wrong types and missing fields: serde_json gives the verdict (and the error path).
        assert_eq!(read::<Point>(r#"{"x":1}"#), None);
        assert_eq!(read::<Point>(r#"{"x":"1","y":2}"#), None);
        assert_eq!(read::<Strict>(r#"{"event":"a","b":1}"#), None);
        // A duplicate field: serde_json refuses it in a struct; a map keeps the last value.
        assert_eq!(read::<Point>(r#"{"x":1,"x":2,"y":3}"#), None);
        assert_eq!(
            read::<Map>(r#"{"x":1,"x":2}"#).and_then(|map| map.get("x").cloned()),
            Some(2.into())
        );
    }

    #[test]
    fn the_scan_keeps_the_payloads_fields_if_few_and_plain() {
        // The keys kept: of the top level (flat), or of `data`.
        let kept = |text: &str| {
            let mut kept = object_scan::Entries::default();
            object_scan::scan(text, &mut kept).expect("an object");
            let keys = |entries: &[Entry<'_>]| entries.iter().map(|entry| entry.key).collect::<Vec<_>>().join(",");
            (kept.top_level().map(keys), kept.data().map(keys))
        };
        let none = (None, None);
        let flat = |keys: &str| (Some(keys.to_owned()), None);
        let data = |keys: &str| (None, Some(keys.to_owned()));
        assert_eq!(kept("{}"), flat(""));
        assert_eq!(
            kept(r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8}"#),
            flat("a,b,c,d,e,f,g,h")
        );
        assert_eq!(kept(r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9}"#), none);
        assert_eq!(kept(r#"{"\u0061":1}"#), none);
        // `data`'s fields replace the top level's, wherever it is.
        assert_eq!(kept(r#"{"event":"e","data":{"x":1,"y":{"z":2}},"id":3}"#), data("x,y"));
        assert_eq!(
            kept(r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"data":{}}"#),
            data("")
        );
        assert_eq!(kept(r#"{"data":{"\u0061":1}}"#), none);
        assert_eq!(
            kept(r#"{"data":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9}}"#),
            none
        );
        // A `data` that is no object has no fields; an escaped `data` key is not looked into.
        assert_eq!(kept(r#"{"data":[{"x":1}],"event":"e"}"#), none);
        assert_eq!(kept(r#"{"data":null}"#), none);
        assert_eq!(kept(r#"{"d\u0061ta":{"x":1}}"#), none);
    }

    #[test]
    fn a_value_nested_near_serde_jsons_limit_is_left_to_it() {
        let nested = |n: usize| format!("{{\"x\":{}{}}}", "[".repeat(n), "]".repeat(n));
        let value = |n: usize| read::<serde_json::Value>(&nested(n));
        assert!(value(ALONE_AS_IN_PLACE_DEPTH as usize).is_some());
        assert_eq!(value(ALONE_AS_IN_PLACE_DEPTH as usize + 1), None);
        // 127 containers in place are past serde_json's limit: it refuses the object.
        assert!(serde_json::from_str::<serde_json::Value>(&nested(127)).is_err());
    }
}
