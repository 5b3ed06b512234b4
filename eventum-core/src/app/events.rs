//! Typed handlers that read the envelope's payload (`data`, or the flat object of the
//! original framework), plain requests answered by the handler's return value, and their
//! schema-recording forms (feature `schema`).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::context::{Context, ReplyError};
use super::envelope::DataField;
use super::object_scan::Entry;
use super::scanned_object;
use super::schema::{ClientDoc, ServerDoc};
use super::{describe_validation_error, AppBuilder, EventBody, EventHandler};

/// `data` when the object has it (even `null`), nothing when it has not.
struct Present<T>(Option<T>);

impl<T> Default for Present<T> {
    fn default() -> Self {
        Present(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(|value| Present(Some(value)))
    }
}

/// The envelope's `data` field, deserialized in the same pass that reads the object.
#[derive(Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
struct WithData<T> {
    #[serde(default)]
    data: Present<T>,
}

/// A payload from the fields the envelope's scan kept of its object, else from its text.
fn read_object<T: DeserializeOwned>(entries: Option<&[Entry<'_>]>, text: &str) -> Option<T> {
    entries
        .and_then(scanned_object::deserialize)
        .or_else(|| serde_json::from_str::<T>(text).ok())
}

/// The payload of an event: its `data` field, or, without one, the whole (flat) object.
/// On failure, the field path (from the object: `data.room` or `room`) and the reason.
fn parse_payload<T: DeserializeOwned>(body: &EventBody<'_>) -> Result<T, (String, String)> {
    // The plain read is the fast path; path tracking runs only to describe a failure.
    let plain = match &body.value {
        Some(value) => match value.get("data") {
            Some(data) => T::deserialize(data).ok(),
            None => T::deserialize(value).ok(),
        },
        // The envelope found the payload (`data`, or the flat object): read from the fields
        // it kept, else parsed alone; a `data` nested too deep, in place.
        None => match body.data {
            DataField::Raw(data, entries) => read_object(entries, data),
            DataField::InPlace => match serde_json::from_str::<WithData<T>>(body.text) {
                Ok(WithData { data: Present(data) }) => data,
                Err(_) => None,
            },
            DataField::Absent(entries) => read_object(entries, body.text),
        },
    };
    if let Some(payload) = plain {
        return Ok(payload);
    }
    let has_data = match &body.value {
        Some(value) => value.get("data").is_some(),
        None => body.data.is_present(),
    };
    let tracked = match (&body.value, has_data) {
        (Some(value), true) => serde_path_to_error::deserialize::<_, WithData<T>>(value).map(|_| ()),
        (Some(value), false) => serde_path_to_error::deserialize::<_, T>(value).map(|_| ()),
        (None, true) => {
            serde_path_to_error::deserialize::<_, WithData<T>>(&mut serde_json::Deserializer::from_str(body.text))
                .map(|_| ())
        }
        (None, false) => {
            serde_path_to_error::deserialize::<_, T>(&mut serde_json::Deserializer::from_str(body.text)).map(|_| ())
        }
    };
    Err(match tracked {
        Err(e) => describe_validation_error(&e),
        // The plain parse failed but the tracked one did not: cannot happen for one input.
        Ok(()) => (String::new(), "invalid payload".to_owned()),
    })
}

impl AppBuilder {
    /// Handles the event `name` with its payload deserialized into `T`: the envelope's
    /// `data` field, or, for a message without one, the whole flat object as eventum-asgi
    /// clients send it (see [`envelope`](super::envelope)). When it does not fit, the client
    /// gets the validation-error reply (with the request's `id`, if it was a request) and
    /// the connection stays open.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::testing::TestServer;
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Join { room: String }
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .on_event("join", |ctx, join: Join| ctx.join(&join.room))
    ///     .build();
    /// let server = TestServer::new(app);
    /// let mut client = server.connect("/ws").unwrap();
    /// client.send_text(r#"{"event":"join","data":{"room":"a"}}"#);
    /// client.send_text(r#"{"event":"join","room":"b"}"#); // the original's flat form
    /// client.recv_all();
    /// assert_eq!(server.room_members("a").len(), 1);
    /// assert_eq!(server.room_members("b").len(), 1);
    /// ```
    pub fn on_event<T: DeserializeOwned + 'static>(
        self,
        name: &str,
        handler: impl Fn(&mut Context<'_>, T) + Send + Sync + 'static,
    ) -> Self {
        self.payload_handler(name, handler)
            .document_client(ClientDoc::untyped(name, false))
    }

    /// Handles the request `name` (an event with an `id`): the payload is read as by
    /// [`on_event`](Self::on_event) and the handler's return value is the reply
    /// `{"event": name, "id": id, "data": reply}`. The same event sent without an `id` runs
    /// the handler and sends nothing back.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::testing::TestServer;
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Add { a: i64, b: i64 }
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .on_request("add", |_ctx, add: Add| add.a + add.b)
    ///     .build();
    /// let server = TestServer::new(app);
    /// let mut client = server.connect("/ws").unwrap();
    /// client.send_text(r#"{"event":"add","id":1,"data":{"a":2,"b":3}}"#);
    /// assert_eq!(client.recv_json().unwrap(), serde_json::json!({"event":"add","id":1,"data":5}));
    /// ```
    pub fn on_request<T: DeserializeOwned + 'static, R: Serialize + 'static>(
        self,
        name: &str,
        handler: impl Fn(&mut Context<'_>, T) -> R + Send + Sync + 'static,
    ) -> Self {
        self.payload_handler(name, move |ctx, payload: T| {
            let reply = handler(ctx, payload);
            match ctx.reply(&reply) {
                Ok(()) => {}
                Err(ReplyError::NoId) => {
                    log::debug!(
                        "connection {}: request {:?} sent without an id gets no reply",
                        ctx.id(),
                        ctx.event_name()
                    );
                }
                Err(e) => log::warn!("connection {}: {e}", ctx.id()),
            }
        })
        .document_client(ClientDoc::untyped(name, true))
    }

    /// Declares an event the server sends to clients, with the JSON Schema of its `data`
    /// (`json!({})` for any), for the app's AsyncAPI document and TypeScript typings.
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use serde_json::json;
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .declare_event("tick", json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}))
    ///     .build();
    /// assert_eq!(app.asyncapi()["operations"]["send.tick"]["action"], "send");
    /// assert!(app.typescript().contains("  \"tick\": {\n    \"n\": number;\n  };"));
    /// ```
    pub fn declare_event(self, name: &str, data_schema: Value) -> Self {
        self.document_server(ServerDoc {
            name: name.to_owned(),
            data: data_schema,
        })
    }

    fn payload_handler<T: DeserializeOwned + 'static>(
        mut self,
        name: &str,
        handler: impl Fn(&mut Context<'_>, T) + Send + Sync + 'static,
    ) -> Self {
        let run = Arc::new(
            move |ctx: &mut Context<'_>, body: EventBody<'_>| match parse_payload::<T>(&body) {
                Ok(payload) => handler(ctx, payload),
                Err((path, reason)) => {
                    log::debug!("event {:?} failed validation at {path}: {reason}", ctx.event_name());
                    let _ = ctx.send_validation_error(&path, &reason);
                }
            },
        );
        self.inner.events.insert(
            name.to_owned(),
            EventHandler {
                run,
                wants_value: false,
                dispatched: Default::default(),
            },
        );
        self
    }
}

#[cfg(feature = "schema")]
impl AppBuilder {
    /// [`on_event`](Self::on_event), recording `T`'s JSON Schema as the event's payload in
    /// the app's AsyncAPI document and TypeScript typings (feature `schema`).
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Join { room: String }
    /// #[derive(Serialize, JsonSchema)]
    /// struct Joined { room: String }
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .event("join", |ctx, join: Join| ctx.join(&join.room))
    ///     .emits::<Joined>("joined")
    ///     .build();
    /// assert!(app.typescript().contains("\"join\": {\n    \"room\": string;\n  };"));
    /// assert_eq!(app.asyncapi()["asyncapi"], "3.0.0");
    /// ```
    pub fn event<T: DeserializeOwned + schemars::JsonSchema + 'static>(
        self,
        name: &str,
        handler: impl Fn(&mut Context<'_>, T) + Send + Sync + 'static,
    ) -> Self {
        self.payload_handler(name, handler).document_client(ClientDoc {
            name: name.to_owned(),
            data: super::schema::schema_of::<T>(),
            reply: None,
        })
    }

    /// [`on_request`](Self::on_request), recording the request's and the reply's JSON
    /// Schema (feature `schema`).
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::testing::TestServer;
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Add { a: i64, b: i64 }
    /// #[derive(Serialize, JsonSchema)]
    /// struct Sum { sum: i64 }
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/ws"))
    ///     .request("add", |_ctx, add: Add| Sum { sum: add.a + add.b })
    ///     .build();
    /// assert!(app.asyncapi()["operations"]["receive.add"]["reply"].is_object());
    /// assert!(app.typescript().contains("\"add\": { data: {"));
    /// let server = TestServer::new(app);
    /// let mut client = server.connect("/ws").unwrap();
    /// client.send_text(r#"{"event":"add","id":1,"data":{"a":2,"b":3}}"#);
    /// assert_eq!(client.recv_json().unwrap(), serde_json::json!({"event":"add","id":1,"data":{"sum":5}}));
    /// ```
    pub fn request<T, R>(self, name: &str, handler: impl Fn(&mut Context<'_>, T) -> R + Send + Sync + 'static) -> Self
    where
        T: DeserializeOwned + schemars::JsonSchema + 'static,
        R: Serialize + schemars::JsonSchema + 'static,
    {
        self.on_request(name, handler).document_client(ClientDoc {
            name: name.to_owned(),
            data: super::schema::schema_of::<T>(),
            reply: Some(super::schema::schema_of::<R>()),
        })
    }

    /// Declares an event the server sends, with `T` as its `data` (feature `schema`); see
    /// [`declare_event`](Self::declare_event).
    pub fn emits<T: schemars::JsonSchema + ?Sized>(self, name: &str) -> Self {
        self.declare_event(name, super::schema::schema_of::<T>())
    }
}
