//! The connection context every event handler gets: who the connection is, and what it
//! can do (send, reply, close, flags, rooms, sends to others).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::app::route::Params;
use crate::close::CloseCode;
use crate::connection::Commands;
use crate::error::{CloseError, SendError};
use crate::handshake::{DeflateParams, Request};
use crate::outbound::SharedFrame;

use super::envelope::encode_event;
use super::extensions::Extensions;
use super::flags::Flags;
use super::{AppInner, ConnectionHandle, ConnectionId};

/// Something a connection asks of other connections. Handlers express it through their
/// [`Context`]; the [`Session`](crate::driver::Session) hands it to the server's hub,
/// which knows every connection and delivers it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The connection joined a room.
    Join {
        /// The room's name.
        room: String,
    },
    /// The connection left a room (also emitted for every room when it disconnects).
    Leave {
        /// The room's name.
        room: String,
    },
    /// Deliver `frame` to every member of `room` except `except`.
    Broadcast {
        /// The room's name.
        room: String,
        /// The frame, encoded once for every recipient.
        frame: SharedFrame,
        /// A connection to skip (the sender, for "everyone else").
        except: Option<ConnectionId>,
    },
    /// Deliver `frame` to every open connection except `except`.
    BroadcastAll {
        /// The frame, encoded once for every recipient.
        frame: SharedFrame,
        /// A connection to skip.
        except: Option<ConnectionId>,
    },
    /// Deliver `frame` to one connection, if it is still open.
    SendTo {
        /// The recipient.
        to: ConnectionId,
        /// The frame.
        frame: SharedFrame,
    },
}

/// Why an acknowledgement did not arrive.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The client did not acknowledge within the timeout.
    Timeout,
    /// The connection closed first.
    Disconnected,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckError::Timeout => "the client did not acknowledge in time",
            AckError::Disconnected => "the connection closed before the acknowledgement",
        })
    }
}

impl std::error::Error for AckError {}

/// What runs when an acknowledgement arrives (with its `data`) or does not.
pub type AckCallback = Box<dyn FnOnce(&mut Context<'_>, Result<Value, AckError>) + Send>;

pub(crate) struct PendingAck {
    pub(crate) id: u64,
    pub(crate) deadline: Instant,
    /// Behind a mutex only so that a session is `Sync` (an async driver holds `&Session`
    /// across an await); it is only ever taken out, never locked while shared.
    callback: Mutex<AckCallback>,
}

impl PendingAck {
    pub(crate) fn new(id: u64, deadline: Instant, callback: AckCallback) -> Self {
        PendingAck {
            id,
            deadline,
            callback: Mutex::new(callback),
        }
    }

    pub(crate) fn into_callback(self) -> AckCallback {
        self.callback.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// The acknowledgements a connection asked for ([`Context::request_ack`]). Boxed in
/// [`ConnData`], made at the first request: most connections never ask, and inline they
/// were 32 bytes of each.
#[derive(Default)]
pub(crate) struct Acks {
    /// Waiting for the client, in the order asked.
    pub(crate) pending: Vec<PendingAck>,
    /// The number the latest request got (0 before the first; the first gets 1).
    last: u64,
}

/// Everything the framework keeps about one connection besides the protocol state.
pub(crate) struct ConnData {
    pub(crate) handle: ConnectionHandle,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) params: Params,
    pub(crate) flags: Flags,
    pub(crate) extensions: Extensions,
    pub(crate) rooms: BTreeSet<String>,
    pub(crate) actions: Vec<Action>,
    pub(crate) acks: Option<Box<Acks>>,
}

impl ConnData {
    pub(crate) fn id(&self) -> ConnectionId {
        self.handle.id()
    }

    /// The acknowledgements still waiting.
    pub(crate) fn pending_acks(&self) -> &[PendingAck] {
        self.acks.as_ref().map_or(&[], |acks| &acks.pending)
    }

    /// Takes the waiting acknowledgements out, leaving none.
    pub(crate) fn take_acks(&mut self) -> Vec<PendingAck> {
        self.acks
            .as_mut()
            .map(|acks| std::mem::take(&mut acks.pending))
            .unwrap_or_default()
    }

    pub(crate) fn new(handle: ConnectionHandle, peer: Option<SocketAddr>) -> Self {
        ConnData {
            handle,
            peer,
            params: Params::default(),
            flags: Flags::default(),
            extensions: Extensions::default(),
            rooms: BTreeSet::new(),
            actions: Vec::new(),
            acks: None,
        }
    }
}

/// The event being handled, for [`Context::reply`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Current<'a> {
    /// Borrowed from the message unless its name had escapes.
    pub(crate) name: Cow<'a, str>,
    pub(crate) id: Option<Value>,
}

/// Why [`Context::reply`] could not answer.
#[non_exhaustive]
#[derive(Debug)]
pub enum ReplyError {
    /// The event being handled carried no `id`, so the client expects no reply.
    NoId,
    /// The data could not be serialized.
    Json(serde_json::Error),
    /// The message could not be queued.
    Send(SendError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NoId => f.write_str("the event has no id to reply to"),
            ReplyError::Json(e) => write!(f, "cannot serialize the reply: {e}"),
            ReplyError::Send(e) => write!(f, "cannot send the reply: {e}"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<SendError> for ReplyError {
    fn from(e: SendError) -> Self {
        ReplyError::Send(e)
    }
}

impl From<serde_json::Error> for ReplyError {
    fn from(e: serde_json::Error) -> Self {
        ReplyError::Json(e)
    }
}

/// One connection, as its handlers see it. Commands made through it act at the time of
/// the input that ran the handler.
///
/// ```
/// use eventum_core::app::{App, Route};
/// use eventum_core::SharedFrame;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Join { room: String, name: String }
///
/// let app = App::builder()
///     .route(Route::new("/ws"))
///     .on_typed("join", |ctx, join: Join| {
///         ctx.flags_mut().add("name", join.name.clone());
///         ctx.join(&join.room);
///         let joined = serde_json::json!({"event": "joined", "room": join.room, "name": join.name});
///         ctx.broadcast(&join.room, SharedFrame::json(&joined).unwrap());
///     })
///     .build();
/// # let _ = app;
/// ```
pub struct Context<'a> {
    pub(crate) commands: Commands<'a>,
    pub(crate) data: &'a mut ConnData,
    pub(crate) app: &'a AppInner,
    pub(crate) current: Option<Current<'a>>,
    pub(crate) now: Instant,
}

impl Context<'_> {
    /// The connection's unique id.
    pub fn id(&self) -> ConnectionId {
        self.data.id()
    }

    /// A handle to this connection, to send to it later from any task or thread (work
    /// that must wait, e.g. a database call). The same type on every adapter.
    pub fn handle(&self) -> ConnectionHandle {
        self.data.handle.clone()
    }

    /// The upgrade request the connection was opened with.
    pub fn request(&self) -> Option<&Request> {
        self.commands.request()
    }

    /// The request path.
    pub fn path(&self) -> &str {
        self.request().map_or("", Request::path)
    }

    /// A header of the upgrade request (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request()?.header(name)
    }

    /// A query parameter of the upgrade request, decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.request()?.query_param(name)
    }

    /// The route's path parameters.
    pub fn params(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.data.params.iter().map(|(name, value)| (&**name, value.as_str()))
    }

    /// One path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|&(k, _)| k == name).map(|(_, v)| v)
    }

    /// The subprotocol chosen at the upgrade.
    pub fn subprotocol(&self) -> Option<&str> {
        self.commands.subprotocol()
    }

    /// The permessage-deflate parameters agreed at the upgrade; `None`: uncompressed.
    pub fn compression(&self) -> Option<&DeflateParams> {
        self.commands.compression()
    }

    /// The peer's address, when the adapter knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.data.peer
    }

    /// The name of the event being handled, if any.
    pub fn event_name(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.name.as_ref())
    }

    /// The `id` of the event being handled, if it carried one.
    pub fn event_id(&self) -> Option<&Value> {
        self.current.as_ref()?.id.as_ref()
    }

    /// The connection's flags.
    pub fn flags(&self) -> &Flags {
        &self.data.flags
    }

    /// The connection's flags, to change.
    pub fn flags_mut(&mut self) -> &mut Flags {
        &mut self.data.flags
    }

    /// The connection's typed values.
    pub fn extensions(&self) -> &Extensions {
        &self.data.extensions
    }

    /// The connection's typed values, to change.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.data.extensions
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.commands.send_text(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.commands.send_binary(data)
    }

    /// Sends any serializable value as a JSON text message.
    pub fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReplyError> {
        let text = serde_json::to_string(value)?;
        Ok(self.commands.send_text(&text)?)
    }

    /// Sends the event `{"event": name, "data": data}`.
    pub fn send_event<T: Serialize + ?Sized>(&mut self, name: &str, data: &T) -> Result<(), ReplyError> {
        let text = encode_event(name, None, None, data)?;
        Ok(self.commands.send_text(&text)?)
    }

    /// Answers the event being handled: `{"event": name, "id": id, "data": data}` with
    /// the event's own name and `id`. Fails with [`ReplyError::NoId`] when it had no `id`.
    pub fn reply<T: Serialize + ?Sized>(&mut self, data: &T) -> Result<(), ReplyError> {
        let current = self.current.as_ref().ok_or(ReplyError::NoId)?;
        let id = current.id.as_ref().ok_or(ReplyError::NoId)?;
        let text = encode_event(&current.name, Some(id), None, data)?;
        Ok(self.commands.send_text(&text)?)
    }

    /// Sends `{"event": name, "ack": n, "data": data}` and runs `callback` with the
    /// client's acknowledgement `{"ack": n, "data": ...}` (its `data`, or `null`), or with
    /// [`AckError::Timeout`] when none arrives within `timeout`, or
    /// [`AckError::Disconnected`]. Returns `n`.
    pub fn request_ack<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        data: &T,
        timeout: Duration,
        callback: impl FnOnce(&mut Context<'_>, Result<Value, AckError>) + Send + 'static,
    ) -> Result<u64, ReplyError> {
        let id = self.data.acks.as_ref().map_or(1, |acks| acks.last + 1);
        // A timeout too large for an Instant waits a year (the far future in practice).
        let timeout = timeout.min(Duration::from_secs(365 * 24 * 3600));
        let deadline = self.now.checked_add(timeout).unwrap_or(self.now);
        let text = encode_event(name, None, Some(id), data)?;
        self.commands.send_text(&text)?;
        let acks = self.data.acks.get_or_insert_default();
        acks.last = id;
        acks.pending.push(PendingAck::new(id, deadline, Box::new(callback)));
        Ok(id)
    }

    /// Starts the close handshake with `code` (1000, 1001, or an application code
    /// 3000–4999, ...) and a reason of at most 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.commands.close(self.now, code, reason)
    }

    /// Joins a room (no effect if already a member).
    pub fn join(&mut self, room: &str) {
        if self.data.rooms.insert(room.to_owned()) {
            self.data.actions.push(Action::Join { room: room.to_owned() });
        }
    }

    /// Leaves a room (no effect if not a member).
    pub fn leave(&mut self, room: &str) {
        if self.data.rooms.remove(room) {
            self.data.actions.push(Action::Leave { room: room.to_owned() });
        }
    }

    /// Whether the connection is in `room`.
    #[inline]
    pub fn in_room(&self, room: &str) -> bool {
        !self.data.rooms.is_empty() && self.data.rooms.contains(room)
    }

    /// The rooms the connection is in.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.data.rooms.iter().map(String::as_str)
    }

    /// Sends `frame` to every member of `room`, this connection included if it is one.
    ///
    /// Broadcasts, sends by id and sends to others travel through the adapter, so this
    /// connection's own copy arrives after anything the handler sends it directly with
    /// [`send_text`](Self::send_text) and friends; each sender's messages keep their order.
    pub fn broadcast(&mut self, room: &str, frame: SharedFrame) {
        self.data.actions.push(Action::Broadcast {
            room: room.to_owned(),
            frame,
            except: None,
        });
    }

    /// Sends `frame` to every member of `room` but this connection.
    pub fn broadcast_others(&mut self, room: &str, frame: SharedFrame) {
        let except = Some(self.data.id());
        self.data.actions.push(Action::Broadcast {
            room: room.to_owned(),
            frame,
            except,
        });
    }

    /// Sends `frame` to every open connection, this one included.
    pub fn broadcast_all(&mut self, frame: SharedFrame) {
        self.data.actions.push(Action::BroadcastAll { frame, except: None });
    }

    /// Sends `frame` to the connection `to`, if it is still open.
    pub fn send_to(&mut self, to: ConnectionId, frame: SharedFrame) {
        self.data.actions.push(Action::SendTo { to, frame });
    }

    /// The app's validation-error reply, for handlers that validate by hand. When the
    /// event being handled is a request (it has an `id`), the reply carries that `id`, so
    /// the client settles the request with the error.
    pub fn send_validation_error(&mut self, path: &str, reason: &str) -> Result<(), SendError> {
        let event = self.current.as_ref().map_or("", |c| c.name.as_ref());
        let id = self.current.as_ref().and_then(|c| c.id.as_ref());
        let text = self.app.validation_reply(event, id, path, reason);
        self.commands.send_text(&text)
    }
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.data.id())
            .field("path", &self.path())
            .field("event", &self.event_name())
            .finish_non_exhaustive()
    }
}
