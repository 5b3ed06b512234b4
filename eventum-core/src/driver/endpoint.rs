//! [`Endpoint`]: what one server shares between its connections: the app, the hub of
//! connections and rooms, the connection slots and the shutdown flag.

use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::app::hub::Hub;
use crate::app::{App, Command, ConnectionHandle, ConnectionId, Mailbox};
use crate::backplane::{Backplane, Inbox, MAX_NODE};
use crate::handshake::HttpResponse;

use super::{Session, Shutdown};

/// Server-wide limits, the same on every adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Most connections served at once; beyond it new ones get `503`. Default 10 000.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for connections to finish their close
    /// handshake before dropping them; default 5 s.
    pub shutdown_timeout: Duration,
    /// How long a graceful shutdown serves its open connections before telling them to
    /// close, while every new request (a health check too) is answered `503`, so a load
    /// balancer probing the app's [health check](crate::app::AppBuilder::health_check)
    /// takes the node out of rotation first. Default zero: close at once.
    pub drain_period: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(5),
            drain_period: Duration::ZERO,
        }
    }
}

/// The server side every adapter drives: it admits connections (a [`Session`] each, or
/// the `503` answer past [`ServerOptions::max_connections`]), delivers what sessions ask
/// of each other through its hub, hands out [`ConnectionHandle`]s, and plans a graceful
/// [`shutdown`](Self::shutdown). No clock, no thread, no socket: adapters bring those.
/// Cloning is a reference count; clones are the same server.
///
/// ```
/// use eventum_core::app::{App, Route};
/// use eventum_core::driver::{Endpoint, ServerOptions};
/// use std::time::Instant;
///
/// let app = App::builder().route(Route::new("/ws")).build();
/// let options = ServerOptions { max_connections: 1, ..ServerOptions::default() };
/// let endpoint = Endpoint::with_options(app, options);
/// let first = endpoint.admit(Instant::now(), None).expect("a free slot");
/// let busy = endpoint.admit(Instant::now(), None).expect_err("no slot left");
/// assert!(busy.response().starts_with(b"HTTP/1.1 503 "));
/// drop(first); // the slot is free again
/// assert!(endpoint.admit(Instant::now(), None).is_ok());
/// ```
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) app: App,
    options: ServerOptions,
    pub(crate) hub: Hub,
    /// Connections admitted and not yet dropped.
    active: AtomicUsize,
    /// Set when shutdown starts: every new request is answered `503`.
    stopping: AtomicBool,
    /// Set when the open connections are told to close (after the drain period).
    closing: AtomicBool,
    /// Woken when the last connection ends during a shutdown.
    idle_waker: Mutex<Option<Waker>>,
    busy: Arc<[u8]>,
}

/// A connection refused before it was served: write [`response`](Self::response) and
/// close the transport, without reading the request.
#[derive(Debug, Clone)]
pub struct Busy {
    response: Arc<[u8]>,
}

impl Busy {
    /// The complete HTTP response (`503 Service Unavailable`).
    pub fn response(&self) -> &[u8] {
        &self.response
    }
}

impl Endpoint {
    /// An endpoint for `app` with the default [`ServerOptions`].
    pub fn new(app: App) -> Self {
        Self::with_options(app, ServerOptions::default())
    }

    /// An endpoint for `app` with `options`.
    pub fn with_options(app: App, options: ServerOptions) -> Self {
        Self::with_hub(app, options, Hub::default())
    }

    /// An endpoint that is one node of several: rooms, broadcasts and sends by id reach
    /// the other nodes' connections through `backplane` (see [`crate::backplane`]).
    /// Connection ids carry the backplane's node number.
    ///
    /// # Panics
    ///
    /// When the backplane's node number is not in `1..=`[`MAX_NODE`]: connection ids
    /// could not carry it (a bug in the backplane, caught before anything is served).
    pub fn with_backplane(app: App, options: ServerOptions, backplane: Arc<dyn Backplane>) -> Self {
        let node = backplane.node();
        assert!(
            (1..=MAX_NODE).contains(&node),
            "backplane node number {node} is not in 1..={MAX_NODE}"
        );
        let endpoint = Self::with_hub(app, options, Hub::with_backplane(Arc::clone(&backplane)));
        backplane.attach(Inbox::new(Arc::downgrade(&endpoint.shared)));
        endpoint
    }

    fn with_hub(app: App, options: ServerOptions, hub: Hub) -> Self {
        let response = |body: &str| -> Arc<[u8]> {
            // A fixed status and a plain body: always a valid response.
            HttpResponse::text(503, body).to_bytes().unwrap_or_default().into()
        };
        Endpoint {
            shared: Arc::new(Shared {
                app,
                options,
                hub,
                active: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                idle_waker: Mutex::new(None),
                busy: response("Server busy: too many connections"),
            }),
        }
    }

    /// The app being served.
    pub fn app(&self) -> &App {
        &self.shared.app
    }

    /// The server-wide limits.
    pub fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    /// Admits a new connection whose first input will be the HTTP request (`now` starts
    /// its handshake timeout), or refuses it with `503` when every slot is taken. Once
    /// shutdown has begun, the session answers whatever it is asked with `503`, after
    /// reading the request (a response written over unread bytes can be lost to the
    /// reset that closing such a socket sends). The slot is freed when the [`Session`]
    /// is dropped.
    pub fn admit(&self, now: Instant, peer: Option<SocketAddr>) -> Result<Session, Busy> {
        let shared = &self.shared;
        let stopping = shared.stopping.load(Ordering::SeqCst);
        let max = shared.options.max_connections;
        let reserved = shared
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if reserved.is_err() {
            crate::observe::refused_busy();
            return Err(Busy {
                response: Arc::clone(&shared.busy),
            });
        }
        let mailbox = Mailbox::new(shared.app.config().max_backlog());
        let handle = ConnectionHandle::new(ConnectionId::next_on(shared.hub.node()), Arc::new(mailbox));
        shared.hub.register(handle.clone());
        // Pairs with the fence in `close_all`: either its walk over the hub sees this
        // connection, or this load sees the flag. A connection that saw shutdown begin
        // refuses its request itself and needs no telling.
        fence(Ordering::SeqCst);
        if !stopping && shared.closing.load(Ordering::SeqCst) {
            handle.mailbox().push_urgent(Command::Shutdown);
        }
        Ok(Session::new(self.clone(), handle, now, peer))
    }

    /// A handle to the open connection `id`, to send to it from anywhere.
    pub fn connection(&self, id: ConnectionId) -> Option<ConnectionHandle> {
        self.shared.hub.handle(id)
    }

    /// How many connections are being served.
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// The connections in `room`.
    pub fn room_members(&self, room: &str) -> Vec<ConnectionId> {
        self.shared.hub.members(room)
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    /// Begins a graceful shutdown at `now`: from now on every new request is answered
    /// `503`; after [`ServerOptions::drain_period`] every connection is told to close with
    /// 1001 (one not open yet is dropped). Poll the returned [`Shutdown`] until it is done.
    pub fn shutdown(&self, now: Instant) -> Shutdown {
        self.shared.stopping.store(true, Ordering::SeqCst);
        Shutdown::new(self.clone(), now)
    }

    /// Tells every connection to close: the drain period is over.
    pub(crate) fn close_all(&self) {
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        shared.hub.command_all(&Command::Shutdown);
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Shared {
    /// Frees a connection's slot; wakes a waiting shutdown after the last one.
    pub(crate) fn release(&self) {
        let before = self.active.fetch_sub(1, Ordering::AcqRel);
        if before == 1 && self.stopping.load(Ordering::Acquire) {
            let waker = self.idle_waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    pub(crate) fn set_idle_waker(&self, waker: &Waker) {
        let mut slot = self.idle_waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.connections())
            .field("stopping", &self.is_stopping())
            .finish_non_exhaustive()
    }
}
