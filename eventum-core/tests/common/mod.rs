//! Helpers shared by the `app_*` integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use eventum_core::testing::{Message, TestClient};
use serde_json::Value;

/// The RFC 6455 sample key and its accept value.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Panic messages of tests' deliberate panics start with this; the hook keeps them out of
/// the test output while letting every other panic through.
pub const DELIBERATE: &str = "deliberate panic";

/// Silences the output of deliberate panics (handlers that panic on purpose).
pub fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.starts_with(DELIBERATE)) {
                default(info);
            }
        }));
    });
}

/// A shared list that handlers push to and tests read.
#[derive(Clone)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn new() -> Self {
        Log(Arc::new(Mutex::new(Vec::new())))
    }

    pub fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }

    pub fn items(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A shared counter.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A complete upgrade request for `path` with the RFC sample key, plus `extra` headers.
pub fn upgrade_request(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The bytes of a non-101 response as the core frames it: status line, `headers` in
/// order, `Content-Length`, `Connection: close`, blank line, body.
pub fn http_response(status_line: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status_line}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out
}

/// A `text/plain` response as `HttpResponse::text` builds it.
pub fn text_response(status_line: &str, body: &str) -> String {
    http_response(status_line, &[("Content-Type", "text/plain; charset=utf-8")], body)
}

/// Asserts that the server wrote exactly `expected` (shown as text on failure).
pub fn assert_wire(actual: &[u8], expected: &str) {
    assert_eq!(
        String::from_utf8_lossy(actual),
        expected,
        "the server's bytes differ from the expected response"
    );
}

/// The next message, which must be a text message.
pub fn recv_text(client: &mut TestClient) -> String {
    match client.recv() {
        Some(Message::Text(text)) => text,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next message, which must be JSON text.
pub fn recv_json(client: &mut TestClient) -> Value {
    client.recv_json().expect("expected a JSON text message, got nothing")
}

/// Asserts that nothing arrived and the connection is still open.
pub fn assert_quiet_and_open(client: &mut TestClient) {
    assert_eq!(client.recv_all(), Vec::<Message>::new(), "expected no message");
    assert!(!client.is_closed(), "the connection was closed");
}

/// A string field of a JSON value (panics when missing: the test sent it).
pub fn field<'v>(value: &'v Value, name: &str) -> &'v str {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {name:?} in {value}"))
}
