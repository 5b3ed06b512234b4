//! The framework layer: an [`App`] of handshake routes, middleware, event handlers and
//! hooks, run per connection by a [`Session`](crate::driver::Session) that adapters drive
//! exactly like a [`Connection`](crate::Connection).
//!
//! This is the Rust form of eventum-asgi's feature table:
//!
//! | eventum-asgi | eventum |
//! |---|---|
//! | `@app.handshake_route('/p', required_headers=[...])` | [`AppBuilder::route`] with [`Route::require_header`] |
//! | `connection.accept(extra_headers, subprotocols_factory)` | [`Upgrade::add_header`], [`Upgrade::choose_subprotocol`] |
//! | `connection.send_http_response(...)` | return `Err(HttpResponse)` from a route or middleware |
//! | `@app.event('name')` | [`AppBuilder::on`] |
//! | `@app.event('name', validator=Model)` | [`AppBuilder::on_event`] (any `serde::Deserialize`; [`AppBuilder::on_typed`] is the same) |
//! | `send_text` / `send_bytes` / `send_text(Event(...))` | [`Context::send_text`], [`Context::send_binary`], [`Context::send_event`] |
//! | `close(code, reason)` | [`Context::close`] |
//! | flags | [`Context::flags_mut`] ([`Flags`]) |
//! | send later, from elsewhere | [`Context::handle`] ([`ConnectionHandle`], the same type on every adapter) |
//! | handshake middleware | [`AppBuilder::middleware`] |
//! | lifespan `startup` / `shutdown` | [`AppBuilder::on_startup`], [`AppBuilder::on_shutdown`] |
//!
//! The JSON envelope (events, replies, acknowledgements) is described in [`envelope`]; the
//! JavaScript client that speaks it is [`client`], and [`schema`] exports the app's events
//! as AsyncAPI and TypeScript.

pub mod client;
mod context;
pub(crate) mod dispatch;
pub mod envelope;
mod events;
mod extensions;
mod flags;
mod guard;
mod handle;
pub(crate) mod hub;
mod name_hash;
mod object_scan;
mod route;
mod scanned_object;
pub mod schema;
mod upgrade;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::event::Closed;
use crate::handshake::{HttpResponse, Request};
use envelope::DataField;
use name_hash::BuildNameHasher;

pub use context::{AckCallback, AckError, Action, Context, ReplyError};
pub use extensions::Extensions;
pub use flags::Flags;
pub(crate) use handle::{Command, Mailbox};
pub use handle::{ConnectionHandle, HandleError};
pub use route::{Route, UpgradeResult};
pub use upgrade::{Next, SubprotocolChooser, Upgrade};

/// A connection's unique id: unique within the process, and across nodes when the server
/// has a [backplane](crate::backplane) (its top bits are the node's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl ConnectionId {
    /// The next id of node `node` (`0` without a backplane).
    pub(crate) fn next_on(node: u32) -> ConnectionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let counter = NEXT.fetch_add(1, Ordering::Relaxed) & crate::backplane::COUNTER_MASK;
        ConnectionId(crate::backplane::id_base(node) | counter)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An incoming event, as event middleware and untyped handlers see it: the event name
/// and the whole JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMessage {
    name: String,
    value: serde_json::Value,
}

impl EventMessage {
    /// The `event` field.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole JSON object.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// One field of the object.
    pub fn get(&self, field: &str) -> Option<&serde_json::Value> {
        self.value.get(field)
    }

    /// The `data` field, if any (the eventum-asgi envelope).
    pub fn data(&self) -> Option<&serde_json::Value> {
        self.get("data")
    }

    /// The `id` field, if any (the client asks for a reply).
    pub fn id(&self) -> Option<&serde_json::Value> {
        self.get("id")
    }

    /// Deserializes the whole object into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.value)
    }
}

/// What event middleware decides about an event.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Pass the event on to the next middleware and its handler.
    Continue,
    /// Drop the event silently.
    Drop,
    /// Drop the event and send this JSON value (e.g. an error event) to the client. When
    /// the event was a request and the value is an object without an `id`, the request's
    /// `id` is added, so the client's request settles (eventum.js rejects it with a
    /// `RejectedError`) instead of waiting for its timeout.
    Reject(serde_json::Value),
    /// Close the connection with this code and reason.
    Close(crate::CloseCode, String),
}

type RunEvent = Arc<dyn Fn(&mut Context<'_>, EventBody<'_>) + Send + Sync>;

/// A registered event handler; `wants_value` asks for the message parsed as a JSON value.
#[derive(Clone)]
pub(crate) struct EventHandler {
    run: RunEvent,
    wants_value: bool,
    /// Dispatches of this event, for the metrics.
    dispatched: crate::observe::EventCounter,
}
type EventMiddleware = Arc<dyn Fn(&mut Context<'_>, &EventMessage) -> Flow + Send + Sync>;
type TextHandler = Arc<dyn Fn(&mut Context<'_>, &str) + Send + Sync>;
type BinaryHandler = Arc<dyn Fn(&mut Context<'_>, &[u8]) + Send + Sync>;
type MessageHandler = Arc<dyn Fn(&mut Context<'_>, EventMessage) + Send + Sync>;
type ConnectHandler = Arc<dyn Fn(&mut Context<'_>) + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(&mut Context<'_>, &Closed) + Send + Sync>;
type HttpHandler = Arc<dyn Fn(&Request) -> HttpResponse + Send + Sync>;
type Hook = Arc<dyn Fn() + Send + Sync>;

/// An event's text and, when something needed it, its parsed JSON value (parsed at most
/// once per event).
pub(crate) struct EventBody<'t> {
    text: &'t str,
    /// The object's `data` field (found while reading its envelope).
    data: DataField<'t>,
    value: Option<serde_json::Value>,
}

/// The field path and reason of a failed typed parse, the same whether it was parsed from
/// the text or from a JSON value: a missing field is named in the path, and the reason
/// carries no line/column position.
fn describe_validation_error(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let inner = e.inner();
    let mut reason = inner.to_string();
    if inner.line() > 0 {
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        if let Some(stripped) = reason.strip_suffix(&position) {
            reason = stripped.to_owned();
        }
    }
    let mut path = e.path().to_string();
    let missing = reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    if let Some(field) = missing {
        path = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
    }
    (path, reason)
}

/// An application: routes, middleware, handlers and hooks, built once and shared by
/// every connection (cloning is a reference count).
///
/// ```
/// use eventum_core::app::{App, Route};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// let app = App::builder()
///     .route(Route::new("/calc"))
///     .on_typed("add", |ctx, add: Add| {
///         let _ = ctx.reply(&(add.a + add.b)); // {"event":"add","id":...,"data":3}
///     })
///     .on("ping", |ctx, _event| {
///         let _ = ctx.send_event("pong", &serde_json::json!({}));
///     })
///     .build();
/// assert_eq!(app.config().max_message_size(), 1 << 20);
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    config: Arc<Config>,
    routes: Vec<Route>,
    middleware: Vec<upgrade::Middleware>,
    http_fallback: Option<HttpHandler>,
    /// The health check's path (`GET` answers `200` until shutdown begins).
    health_path: Option<String>,
    events: HashMap<String, EventHandler, BuildNameHasher>,
    event_middleware: Vec<EventMiddleware>,
    on_text: Option<TextHandler>,
    on_binary: Option<BinaryHandler>,
    on_unknown_event: Option<MessageHandler>,
    on_no_event: Option<TextHandler>,
    on_non_json: Option<TextHandler>,
    on_connect: Option<ConnectHandler>,
    on_disconnect: Option<DisconnectHandler>,
    startup: Vec<Hook>,
    shutdown: Vec<Hook>,
    validation_message: String,
    validation_details: bool,
    docs: schema::Docs,
}

impl App {
    /// A builder for an app with the default [`Config`].
    pub fn builder() -> AppBuilder {
        AppBuilder {
            inner: AppInner {
                config: Arc::new(Config::default()),
                routes: Vec::new(),
                middleware: Vec::new(),
                http_fallback: None,
                health_path: None,
                events: HashMap::default(),
                event_middleware: Vec::new(),
                on_text: None,
                on_binary: None,
                on_unknown_event: None,
                on_no_event: None,
                on_non_json: None,
                on_connect: None,
                on_disconnect: None,
                startup: Vec::new(),
                shutdown: Vec::new(),
                validation_message: "Invalid data received".to_owned(),
                validation_details: false,
                docs: schema::Docs::default(),
            },
        }
    }

    pub(crate) fn inner(&self) -> &AppInner {
        &self.inner
    }

    /// The protocol settings every connection of this app uses.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// Runs the startup hooks, in the order they were added (adapters call this when a
    /// server starts). A panicking hook is logged and the others still run.
    pub fn startup(&self) {
        run_hooks(&self.inner.startup, "startup");
    }

    /// Runs the shutdown hooks (adapters call this when a server stops).
    pub fn shutdown(&self) {
        run_hooks(&self.inner.shutdown, "shutdown");
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("routes", &self.inner.routes)
            .field("events", &self.inner.events.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn run_hooks(hooks: &[Hook], what: &str) {
    for hook in hooks {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook())).is_err() {
            log::error!("a {what} hook panicked");
        }
    }
}

impl AppInner {
    /// The validation-error reply text for `event` (and its request `id`, if any).
    pub(crate) fn validation_reply(
        &self,
        event: &str,
        id: Option<&serde_json::Value>,
        path: &str,
        reason: &str,
    ) -> String {
        let details = self.validation_details.then_some((event, path, reason));
        envelope::validation_error(&self.validation_message, id, details)
    }
}

/// Builds an [`App`].
pub struct AppBuilder {
    inner: AppInner,
}

impl AppBuilder {
    /// Sets the protocol settings (limits, timeouts); see [`Config`].
    pub fn config(mut self, config: Config) -> Self {
        self.inner.config = Arc::new(config);
        self
    }

    /// Adds a handshake route. Routes are tried in the order added; a request matching
    /// none is refused with `404`.
    pub fn route(mut self, route: Route) -> Self {
        self.inner.routes.push(route);
        self
    }

    /// Adds handshake middleware around routing; the first added runs first.
    pub fn middleware(
        mut self,
        middleware: impl Fn(&mut Upgrade<'_>, Next<'_>) -> UpgradeResult + Send + Sync + 'static,
    ) -> Self {
        self.inner.middleware.push(Arc::new(middleware));
        self
    }

    /// Answers plain HTTP requests (not upgrades) with `handler`'s response, e.g. a page;
    /// without it they get `400`.
    pub fn http_fallback(mut self, handler: impl Fn(&Request) -> HttpResponse + Send + Sync + 'static) -> Self {
        self.inner.http_fallback = Some(Arc::new(handler));
        self
    }

    /// Answers `GET path` with `200 ok` while the server accepts connections. Once a
    /// graceful shutdown has begun every request gets `503`, this one too, so a load
    /// balancer probing `path` stops sending new clients before the node goes away (see
    /// [`ServerOptions::drain_period`](crate::driver::ServerOptions::drain_period)).
    ///
    /// ```
    /// use eventum_core::app::App;
    /// use eventum_core::driver::Endpoint;
    /// use std::time::Instant;
    ///
    /// let endpoint = Endpoint::new(App::builder().health_check("/healthz").build());
    /// let probe = |endpoint: &Endpoint| {
    ///     let mut session = endpoint.admit(Instant::now(), None).unwrap();
    ///     session.handle_input(Instant::now(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    ///     session.poll_transmit().first().to_vec()
    /// };
    /// assert!(probe(&endpoint).starts_with(b"HTTP/1.1 200 "));
    /// let _plan = endpoint.shutdown(Instant::now());
    /// assert!(probe(&endpoint).starts_with(b"HTTP/1.1 503 "));
    /// ```
    pub fn health_check(mut self, path: impl Into<String>) -> Self {
        self.inner.health_path = Some(path.into());
        self
    }

    /// Handles the event `name` with the whole JSON object.
    pub fn on(mut self, name: &str, handler: impl Fn(&mut Context<'_>, EventMessage) + Send + Sync + 'static) -> Self {
        let name_owned = name.to_owned();
        let run = Arc::new(move |ctx: &mut Context<'_>, body: EventBody<'_>| {
            let value = body.value.unwrap_or(serde_json::Value::Null);
            handler(
                ctx,
                EventMessage {
                    name: name_owned.clone(),
                    value,
                },
            )
        });
        self.inner.events.insert(
            name.to_owned(),
            EventHandler {
                run,
                wants_value: true,
                dispatched: Default::default(),
            },
        );
        self
    }

    /// The same as [`on_event`](Self::on_event), under the name that matches eventum-asgi's
    /// validated event (`@app.event('name', validator=Model)`): `T` is read from the
    /// envelope's `data`, or, for a message without one, from the whole flat object, so
    /// eventum.js's `emit(name, data)` and the original's flat events both reach it. When it
    /// does not fit, the client gets the validation-error reply and the connection stays open.
    pub fn on_typed<T: DeserializeOwned + 'static>(
        self,
        name: &str,
        handler: impl Fn(&mut Context<'_>, T) + Send + Sync + 'static,
    ) -> Self {
        self.on_event(name, handler)
    }

    /// Adds event middleware, run before every event handler in the order added.
    pub fn event_middleware(
        mut self,
        middleware: impl Fn(&mut Context<'_>, &EventMessage) -> Flow + Send + Sync + 'static,
    ) -> Self {
        self.inner.event_middleware.push(Arc::new(middleware));
        self
    }

    /// Takes every text message raw, instead of routing JSON events (an echo server).
    /// It also receives acknowledgements (`{"ack": n}`), so an app with a raw text
    /// handler cannot use [`Context::request_ack`].
    pub fn on_text(mut self, handler: impl Fn(&mut Context<'_>, &str) + Send + Sync + 'static) -> Self {
        self.inner.on_text = Some(Arc::new(handler));
        self
    }

    /// Takes every binary message (default: ignored with a debug log).
    pub fn on_binary(mut self, handler: impl Fn(&mut Context<'_>, &[u8]) + Send + Sync + 'static) -> Self {
        self.inner.on_binary = Some(Arc::new(handler));
        self
    }

    /// Handles events whose name has no handler (default: ignored with a debug log).
    pub fn on_unknown_event(
        mut self,
        handler: impl Fn(&mut Context<'_>, EventMessage) + Send + Sync + 'static,
    ) -> Self {
        self.inner.on_unknown_event = Some(Arc::new(handler));
        self
    }

    /// Handles JSON text that is not an object with a string `event` field (default:
    /// ignored with a debug log).
    pub fn on_no_event(mut self, handler: impl Fn(&mut Context<'_>, &str) + Send + Sync + 'static) -> Self {
        self.inner.on_no_event = Some(Arc::new(handler));
        self
    }

    /// Handles text that is not JSON (default: ignored with a debug log).
    pub fn on_non_json(mut self, handler: impl Fn(&mut Context<'_>, &str) + Send + Sync + 'static) -> Self {
        self.inner.on_non_json = Some(Arc::new(handler));
        self
    }

    /// Runs when a connection opens (after the 101 is queued).
    pub fn on_connect(mut self, handler: impl Fn(&mut Context<'_>) + Send + Sync + 'static) -> Self {
        self.inner.on_connect = Some(Arc::new(handler));
        self
    }

    /// Runs exactly once when an opened connection ends, whatever the cause, with how it
    /// ended (close code and reason when there was a close).
    pub fn on_disconnect(mut self, handler: impl Fn(&mut Context<'_>, &Closed) + Send + Sync + 'static) -> Self {
        self.inner.on_disconnect = Some(Arc::new(handler));
        self
    }

    /// Adds a hook run when a server starts.
    pub fn on_startup(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.inner.startup.push(Arc::new(hook));
        self
    }

    /// Adds a hook run when a server stops.
    pub fn on_shutdown(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.inner.shutdown.push(Arc::new(hook));
        self
    }

    /// Sets the `message` of the validation-error reply (default `Invalid data received`).
    pub fn validation_message(mut self, message: impl Into<String>) -> Self {
        self.inner.validation_message = message.into();
        self
    }

    /// Adds `details` (event, field path, reason) to validation-error replies.
    pub fn validation_details(mut self, enabled: bool) -> Self {
        self.inner.validation_details = enabled;
        self
    }

    /// Finishes the app. Malformed route patterns are logged (they match nothing).
    pub fn build(mut self) -> App {
        schema::install_routes(&mut self.inner);
        for route in &self.inner.routes {
            if !route.pattern.is_valid() {
                log::error!(
                    "route pattern {:?} is malformed and will match nothing",
                    route.pattern.source
                );
            }
        }
        let answers_http = self.inner.http_fallback.is_some() || self.inner.health_path.is_some();
        if answers_http && !self.inner.config.http_fallback() {
            let config = (*self.inner.config).clone().with_http_fallback(true);
            self.inner.config = Arc::new(config);
        }
        App {
            inner: Arc::new(self.inner),
        }
    }
}

impl fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder").finish_non_exhaustive()
    }
}
