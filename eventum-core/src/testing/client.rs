//! The client side of an in-memory connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use serde::Serialize;
use serde_json::Value;

use super::World;
use crate::app::{ConnectionId, Flags};
use crate::client_inflate::inflate_server_message;
use crate::frame::{apply_mask, decode_header, encode_client_frame, DecodeRules, OpCode};

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

/// The client side of one in-memory connection.
pub struct TestClient {
    world: Rc<RefCell<World>>,
    id: ConnectionId,
    headers: Vec<(String, String)>,
    received: VecDeque<Message>,
    /// Inflates compressed messages when the request offered permessage-deflate; one
    /// stream for the whole connection, which also serves a server keeping its context.
    inflater: flate2::Decompress,
}

impl TestClient {
    pub(super) fn new(world: Rc<RefCell<World>>, id: ConnectionId, headers: Vec<(String, String)>) -> Self {
        TestClient {
            world,
            id,
            headers,
            received: VecDeque::new(),
            inflater: flate2::Decompress::new(false),
        }
    }

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
        // RSV1 is the server's only where permessage-deflate was agreed; elsewhere a frame
        // with it stops decoding, as any other protocol error does.
        let compression = self
            .response_header("sec-websocket-extensions")
            .is_some_and(|value| value.starts_with("permessage-deflate"));
        let mut world = self.world.borrow_mut();
        let Some(slot) = world.slots.get_mut(&self.id) else {
            return;
        };
        let rules = DecodeRules {
            require_mask: false,
            allow_rsv1: compression,
        };
        let mut fragments: Option<(OpCode, bool, Vec<u8>)> = None;
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
                    let (kind, compressed, mut data) = match (opcode, fragments.take()) {
                        (OpCode::Continuation, Some((kind, compressed, mut data))) => {
                            data.extend_from_slice(&payload);
                            (kind, compressed, data)
                        }
                        (kind, _) => (kind, header.rsv1, payload),
                    };
                    if header.fin {
                        if compressed {
                            data = inflate_server_message(&mut self.inflater, &data);
                        }
                        Some(match kind {
                            OpCode::Text => Message::Text(String::from_utf8_lossy(&data).into_owned()),
                            _ => Message::Binary(std::mem::take(&mut data)),
                        })
                    } else {
                        fragments = Some((kind, compressed, data));
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
