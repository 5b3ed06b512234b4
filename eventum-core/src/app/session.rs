//! A [`Session`]: one connection of an [`App`], driven like a [`Connection`] but running
//! the app's middleware and handlers as events arrive.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::close::CloseCode;
use crate::connection::{Connection, Sender};
use crate::error::{CloseError, SendError};
use crate::event::{Closed, Event, State};
use crate::handshake::{Accept, HttpResponse, Request};
use crate::outbound::SharedFrame;

use super::context::{AckError, Action, ConnData, Context, Current};
use super::envelope::{self, Parsed};
use super::upgrade::{Next, Upgrade};
use super::{App, AppInner, ConnectionId, EventBody, EventMessage, Flow, UpgradeResult};

/// Work for a connection that arrives from elsewhere (a handle, the hub, the server),
/// carried by the adapter to the connection's driver and run with
/// [`Session::apply_command`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Deliver an encoded frame (a broadcast, a send by id).
    Frame(SharedFrame),
    /// Send a text message.
    Text(String),
    /// Send a binary message.
    Binary(Vec<u8>),
    /// Start the close handshake.
    Close(CloseCode, String),
    /// The server is stopping: close with 1001 (or drop a connection not open yet).
    Shutdown,
    /// Drop the connection now (its disconnect hook still runs), e.g. when a graceful
    /// shutdown has waited long enough.
    Abort,
}

/// Why a [`Command`] was not carried out.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The message was not queued (dropped under the slow-consumer policy, or closed).
    Send(SendError),
    /// The close was not started.
    Close(CloseError),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Send(e) => write!(f, "message not sent: {e}"),
            CommandError::Close(e) => write!(f, "close not started: {e}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// The reason sent with 1011 when a handler panics.
const PANIC_REASON: &str = "internal error";

/// One connection of an [`App`]. Drive it like a [`Connection`]: give it input, time and
/// end of stream; write its output; sleep until its deadline. Handlers run inside the
/// input calls. Then deliver its [`Action`]s (rooms, broadcasts, sends by id) from
/// [`poll_action`](Self::poll_action), and hand it frames pushed by other connections
/// with [`deliver`](Self::deliver).
///
/// ```
/// use eventum_core::app::{App, Route};
/// use std::time::Instant;
///
/// let app = App::builder().route(Route::new("/echo")).on_text(|ctx, text| {
///     let _ = ctx.send_text(text);
/// }).build();
/// let mut session = app.session(Instant::now(), None);
/// session.handle_input(Instant::now(), b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
/// let mut wire = Vec::new();
/// session.poll_transmit(&mut wire);
/// assert!(wire.starts_with(b"HTTP/1.1 101 "));
/// ```
pub struct Session {
    conn: Connection,
    app: App,
    data: ConnData,
    /// The upgrade was accepted: the disconnect hook is owed.
    opened: bool,
    /// The Closed event was handled; nothing runs any more.
    finished: bool,
}

/// What to do once the borrowed event is released.
enum FollowUp {
    None,
    Accept(Box<Accepted>),
    Respond(HttpResponse),
    Close(CloseCode, String),
}

struct Accepted {
    accept: Accept,
    params: Vec<(String, String)>,
    flags: super::Flags,
    state: super::State,
}

impl Session {
    pub(crate) fn new(app: App, now: Instant, peer: Option<SocketAddr>) -> Self {
        let conn = Connection::new(std::sync::Arc::clone(app.config()), now);
        Session {
            conn,
            app,
            data: ConnData::new(ConnectionId::next(), peer),
            opened: false,
            finished: false,
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.data.id
    }

    /// Takes bytes from the transport and runs the handlers they trigger.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.conn.handle_input(now, data);
        self.process();
    }

    /// The transport's read side ended.
    pub fn handle_eof(&mut self, now: Instant) {
        self.conn.handle_eof(now);
        self.process();
    }

    /// Acts on passed deadlines: protocol timers and acknowledgement timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        self.expire_acks(now);
        self.process();
    }

    /// Queues a frame pushed by another connection (a broadcast, a send by id), under the
    /// slow-consumer policy of [`Connection::push`].
    pub fn deliver(&mut self, now: Instant, frame: &SharedFrame) -> Result<(), SendError> {
        let result = self.conn.push(now, frame);
        self.process();
        result
    }

    /// Carries out a [`Command`] that a handle or the hub queued for this connection.
    /// Messages are pushed like broadcasts, under the slow-consumer policy, so a client
    /// that does not read cannot make them pile up; `Shutdown` closes with 1001, or drops
    /// a connection that is not open yet. Returns what could not be done, for logging.
    pub fn apply_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        let result = match command {
            Command::Frame(frame) => self.deliver(now, &frame).map_err(CommandError::Send),
            Command::Text(text) => self.deliver(now, &SharedFrame::text(&text)).map_err(CommandError::Send),
            Command::Binary(data) => self
                .deliver(now, &SharedFrame::binary(&data))
                .map_err(CommandError::Send),
            Command::Close(code, reason) => self.close(now, code, &reason).map_err(CommandError::Close),
            Command::Shutdown => match self.close(now, CloseCode::GOING_AWAY, "server shutting down") {
                Err(CloseError::NotOpen) => {
                    self.abort(now);
                    Ok(())
                }
                other => other.map_err(CommandError::Close),
            },
            Command::Abort => {
                self.abort(now);
                Ok(())
            }
        };
        self.process();
        result
    }

    /// Sends a text message from outside a handler (e.g. a connection handle).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.conn.send_text(text)
    }

    /// Sends a binary message from outside a handler.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.conn.send_binary(data)
    }

    /// Starts the close handshake from outside a handler (e.g. server shutdown: 1001).
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        let result = self.conn.close(now, code, reason);
        self.process();
        result
    }

    /// The transport failed; see [`Connection::abort`]. The disconnect hook runs.
    pub fn abort(&mut self, now: Instant) {
        self.conn.abort(now);
        self.process();
    }

    /// The next thing to do with other connections.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.data.actions.pop_front()
    }

    /// See [`Connection::output`].
    pub fn output(&self) -> &[u8] {
        self.conn.output()
    }

    /// See [`Connection::output_vectored`].
    pub fn output_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.conn.output_vectored(slices)
    }

    /// See [`Connection::consume_output`].
    pub fn consume_output(&mut self, n: usize) {
        self.conn.consume_output(n);
    }

    /// See [`Connection::poll_transmit`].
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        self.conn.poll_transmit(buf)
    }

    /// The earliest deadline: the connection's timers and pending acknowledgements.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = self
            .data
            .acks
            .iter()
            .map(|a| a.deadline)
            .min()
            .filter(|_| !self.finished);
        match (self.conn.poll_timeout(), ack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// See [`Connection::wants_read`].
    pub fn wants_read(&self) -> bool {
        self.conn.wants_read()
    }

    /// See [`Connection::should_close_transport`].
    pub fn should_close_transport(&self) -> bool {
        self.conn.should_close_transport()
    }

    /// See [`Connection::state`].
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// See [`Connection::buffered_amount`].
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// The upgrade request, once read.
    pub fn request(&self) -> Option<&Request> {
        self.conn.request()
    }

    /// Whether the app accepted the upgrade.
    pub fn is_open(&self) -> bool {
        self.opened && !self.finished
    }

    /// The rooms the connection is in.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.data.rooms.iter().map(String::as_str)
    }

    /// The connection's flags.
    pub fn flags(&self) -> &super::Flags {
        &self.data.flags
    }

    /// The connection's typed state. An adapter puts its connection handle here before
    /// the first input, so handlers can take it for work that finishes later.
    pub fn state_mut(&mut self) -> &mut super::State {
        &mut self.data.state
    }

    /// Takes every event the connection has and runs its handlers.
    fn process(&mut self) {
        // Commands below act at the time of the input that triggered them.
        let now = self.conn.now();
        // A second handle to the app (a reference count) so handlers can borrow it while
        // the session is borrowed mutably.
        let app_handle = self.app.clone();
        let app = &*app_handle.inner;
        while let Some((event, sender)) = self.conn.poll_event_with_sender() {
            let follow_up = match event {
                Event::UpgradeRequest(request) => decide_upgrade(app, request, &self.data),
                Event::HttpRequest(request) => {
                    let response = match &app.http_fallback {
                        Some(handler) => guard("the HTTP fallback", || handler(request)).unwrap_or_else(server_error),
                        None => HttpResponse::text(400, crate::HandshakeError::NotWebSocket.to_string()),
                    };
                    FollowUp::Respond(response)
                }
                Event::Text(text) => {
                    let mut ctx = Context {
                        sender,
                        data: &mut self.data,
                        app,
                        current: None,
                    };
                    dispatch_text(&mut ctx, text)
                }
                Event::Binary(bytes) => {
                    let mut ctx = Context {
                        sender,
                        data: &mut self.data,
                        app,
                        current: None,
                    };
                    match &app.on_binary {
                        Some(handler) => run_handler(&mut ctx, "the binary handler", |ctx| handler(ctx, bytes)),
                        None => {
                            log::debug!("connection {}: binary message ignored (no binary handler)", ctx.id());
                            FollowUp::None
                        }
                    }
                }
                Event::Closed(closed) => {
                    if !std::mem::replace(&mut self.finished, true) && self.opened {
                        disconnect(sender, &mut self.data, app, &closed);
                    }
                    FollowUp::None
                }
                _ => FollowUp::None,
            };
            match follow_up {
                FollowUp::None => {}
                FollowUp::Accept(accepted) => self.open(*accepted),
                FollowUp::Respond(response) => {
                    if let Err(e) = self.conn.respond(now, response) {
                        log::error!("connection {}: invalid HTTP response from the app: {e}", self.data.id);
                        let _ = self.conn.respond(now, HttpResponse::text(500, "Internal Server Error"));
                    }
                }
                FollowUp::Close(code, reason) => {
                    let _ = self.conn.close(now, code, &reason);
                }
            }
        }
    }

    /// Sends the 101 and runs the connect hook.
    fn open(&mut self, accepted: Accepted) {
        let now = self.conn.now();
        if let Err(e) = self.conn.accept(now, accepted.accept) {
            log::error!("connection {}: cannot accept the upgrade: {e}", self.data.id);
            let _ = self.conn.respond(now, HttpResponse::text(500, "Internal Server Error"));
            return;
        }
        self.opened = true;
        self.data.params = accepted.params;
        self.data.flags = accepted.flags;
        self.data.state.extend(accepted.state);
        if let Some(hook) = &self.app.inner.on_connect {
            let mut ctx = Context {
                sender: self.conn.sender(),
                data: &mut self.data,
                app: &self.app.inner,
                current: None,
            };
            if let FollowUp::Close(code, reason) = run_handler(&mut ctx, "the connect hook", |ctx| hook(ctx)) {
                let _ = ctx.sender.close(code, &reason);
            }
        }
    }

    fn expire_acks(&mut self, now: Instant) {
        if self.finished || self.data.acks.iter().all(|a| a.deadline > now) {
            return;
        }
        let (due, waiting) = std::mem::take(&mut self.data.acks)
            .into_iter()
            .partition(|a| a.deadline <= now);
        self.data.acks = waiting;
        let mut ctx = Context {
            sender: self.conn.sender(),
            data: &mut self.data,
            app: &self.app.inner,
            current: None,
        };
        for ack in due {
            let callback = ack.callback;
            if let FollowUp::Close(code, reason) = run_handler(&mut ctx, "an acknowledgement callback", |ctx| {
                callback(ctx, Err(AckError::Timeout))
            }) {
                let _ = ctx.sender.close(code, &reason);
            }
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.data.id)
            .field("state", &self.conn.state())
            .finish_non_exhaustive()
    }
}

/// The connection is over: settle acknowledgements, run the disconnect hook (once: the
/// caller checks), leave every room.
fn disconnect(sender: Sender<'_>, data: &mut ConnData, app: &AppInner, closed: &Closed) {
    let mut ctx = Context {
        sender,
        data,
        app,
        current: None,
    };
    for ack in std::mem::take(&mut ctx.data.acks) {
        let callback = ack.callback;
        run_handler(&mut ctx, "an acknowledgement callback", |ctx| {
            callback(ctx, Err(AckError::Disconnected))
        });
    }
    if let Some(hook) = &app.on_disconnect {
        run_handler(&mut ctx, "the disconnect hook", |ctx| hook(ctx, closed));
    }
    for room in std::mem::take(&mut ctx.data.rooms) {
        ctx.data.actions.push_back(Action::Leave { room });
    }
}

/// Runs middleware and routing for an upgrade request.
fn decide_upgrade(app: &AppInner, request: &Request, data: &ConnData) -> FollowUp {
    let mut upgrade = Upgrade::new(request, data.id, data.peer);
    let endpoint = |upgrade: &mut Upgrade<'_>| route(app, upgrade);
    let next = Next {
        chain: &app.middleware,
        endpoint: &endpoint,
    };
    let decision = guard("handshake middleware or route", || {
        next.run(&mut upgrade)?;
        // The chooser is user code too: run it under the same guard.
        Ok(upgrade.chosen_subprotocol())
    })
    .unwrap_or_else(|r| Err(server_error(r)));
    match decision {
        Ok(subprotocol) => {
            let mut accept = Accept::new();
            if let Some(protocol) = subprotocol {
                accept = accept.subprotocol(protocol);
            }
            for (name, value) in std::mem::take(&mut upgrade.headers) {
                accept = accept.header(name, value);
            }
            FollowUp::Accept(Box::new(Accepted {
                accept,
                params: upgrade.params,
                flags: upgrade.flags,
                state: upgrade.state,
            }))
        }
        Err(response) => FollowUp::Respond(response),
    }
}

/// The innermost step of the middleware chain: find the route, check its headers, run it.
fn route(app: &AppInner, upgrade: &mut Upgrade<'_>) -> UpgradeResult {
    let path = upgrade.request.path();
    let Some((route, params)) = app.routes.iter().find_map(|r| r.pattern.matches(path).map(|p| (r, p))) else {
        return Err(HttpResponse::text(404, "Not Found"));
    };
    if route
        .required_headers
        .iter()
        .any(|name| upgrade.request.header(name).is_none())
    {
        return Err(HttpResponse::text(400, "Missing required headers"));
    }
    upgrade.params = params;
    match &route.handler {
        Some(handler) => handler(upgrade),
        None => Ok(()),
    }
}

/// Routes a text message: raw handler, acknowledgement, or JSON event.
fn dispatch_text(ctx: &mut Context<'_>, text: &str) -> FollowUp {
    let app = ctx.app;
    if let Some(handler) = &app.on_text {
        return run_handler(ctx, "the text handler", |ctx| handler(ctx, text));
    }
    let (name, id) = match envelope::parse(text) {
        Parsed::Event { name, id } => (name, id),
        Parsed::Ack(n) => return settle_ack(ctx, n, text),
        Parsed::NoEvent => {
            return match &app.on_no_event {
                Some(handler) => run_handler(ctx, "the no-event fallback", |ctx| handler(ctx, text)),
                None => {
                    log::debug!("connection {}: JSON without an event field ignored", ctx.id());
                    FollowUp::None
                }
            }
        }
        Parsed::NotJson => {
            return match &app.on_non_json {
                Some(handler) => run_handler(ctx, "the non-JSON fallback", |ctx| handler(ctx, text)),
                None => {
                    log::debug!("connection {}: non-JSON text ignored", ctx.id());
                    FollowUp::None
                }
            }
        }
    };
    ctx.current = Some(Current {
        name: name.clone().into_owned(),
        id,
    });
    let handler = app.events.get(name.as_ref());
    // Parse the whole value only for someone who will look at it.
    let wants_value = match handler {
        Some(handler) => handler.wants_value,
        None => app.on_unknown_event.is_some(),
    } || !app.event_middleware.is_empty();
    let value = if wants_value {
        serde_json::from_str(text).ok()
    } else {
        None
    };
    let message = EventMessage {
        name: name.into_owned(),
        value: value.unwrap_or(serde_json::Value::Null),
    };
    for middleware in &app.event_middleware {
        let mut flow = Flow::Continue;
        let follow_up = run_handler(ctx, "event middleware", |ctx| flow = middleware(ctx, &message));
        match (follow_up, flow) {
            (FollowUp::None, Flow::Continue) => {}
            (FollowUp::None, Flow::Drop) => return FollowUp::None,
            (FollowUp::None, Flow::Reject(reply)) => {
                let _ = ctx.send_json(&reply);
                return FollowUp::None;
            }
            (FollowUp::None, Flow::Close(code, reason)) => return FollowUp::Close(code, reason),
            (panicked, _) => return panicked,
        }
    }
    match handler {
        Some(handler) => {
            let body = EventBody {
                text,
                value: wants_value.then_some(message.value),
            };
            run_handler(ctx, "an event handler", |ctx| (handler.run)(ctx, body))
        }
        None => match &app.on_unknown_event {
            Some(fallback) => run_handler(ctx, "the unknown-event fallback", |ctx| fallback(ctx, message)),
            None => {
                log::debug!("connection {}: no handler for event {:?}", ctx.id(), message.name);
                FollowUp::None
            }
        },
    }
}

/// Hands a client's acknowledgement to the callback waiting for it.
fn settle_ack(ctx: &mut Context<'_>, n: u64, text: &str) -> FollowUp {
    let Some(index) = ctx.data.acks.iter().position(|a| a.id == n) else {
        log::debug!("connection {}: acknowledgement {n} matches no request", ctx.id());
        return FollowUp::None;
    };
    let ack = ctx.data.acks.swap_remove(index);
    let data = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
        .unwrap_or(serde_json::Value::Null);
    let callback = ack.callback;
    run_handler(ctx, "an acknowledgement callback", |ctx| callback(ctx, Ok(data)))
}

/// Runs user code; a panic is logged and closes the connection with 1011.
fn run_handler(ctx: &mut Context<'_>, what: &str, f: impl FnOnce(&mut Context<'_>)) -> FollowUp {
    match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        Ok(()) => FollowUp::None,
        Err(panic) => {
            log::error!("connection {}: {what} panicked: {}", ctx.id(), panic_message(&*panic));
            FollowUp::Close(CloseCode::INTERNAL_ERROR, PANIC_REASON.to_owned())
        }
    }
}

/// Runs user code before the upgrade; a panic is logged and becomes `Err(message)`.
fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic_message(&*panic);
        log::error!("{what} panicked: {message}");
        message
    })
}

fn server_error(_panic: String) -> HttpResponse {
    HttpResponse::text(500, "Internal Server Error")
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
