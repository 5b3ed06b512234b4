//! An in-memory test client for apps: no sockets, no runtime, a virtual clock.
//!
//! [`TestServer`] runs an [`App`] on its real [`Endpoint`] (hub, mailboxes, slots) and
//! drives its sessions the way an adapter does; [`TestClient`] speaks the
//! client side of the protocol to one of them. Time only moves with
//! [`TestServer::advance`], so timeouts fire deterministically.
//!
//! ```
//! use eventum_core::app::{App, Route};
//! use eventum_core::testing::{Message, TestServer};
//! use serde_json::json;
//!
//! let app = App::builder()
//!     .route(Route::new("/chat"))
//!     .on("hello", |ctx, event| {
//!         let name = event.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_owned();
//!         let _ = ctx.send_json(&json!({"event": "welcome", "name": name}));
//!     })
//!     .build();
//! let server = TestServer::new(app);
//! let mut client = server.connect("/chat").unwrap();
//! client.send_json(&json!({"event": "hello", "name": "ada"}));
//! assert_eq!(client.recv_json(), Some(json!({"event": "welcome", "name": "ada"})));
//! client.close(1000, "");
//! assert_eq!(client.recv(), Some(Message::Close(Some(1000), String::new())));
//! ```

mod client;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::app::{App, ConnectionId};
use crate::driver::{Endpoint, ServerOptions, Session};
use crate::handshake::accept_key;

pub use client::{Message, TestClient};

const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The server refused the upgrade with an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The status code.
    pub status: u16,
    /// The response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Refused {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Slot {
    session: Session,
    /// Bytes the server wrote that the client has not read.
    to_client: Vec<u8>,
    /// The server closed the transport.
    transport_closed: bool,
}

/// The server side: the app's real endpoint (hub, mailboxes, slots) and its sessions,
/// driven in id order at the virtual time.
struct World {
    endpoint: Endpoint,
    now: Instant,
    slots: BTreeMap<ConnectionId, Slot>,
}

impl World {
    /// Delivers every session's mail until none is left, then moves output to the clients.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut busy = false;
            for slot in self.slots.values_mut() {
                if slot.session.has_mail() {
                    slot.session.handle_mail(now);
                    busy = true;
                }
            }
            if !busy {
                break;
            }
        }
        for slot in self.slots.values_mut() {
            transmit_all(&mut slot.session, &mut slot.to_client);
            if slot.session.should_close_transport() {
                slot.transport_closed = true;
            }
        }
    }
}

/// Appends everything the session has for the wire to `out`.
fn transmit_all(session: &mut Session, out: &mut Vec<u8>) {
    let transmit = session.poll_transmit();
    transmit.chunks().for_each(|chunk| out.extend_from_slice(chunk));
    let n = transmit.len();
    session.transmitted(n);
}

/// Runs an app's connections in memory.
#[derive(Clone)]
pub struct TestServer {
    world: Rc<RefCell<World>>,
}

impl TestServer {
    /// A server for `app`; its clock starts now and moves only with [`advance`](Self::advance).
    #[allow(clippy::disallowed_methods)] // the virtual clock needs one real starting point
    pub fn new(app: App) -> Self {
        let options = ServerOptions {
            max_connections: usize::MAX,
            ..ServerOptions::default()
        };
        TestServer {
            world: Rc::new(RefCell::new(World {
                endpoint: Endpoint::with_options(app, options),
                now: Instant::now(),
                slots: BTreeMap::new(),
            })),
        }
    }

    /// Opens a WebSocket to `path`, offering no subprotocol.
    pub fn connect(&self, path: &str) -> Result<TestClient, Refused> {
        self.request(path).connect()
    }

    /// Starts building an upgrade request to `path` (headers, subprotocols).
    pub fn request(&self, path: &str) -> TestRequest {
        TestRequest {
            server: self.clone(),
            path: path.to_owned(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
        }
    }

    /// Sends raw bytes as a new connection, then end of input; returns everything the
    /// server wrote. For byte-exact tests of HTTP answers.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let world = self.world.borrow_mut();
        let now = world.now;
        let Ok(mut session) = world.endpoint.admit(now, None) else {
            unreachable!("the test server has no connection limit")
        };
        session.handle_input(now, bytes);
        session.handle_eof(now);
        let mut out = Vec::new();
        transmit_all(&mut session, &mut out);
        out
    }

    /// Moves the virtual clock forward and fires every deadline that passed.
    pub fn advance(&self, by: Duration) {
        let mut world = self.world.borrow_mut();
        world.now += by;
        let now = world.now;
        for slot in world.slots.values_mut() {
            if slot.session.poll_timeout().is_some_and(|t| t <= now) {
                slot.session.handle_timeout(now);
            }
        }
        world.pump();
    }

    /// The members of a room, as the server delivers to them.
    pub fn room_members(&self, room: &str) -> Vec<ConnectionId> {
        let mut members = self.world.borrow().endpoint.room_members(room);
        members.sort();
        members
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.world
            .borrow()
            .slots
            .values()
            .filter(|s| s.session.is_open())
            .count()
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").finish_non_exhaustive()
    }
}

/// An upgrade request being built; see [`TestServer::request`].
#[derive(Debug)]
pub struct TestRequest {
    server: TestServer,
    path: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
}

impl TestRequest {
    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Offers a subprotocol (in order).
    pub fn subprotocol(mut self, name: &str) -> Self {
        self.subprotocols.push(name.to_owned());
        self
    }

    /// Sends the request; `Ok` once the server answered 101, `Err` with its response
    /// otherwise.
    pub fn connect(self) -> Result<TestClient, Refused> {
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n",
            self.path
        );
        if !self.subprotocols.is_empty() {
            head.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", self.subprotocols.join(", ")));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");

        let world_rc = Rc::clone(&self.server.world);
        let mut world = world_rc.borrow_mut();
        let now = world.now;
        let Ok(mut session) = world.endpoint.admit(now, Some(([127, 0, 0, 1], 40000).into())) else {
            unreachable!("the test server has no connection limit")
        };
        session.handle_input(now, head.as_bytes());
        let id = session.id();
        world.slots.insert(
            id,
            Slot {
                session,
                to_client: Vec::new(),
                transport_closed: false,
            },
        );
        world.pump();
        let slot = world.slots.get_mut(&id).ok_or_else(refused_without_response)?;
        let response = parse_response(&slot.to_client).ok_or_else(refused_without_response)?;
        slot.to_client.drain(..response.head_len);
        if response.status != 101 {
            let body = std::mem::take(&mut slot.to_client);
            world.slots.remove(&id);
            world.pump();
            return Err(Refused {
                status: response.status,
                headers: response.headers,
                body,
            });
        }
        let expected = accept_key(CLIENT_KEY);
        let accept = response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-accept"));
        assert_eq!(
            accept.map(|(_, v)| v.as_str()),
            Some(expected.as_str()),
            "101 with a wrong accept key"
        );
        drop(world);
        Ok(TestClient::new(world_rc, id, response.headers))
    }
}

fn refused_without_response() -> Refused {
    Refused {
        status: 0,
        headers: Vec::new(),
        body: b"the server sent no response".to_vec(),
    }
}

struct ParsedResponse {
    status: u16,
    headers: Vec<(String, String)>,
    head_len: usize,
}

fn parse_response(bytes: &[u8]) -> Option<ParsedResponse> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    Some(ParsedResponse {
        status: response.code?,
        headers: response
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        head_len,
    })
}
