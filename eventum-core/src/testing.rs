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

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::app::{App, ConnectionId, Flags};
use crate::driver::{Endpoint, ServerOptions, Session};
use crate::frame::{apply_mask, decode_header, encode_client_frame, DecodeRules, OpCode};
use crate::handshake::accept_key;

const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x1f, 0x2e, 0x3d, 0x4c];

/// A message the server sent to a [`TestClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame: its code (if any) and reason.
    Close(Option<u16>, String),
}

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
        Ok(TestClient {
            world: world_rc,
            id,
            headers: response.headers,
            received: VecDeque::new(),
        })
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

/// The client side of one in-memory connection.
pub struct TestClient {
    world: Rc<RefCell<World>>,
    id: ConnectionId,
    headers: Vec<(String, String)>,
    received: VecDeque<Message>,
}

impl TestClient {
    /// The server-side id of this connection.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// A header of the 101 response.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The subprotocol the server chose.
    pub fn subprotocol(&self) -> Option<&str> {
        self.response_header("sec-websocket-protocol")
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, OpCode::Text, text.as_bytes());
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) {
        self.send_frame(true, OpCode::Binary, data);
    }

    /// Sends any value as JSON text, e.g. `{"event": "join", "room": "a"}`.
    pub fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) {
        let text = serde_json::to_string(value).unwrap_or_else(|e| panic!("test value is not JSON: {e}"));
        self.send_text(&text);
    }

    /// Sends `{"event": name, "data": data}`.
    pub fn send_event<T: Serialize + ?Sized>(&mut self, name: &str, data: &T) {
        self.send_json(&serde_json::json!({ "event": name, "data": data }));
    }

    /// Acknowledges a server request: `{"ack": n, "data": data}`.
    pub fn send_ack<T: Serialize + ?Sized>(&mut self, ack: u64, data: &T) {
        self.send_json(&serde_json::json!({ "ack": ack, "data": data }));
    }

    /// Sends a ping.
    pub fn ping(&mut self, payload: &[u8]) {
        self.send_frame(true, OpCode::Ping, payload);
    }

    /// Sends a close frame with `code` and `reason`.
    pub fn close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OpCode::Close, &payload);
    }

    /// Sends one raw frame (masked, as a client must), for protocol tests.
    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mut bytes = Vec::new();
        encode_client_frame(&mut bytes, fin, opcode, payload, MASK);
        self.send_raw(&bytes);
    }

    /// Sends raw bytes on the connection.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let mut world = self.world.borrow_mut();
        let now = world.now;
        if let Some(slot) = world.slots.get_mut(&self.id) {
            slot.session.handle_input(now, bytes);
        }
        world.pump();
    }

    /// Ends the connection abruptly, without a close frame.
    pub fn disconnect(&mut self) {
        let mut world = self.world.borrow_mut();
        let now = world.now;
        if let Some(slot) = world.slots.get_mut(&self.id) {
            slot.session.handle_eof(now);
        }
        world.pump();
    }

    /// The next message from the server, if one arrived.
    pub fn recv(&mut self) -> Option<Message> {
        self.read_frames();
        self.received.pop_front()
    }

    /// Every message received so far.
    pub fn recv_all(&mut self) -> Vec<Message> {
        self.read_frames();
        self.received.drain(..).collect()
    }

    /// The next text message parsed as JSON; `None` if no message is waiting. Panics if
    /// the next message is not JSON text.
    pub fn recv_json(&mut self) -> Option<Value> {
        match self.recv()? {
            Message::Text(text) => {
                Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}")))
            }
            other => panic!("expected a JSON text message, got {other:?}"),
        }
    }

    /// The code of the server's close frame, once one arrived.
    pub fn close_code(&mut self) -> Option<u16> {
        self.read_frames();
        self.received.iter().find_map(|m| match m {
            Message::Close(code, _) => Some(code.unwrap_or(1005)),
            _ => None,
        })
    }

    /// Whether the server closed the transport.
    pub fn is_closed(&self) -> bool {
        self.world
            .borrow()
            .slots
            .get(&self.id)
            .is_none_or(|s| s.transport_closed)
    }

    /// The server-side flags of this connection.
    pub fn server_flags(&self) -> Flags {
        self.world
            .borrow()
            .slots
            .get(&self.id)
            .map(|s| s.session.flags().clone())
            .unwrap_or_default()
    }

    /// Decodes complete server frames from the bytes received so far.
    fn read_frames(&mut self) {
        let mut world = self.world.borrow_mut();
        let Some(slot) = world.slots.get_mut(&self.id) else {
            return;
        };
        let rules = DecodeRules {
            require_mask: false,
            allow_rsv1: false,
        };
        let mut fragments: Option<(OpCode, Vec<u8>)> = None;
        let mut consumed = 0;
        loop {
            let rest = &slot.to_client[consumed..];
            let Ok(Some((header, len))) = decode_header(rest, rules) else {
                break;
            };
            let Some(end) = usize::try_from(header.payload_len)
                .ok()
                .and_then(|n| n.checked_add(len))
            else {
                break;
            };
            if rest.len() < end {
                break;
            }
            let mut payload = rest[len..end].to_vec();
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            consumed += end;
            let message = match header.opcode {
                OpCode::Ping => Some(Message::Ping(payload)),
                OpCode::Pong => Some(Message::Pong(payload)),
                OpCode::Close => {
                    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = payload
                        .get(2..)
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .unwrap_or_default();
                    Some(Message::Close(code, reason))
                }
                opcode => {
                    let (kind, mut data) = match (opcode, fragments.take()) {
                        (OpCode::Continuation, Some((kind, mut data))) => {
                            data.extend_from_slice(&payload);
                            (kind, data)
                        }
                        (kind, _) => (kind, payload),
                    };
                    if header.fin {
                        Some(match kind {
                            OpCode::Text => Message::Text(String::from_utf8_lossy(&data).into_owned()),
                            _ => Message::Binary(std::mem::take(&mut data)),
                        })
                    } else {
                        fragments = Some((kind, data));
                        None
                    }
                }
            };
            self.received.extend(message);
        }
        slot.to_client.drain(..consumed);
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        // A dropped client is a closed transport: the server cleans the connection up.
        if let Ok(mut world) = self.world.try_borrow_mut() {
            let now = world.now;
            if let Some(slot) = world.slots.get_mut(&self.id) {
                slot.session.handle_eof(now);
            }
            world.pump();
            world.slots.remove(&self.id);
            world.pump();
        }
    }
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
