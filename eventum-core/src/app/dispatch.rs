//! Dispatch: the app's side of one connection. It takes the protocol events of a
//! [`Connection`] and runs the app's middleware, routes, handlers and hooks for them.

use std::net::SocketAddr;
use std::time::Instant;

use crate::app::route::Params;
use crate::close::CloseCode;
use crate::connection::{Commands, Connection};
use crate::event::{Closed, Event};
use crate::handshake::{Accept, HttpResponse, Request};
use crate::observe;

use super::context::{AckError, Action, ConnData, Context, Current};
use super::envelope::{self, Parsed};
use super::guard::{guard, run_handler, server_error};
use super::object_scan::Entries;
use super::upgrade::{Next, Upgrade};
use super::{
    AppInner, ConnectionHandle, ConnectionId, EventBody, EventMessage, Extensions, Flags, Flow, UpgradeResult,
};

/// The app's state for one connection, and the dispatch of its events.
pub(crate) struct Dispatcher {
    data: ConnData,
    /// When the connection was admitted, for its lifecycle log line.
    started: Instant,
    /// The request asked for an upgrade (rather than a page).
    upgrade: bool,
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

impl From<Result<(), super::guard::Panicked>> for FollowUp {
    fn from(result: Result<(), super::guard::Panicked>) -> Self {
        match result {
            Ok(()) => FollowUp::None,
            Err(panicked) => {
                let (code, reason) = panicked.close();
                FollowUp::Close(code, reason)
            }
        }
    }
}

struct Accepted {
    accept: Accept,
    params: Params,
    flags: Flags,
    extensions: Extensions,
}

impl Dispatcher {
    pub(crate) fn new(handle: ConnectionHandle, peer: Option<SocketAddr>, now: Instant) -> Self {
        Dispatcher {
            data: ConnData::new(handle, peer),
            started: now,
            upgrade: false,
            opened: false,
            finished: false,
        }
    }

    pub(crate) fn id(&self) -> ConnectionId {
        self.data.id()
    }

    pub(crate) fn handle(&self) -> &ConnectionHandle {
        &self.data.handle
    }

    /// Whether the app accepted the upgrade and the connection has not ended.
    pub(crate) fn is_open(&self) -> bool {
        self.opened && !self.finished
    }

    /// Whether the connection's end was handled (hooks run, acks settled).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn flags(&self) -> &Flags {
        &self.data.flags
    }

    pub(crate) fn rooms(&self) -> impl Iterator<Item = &str> {
        self.data.rooms.iter().map(String::as_str)
    }

    /// What the handlers asked of other connections, in order.
    pub(crate) fn actions(&mut self) -> &mut Vec<Action> {
        &mut self.data.actions
    }

    /// The earliest acknowledgement deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        self.data.pending_acks().iter().map(|a| a.deadline).min()
    }

    /// Takes every event the connection has and runs its handlers at `now`; once the
    /// server is `stopping`, requests are answered `503` instead.
    pub(crate) fn process(&mut self, app: &AppInner, conn: &mut Connection, now: Instant, stopping: bool) {
        loop {
            let next = conn.next_event(|event, commands| match event {
                Event::UpgradeRequest(_) | Event::HttpRequest(_) if stopping => {
                    self.upgrade = matches!(event, Event::UpgradeRequest(_));
                    FollowUp::Respond(HttpResponse::text(503, "Server shutting down"))
                }
                Event::UpgradeRequest(request) => {
                    self.upgrade = true;
                    decide_upgrade(app, request, &self.data)
                }
                Event::HttpRequest(request) => FollowUp::Respond(answer_http(app, request)),
                Event::Text(text) => dispatch_text(&mut self.context(commands, app, now), text),
                Event::Binary(bytes) => {
                    let mut ctx = self.context(commands, app, now);
                    match &app.on_binary {
                        Some(handler) => run_handler(&mut ctx, "the binary handler", |ctx| handler(ctx, bytes)).into(),
                        None => {
                            log::debug!("connection {}: binary message ignored (no binary handler)", ctx.id());
                            FollowUp::None
                        }
                    }
                }
                Event::Closed(closed) => {
                    if !std::mem::replace(&mut self.finished, true) {
                        let ended = observe::Ended {
                            id: self.data.id(),
                            peer: self.data.peer,
                            path: commands.request().map(Request::path),
                            started: self.started,
                            now,
                            opened: self.opened,
                            upgrade: self.upgrade,
                        };
                        observe::ended(&ended, &closed);
                        if self.opened {
                            let mut ctx = self.context(commands, app, now);
                            disconnect(&mut ctx, app, &closed);
                        }
                    }
                    FollowUp::None
                }
                _ => FollowUp::None,
            });
            match next {
                None => break,
                // Most messages need nothing more: skip the out-of-line call for them.
                Some(FollowUp::None) => {}
                Some(follow_up) => self.follow_up(app, conn, now, follow_up),
            }
        }
    }

    /// Runs the callbacks of acknowledgements whose time ran out.
    pub(crate) fn expire_acks(&mut self, app: &AppInner, conn: &mut Connection, now: Instant) {
        if self.finished {
            return;
        }
        // One pass: none due is an empty `Vec`, which does not allocate.
        let due: Vec<_> = match &mut self.data.acks {
            Some(acks) => acks.pending.extract_if(.., |a| a.deadline <= now).collect(),
            None => return,
        };
        if due.is_empty() {
            return;
        }
        let mut ctx = self.context(conn.commands(), app, now);
        for ack in due {
            let callback = ack.into_callback();
            let result = run_handler(&mut ctx, "an acknowledgement callback", |ctx| {
                callback(ctx, Err(AckError::Timeout))
            });
            if let Err(panicked) = result {
                let (code, reason) = panicked.close();
                let _ = ctx.commands.close(now, code, &reason);
            }
        }
    }

    fn context<'a>(&'a mut self, commands: Commands<'a>, app: &'a AppInner, now: Instant) -> Context<'a> {
        Context {
            commands,
            data: &mut self.data,
            app,
            current: None,
            now,
        }
    }

    fn follow_up(&mut self, app: &AppInner, conn: &mut Connection, now: Instant, follow_up: FollowUp) {
        let mut commands = conn.commands();
        match follow_up {
            FollowUp::None => {}
            FollowUp::Accept(accepted) => self.open(app, commands, now, *accepted),
            FollowUp::Respond(response) => {
                if let Err(e) = commands.respond(now, response) {
                    log::error!("connection {}: invalid HTTP response from the app: {e}", self.id());
                    let _ = commands.respond(now, HttpResponse::text(500, "Internal Server Error"));
                }
            }
            FollowUp::Close(code, reason) => {
                let _ = commands.close(now, code, &reason);
            }
        }
    }

    /// Sends the 101 and runs the connect hook.
    fn open(&mut self, app: &AppInner, mut commands: Commands<'_>, now: Instant, accepted: Accepted) {
        if let Err(e) = commands.accept(now, accepted.accept) {
            log::error!("connection {}: cannot accept the upgrade: {e}", self.id());
            let _ = commands.respond(now, HttpResponse::text(500, "Internal Server Error"));
            return;
        }
        self.opened = true;
        observe::upgraded();
        self.data.params = accepted.params;
        self.data.flags = accepted.flags;
        self.data.extensions.extend(accepted.extensions);
        if let Some(hook) = &app.on_connect {
            let mut ctx = self.context(commands, app, now);
            if let Err(panicked) = run_handler(&mut ctx, "the connect hook", |ctx| hook(ctx)) {
                let (code, reason) = panicked.close();
                let _ = ctx.commands.close(now, code, &reason);
            }
        }
    }
}

/// The connection is over: settle acknowledgements, run the disconnect hook (once: the
/// caller checks), leave every room.
fn disconnect(ctx: &mut Context<'_>, app: &AppInner, closed: &Closed) {
    for ack in ctx.data.take_acks() {
        let callback = ack.into_callback();
        let _ = run_handler(ctx, "an acknowledgement callback", |ctx| {
            callback(ctx, Err(AckError::Disconnected))
        });
    }
    if let Some(hook) = &app.on_disconnect {
        let _ = run_handler(ctx, "the disconnect hook", |ctx| hook(ctx, closed));
    }
    for room in std::mem::take(&mut ctx.data.rooms) {
        ctx.data.actions.push(Action::Leave { room });
    }
}

/// The answer to a plain HTTP request: the health check, else the app's fallback.
fn answer_http(app: &AppInner, request: &Request) -> HttpResponse {
    if app.health_path.as_deref() == Some(request.path()) && request.method().eq_ignore_ascii_case("GET") {
        return HttpResponse::text(200, "ok");
    }
    match &app.http_fallback {
        Some(handler) => guard("the HTTP fallback", || handler(request)).unwrap_or_else(server_error),
        None => HttpResponse::text(400, crate::HandshakeError::NotWebSocket.to_string()),
    }
}

/// Runs middleware and routing for an upgrade request.
fn decide_upgrade(app: &AppInner, request: &Request, data: &ConnData) -> FollowUp {
    let compression = app.config.compression().clone();
    let mut upgrade = Upgrade::new(request, data.id(), data.peer, compression);
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
            let mut accept = Accept::new().compression(upgrade.compression);
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
                extensions: upgrade.extensions,
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
fn dispatch_text<'a>(ctx: &mut Context<'a>, text: &'a str) -> FollowUp {
    let app = ctx.app;
    if let Some(handler) = &app.on_text {
        return run_handler(ctx, "the text handler", |ctx| handler(ctx, text)).into();
    }
    let mut entries = Entries::default();
    let (name, id, data) = match envelope::parse(text, &mut entries) {
        Parsed::Event { name, id, data } => (name, id, data),
        Parsed::Ack(n) => return settle_ack(ctx, n, text),
        Parsed::NoEvent => {
            return match &app.on_no_event {
                Some(handler) => run_handler(ctx, "the no-event fallback", |ctx| handler(ctx, text)).into(),
                None => {
                    log::debug!("connection {}: JSON without an event field ignored", ctx.id());
                    FollowUp::None
                }
            }
        }
        Parsed::NotJson => {
            return match &app.on_non_json {
                Some(handler) => run_handler(ctx, "the non-JSON fallback", |ctx| handler(ctx, text)).into(),
                None => {
                    log::debug!("connection {}: non-JSON text ignored", ctx.id());
                    FollowUp::None
                }
            }
        }
    };
    ctx.current = Some(Current { name: name.clone(), id });
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
    // Only middleware and the unknown-event fallback see the message's name.
    let message = EventMessage {
        name: match handler {
            Some(_) if app.event_middleware.is_empty() => String::new(),
            _ => name.to_string(),
        },
        value: value.unwrap_or(serde_json::Value::Null),
    };
    for middleware in &app.event_middleware {
        let mut flow = Flow::Continue;
        if let Err(panicked) = run_handler(ctx, "event middleware", |ctx| flow = middleware(ctx, &message)) {
            return Err(panicked).into();
        }
        match flow {
            Flow::Continue => {}
            Flow::Drop => return FollowUp::None,
            Flow::Reject(mut reply) => {
                // A rejected request's client waits for its id: the reply carries it.
                if let (Some(object), Some(id)) = (reply.as_object_mut(), ctx.event_id()) {
                    object.entry("id").or_insert_with(|| id.clone());
                }
                let _ = ctx.send_json(&reply);
                return FollowUp::None;
            }
            Flow::Close(code, reason) => return FollowUp::Close(code, reason),
        }
    }
    match handler {
        Some(handler) => {
            handler.dispatched.dispatched(&name);
            let body = EventBody {
                text,
                data,
                value: wants_value.then_some(message.value),
            };
            run_handler(ctx, "an event handler", |ctx| (handler.run)(ctx, body)).into()
        }
        None => {
            observe::unknown_event();
            match &app.on_unknown_event {
                Some(fallback) => run_handler(ctx, "the unknown-event fallback", |ctx| fallback(ctx, message)).into(),
                None => {
                    log::debug!("connection {}: no handler for event {:?}", ctx.id(), message.name);
                    FollowUp::None
                }
            }
        }
    }
}

/// Hands a client's acknowledgement to the callback waiting for it.
fn settle_ack(ctx: &mut Context<'_>, n: u64, text: &str) -> FollowUp {
    let Some(ack) = ctx.data.acks.as_mut().and_then(|acks| {
        let index = acks.pending.iter().position(|a| a.id == n)?;
        Some(acks.pending.swap_remove(index))
    }) else {
        log::debug!("connection {}: acknowledgement {n} matches no request", ctx.id());
        return FollowUp::None;
    };
    let data = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
        .unwrap_or(serde_json::Value::Null);
    let callback = ack.into_callback();
    run_handler(ctx, "an acknowledgement callback", |ctx| callback(ctx, Ok(data))).into()
}
