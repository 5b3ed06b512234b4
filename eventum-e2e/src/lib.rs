//! Support for eventum's end-to-end tests: start an [`App`] with either adapter on a real
//! loopback socket ([`Adapter`], [`TestServer`]), talk to it with a blocking WebSocket client
//! ([`Client`], over `tungstenite`) or byte by byte ([`RawClient`]), and drive a headless
//! Chromium ([`browser`]).
//!
//! Every wait here is bounded: sockets get read timeouts, polls give up after a deadline,
//! and a test that would otherwise hang fails with a message saying what it waited for.
#![forbid(unsafe_code)]

pub mod browser;
pub mod js;
pub mod redis;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventum_core::app::{App, ConnectionHandle, ConnectionId};
use eventum_core::driver::{Endpoint, ServerOptions};
use serde_json::Value;
use tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

pub use tungstenite;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// An upper time bound for a test: three times `expected`. What such a bound checks is
/// that something is bounded (a shutdown, a timeout), and a debug build on two loaded
/// cores runs slowly; the bound must not turn load into failures.
pub fn generous(expected: Duration) -> Duration {
    expected * 3
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Which of eventum's adapters serves the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `eventum-smol`: its event loops (TLS: one task per connection on a smol executor).
    Smol,
    /// `eventum-std`: blocking threads.
    Std,
}

/// Server options common to both adapters.
#[derive(Clone)]
pub struct Options {
    /// Most connections served at once; beyond it `503`.
    pub max_connections: usize,
    /// How long shutdown waits for connections to finish their close handshake.
    pub shutdown_timeout: Duration,
    /// Event-loop threads (smol only).
    pub threads: usize,
    /// How long shutdown serves open connections (answering new requests `503`) before
    /// closing them.
    pub drain_period: Duration,
    /// Serve `wss://` with this configuration ([`tls::TestCertificate`] makes one).
    pub tls: Option<Arc<eventum_tls::rustls::ServerConfig>>,
    /// Make the server one node of several.
    pub backplane: Option<Arc<dyn eventum_core::backplane::Backplane>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_connections: 1000,
            shutdown_timeout: Duration::from_secs(3),
            threads: 2,
            drain_period: Duration::ZERO,
            tls: None,
            backplane: None,
        }
    }
}

impl Adapter {
    /// Both adapters.
    pub const ALL: [Adapter; 2] = [Adapter::Smol, Adapter::Std];

    /// Starts `app` on `127.0.0.1:0` with default options.
    pub fn start(self, app: App) -> TestServer {
        self.start_with(app, Options::default())
    }

    /// Starts `app` on `127.0.0.1:0`.
    pub fn start_with(self, app: App, options: Options) -> TestServer {
        self.listen(app, "127.0.0.1:0", options)
            .unwrap_or_else(|e| panic!("{self:?} server listens: {e}"))
    }

    /// Starts `app` on `addr` (e.g. the address of a server that was just shut down, to
    /// restart it where its clients reconnect).
    pub fn listen(self, app: App, addr: &str, options: Options) -> io::Result<TestServer> {
        let server_options = ServerOptions {
            max_connections: options.max_connections,
            shutdown_timeout: options.shutdown_timeout,
            drain_period: options.drain_period,
        };
        let endpoint = match options.backplane {
            Some(backplane) => Endpoint::with_backplane(app, server_options, backplane),
            None => Endpoint::with_options(app, server_options),
        };
        let tls = options.tls.is_some();
        let running = match (self, options.tls) {
            (Adapter::Smol, tls) => {
                let server = eventum_smol::Server::from(endpoint).threads(options.threads);
                Running::Smol(
                    match tls {
                        Some(config) => server.tls(config),
                        None => server,
                    }
                    .listen(addr)?,
                )
            }
            (Adapter::Std, Some(config)) => Running::Std(eventum_std::Server::from(endpoint).tls(config).listen(addr)?),
            (Adapter::Std, None) => Running::Std(eventum_std::Server::from(endpoint).listen(addr)?),
        };
        let addr = match &running {
            Running::Smol(r) => r.local_addr(),
            Running::Std(r) => r.local_addr(),
        };
        Ok(TestServer {
            adapter: self,
            addr,
            tls,
            running: Some(running),
        })
    }
}

pub(crate) enum Running {
    Smol(eventum_smol::Running),
    Std(eventum_std::Running),
}

/// A server listening on loopback; shut down by [`TestServer::shutdown`] or, failing that,
/// when dropped (so a failing test still stops its server).
pub struct TestServer {
    adapter: Adapter,
    addr: SocketAddr,
    /// Serves `https://` and `wss://`.
    tls: bool,
    running: Option<Running>,
}

impl TestServer {
    /// The adapter serving.
    pub fn adapter(&self) -> Adapter {
        self.adapter
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr/path`, or `https://addr/path` when the server serves TLS.
    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// How many connections the server is serving.
    pub fn connections(&self) -> usize {
        match self.running.as_ref().expect("server running") {
            Running::Smol(r) => r.server().endpoint().connections(),
            Running::Std(r) => r.server().endpoint().connections(),
        }
    }

    /// Waits (bounded by [`WAIT`]) until the server serves exactly `n` connections.
    pub fn wait_connections(&self, n: usize) -> bool {
        wait_until(WAIT, || self.connections() == n)
    }

    /// A handle to the open connection `id` (the same type on both adapters).
    pub fn connection(&self, id: u64) -> Option<ConnectionHandle> {
        match self.running.as_ref().expect("server running") {
            Running::Smol(r) => r.server().endpoint().connection(ConnectionId(id)),
            Running::Std(r) => r.server().endpoint().connection(ConnectionId(id)),
        }
    }

    /// The eventum-std server, to serve more connections on it (e.g. over a custom
    /// transport); `None` for the smol adapter.
    pub fn std_server(&self) -> Option<eventum_std::Server> {
        match self.running.as_ref()? {
            Running::Std(r) => Some(r.server().clone()),
            Running::Smol(_) => None,
        }
    }

    /// Connects a WebSocket client to `path` (panics unless the server answers `101`).
    pub fn client(&self, path: &str) -> Client {
        Client::connect(self.addr, path)
            .unwrap_or_else(|e| panic!("{:?}: upgrade of {path} refused: {e:?}", self.adapter))
    }

    /// Graceful shutdown: blocks until the server has stopped and its shutdown hooks ran.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        match self.running.take() {
            Some(Running::Smol(r)) => r.shutdown(),
            Some(Running::Std(r)) => r.shutdown(),
            None => {}
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("adapter", &self.adapter)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A refused upgrade (or any non-101 answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status code.
    pub status: u16,
    /// The response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl HttpError {
    /// A response header's first value (name lowercased).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A parsed HTTP response head plus whatever bytes followed it in the same reads.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    tail: Vec<u8>,
}

/// Reads an HTTP response head from `stream` (bounded by its read timeout and 64 KiB).
fn read_head(stream: &mut impl Read) -> io::Result<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed after {} bytes of response head: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")))?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Head {
        status,
        headers,
        tail: buf[end..].to_vec(),
    })
}

/// Reads the rest of a body framed by `Content-Length` (or up to EOF without one).
fn read_body(stream: &mut impl Read, head: &Head) -> io::Result<Vec<u8>> {
    let mut body = head.tail.clone();
    match find_header(&head.headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => {
            if body.len() < len {
                let mut rest = vec![0u8; len - body.len()];
                stream.read_exact(&mut rest)?;
                body.extend_from_slice(&rest);
            }
            body.truncate(len);
        }
        None => {
            stream.read_to_end(&mut body)?;
        }
    }
    Ok(body)
}

/// A plain HTTP GET over a fresh connection: `(status, headers, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tcp_connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send GET");
    let head = read_head(&mut stream).expect("read response head");
    let body = read_body(&mut stream, &head).expect("read response body");
    (head.status, head.headers, String::from_utf8_lossy(&body).into_owned())
}

fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    let _ = stream.set_nodelay(true);
    stream
}

/// The bytes of a minimal upgrade request for `path` (the RFC 6455 sample key), for
/// tests that speak HTTP by hand.
pub fn upgrade_request(path: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_upgrade(&mut bytes, "localhost", path, "dGhlIHNhbXBsZSBub25jZQ==", &[], &[]).expect("in memory");
    bytes
}

/// Writes an upgrade request for `path`.
fn write_upgrade(
    stream: &mut impl Write,
    host: &str,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    subprotocols: &[&str],
) -> io::Result<()> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !subprotocols.is_empty() {
        request.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", subprotocols.join(", ")));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.flush()
}

/// HTTP headers as `(lowercased name, value)` pairs.
pub type Headers = Vec<(String, String)>;

/// Performs the client side of the opening handshake over `stream` by hand (so refusals
/// come back with their status, headers and whole body). On `101` returns the response
/// headers and the bytes read past the head.
fn handshake<S: Read + Write>(
    stream: &mut S,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    subprotocols: &[&str],
) -> Result<(Headers, Vec<u8>), HttpError> {
    let key = tungstenite::handshake::client::generate_key();
    write_upgrade(stream, host, path, &key, headers, subprotocols).unwrap_or_else(|e| panic!("send upgrade: {e}"));
    let head = read_head(stream).unwrap_or_else(|e| panic!("read the answer to the upgrade of {path}: {e}"));
    if head.status != 101 {
        let body = read_body(stream, &head).unwrap_or_else(|e| panic!("read the body of a {}: {e}", head.status));
        return Err(HttpError {
            status: head.status,
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    assert_eq!(
        find_header(&head.headers, "sec-websocket-accept"),
        Some(expected.as_str()),
        "Sec-WebSocket-Accept of the 101"
    );
    Ok((head.headers, head.tail))
}

/// How a [`Client::try_recv`] ended without a message.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The close handshake is complete and the server ended the transport cleanly (EOF).
    Ended,
    /// The connection failed or ended otherwise (reset, EOF without a close handshake, a
    /// protocol error).
    Closed(String),
}

/// A blocking WebSocket client over a stream (TCP by default), with every read bounded.
pub struct Client<S: Read + Write = TcpStream> {
    ws: WebSocket<S>,
    headers: Vec<(String, String)>,
}

impl Client<TcpStream> {
    /// Opens a WebSocket to `path` with no extra headers or subprotocols.
    pub fn connect(addr: SocketAddr, path: &str) -> Result<Self, HttpError> {
        Self::connect_with(addr, path, &[], &[])
    }

    /// Opens a WebSocket to `path` with extra request headers and offered subprotocols.
    /// Non-101 answers come back as [`HttpError`]; socket failures panic.
    pub fn connect_with(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        subprotocols: &[&str],
    ) -> Result<Self, HttpError> {
        let mut stream = tcp_connect(addr);
        let (headers, tail) = handshake(&mut stream, &addr.to_string(), path, headers, subprotocols)?;
        Ok(Client {
            ws: WebSocket::from_partially_read(stream, tail, Role::Client, Some(ws_config())),
            headers,
        })
    }

    /// Drops the TCP connection without a close handshake.
    pub fn drop_abruptly(self) {
        let stream = self.ws.get_ref();
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Ends the connection in one of the three ways a client leaves, chosen by `way % 3`:
    /// 0 a close handshake, 1 a TCP shutdown without one ([`Client::drop_abruptly`]),
    /// 2 a plain drop. Churn tests cycle through them so the server sees every kind.
    pub fn leave(self, way: usize) {
        match way % 3 {
            0 => {
                self.close(1000, "");
            }
            1 => self.drop_abruptly(),
            _ => drop(self),
        }
    }
}

impl<S: Read + Write> Client<S> {
    /// Opens a WebSocket over an already connected `stream` (any transport). The caller
    /// bounds the stream's reads (e.g. with a read timeout) and passes `set_timeout` to
    /// change it.
    pub fn over_stream(mut stream: S, path: &str) -> Result<Self, HttpError> {
        let (headers, tail) = handshake(&mut stream, "localhost", path, &[], &[])?;
        Ok(Client {
            ws: WebSocket::from_partially_read(stream, tail, Role::Client, Some(ws_config())),
            headers,
        })
    }

    /// Wraps a WebSocket that tungstenite's own client handshake opened.
    pub fn from_websocket(ws: WebSocket<S>) -> Self {
        Client {
            ws,
            headers: Vec::new(),
        }
    }

    /// The headers of the 101 response (names lowercased).
    pub fn response_headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A header of the 101 response.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Sends any message (e.g. a ping).
    pub fn send_message(&mut self, message: Message) {
        self.ws.send(message).expect("send");
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send text");
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) {
        self.ws.send(Message::binary(data.to_vec())).expect("send binary");
    }

    /// Sends a JSON value as a text message.
    pub fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string());
    }

    /// The next message of any kind (pings and pongs included; tungstenite answers pings by
    /// itself when reading), waiting at most `timeout`.
    pub fn try_recv_any(&mut self, timeout: Duration) -> Result<Message, RecvError>
    where
        S: TimeoutStream,
    {
        self.ws.get_mut().set_timeout(timeout.max(Duration::from_millis(1)));
        match self.ws.read() {
            Ok(message) => Ok(message),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                Err(RecvError::Timeout)
            }
            Err(tungstenite::Error::ConnectionClosed) => Err(RecvError::Ended),
            Err(e) => Err(RecvError::Closed(e.to_string())),
        }
    }

    /// The next text, binary or close message (pings and pongs skipped), waiting at most
    /// `timeout` in all.
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Message, RecvError>
    where
        S: TimeoutStream,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            match self.try_recv_any(left)? {
                Message::Ping(_) | Message::Pong(_) => continue,
                message => return Ok(message),
            }
        }
    }

    /// The next data message, waiting at most [`WAIT`]; panics otherwise.
    pub fn recv(&mut self) -> Message
    where
        S: TimeoutStream,
    {
        match self.try_recv(WAIT) {
            Ok(message) => message,
            Err(e) => panic!("expected a message within {WAIT:?}: {e:?}"),
        }
    }

    /// The next message as text.
    pub fn recv_text(&mut self) -> String
    where
        S: TimeoutStream,
    {
        match self.recv() {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message as JSON, waiting at most [`WAIT`].
    pub fn recv_json(&mut self) -> Value
    where
        S: TimeoutStream,
    {
        self.recv_json_timeout(WAIT)
    }

    /// The next message as JSON, waiting at most `timeout`.
    pub fn recv_json_timeout(&mut self, timeout: Duration) -> Value
    where
        S: TimeoutStream,
    {
        match self.try_recv(timeout) {
            Ok(Message::Text(text)) => {
                serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", text.as_str()))
            }
            Ok(other) => panic!("expected a JSON text message, got {other:?}"),
            Err(e) => panic!("expected a JSON message within {timeout:?}: {e:?}"),
        }
    }

    /// Asserts that no data message arrives within `timeout`.
    pub fn expect_silence(&mut self, timeout: Duration)
    where
        S: TimeoutStream,
    {
        match self.try_recv(timeout) {
            Err(RecvError::Timeout) => {}
            other => panic!("expected nothing for {timeout:?}, got {other:?}"),
        }
    }

    /// Starts the close handshake with `code` and returns the code and reason the server
    /// answered with, once the server has also closed the transport.
    pub fn close(mut self, code: u16, reason: &str) -> (u16, String)
    where
        S: TimeoutStream,
    {
        let frame = CloseFrame {
            code: WsCloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        self.ws.close(Some(frame)).expect("send close");
        self.expect_close()
    }

    /// Waits (at most [`WAIT`]) for the server's close frame, skipping data messages, and
    /// returns its code and reason; the transport may then end in any way (after a protocol
    /// error the server fails the connection, RFC 6455 §7.1.7, and unread input can make
    /// that a reset).
    pub fn expect_close_frame(&mut self) -> (u16, String)
    where
        S: TimeoutStream,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no close frame within {WAIT:?}");
            }
            match self.try_recv_any(left) {
                Ok(Message::Close(frame)) => {
                    return frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) | Err(RecvError::Timeout) => {}
                Err(e) => panic!("connection ended without a close frame: {e:?}"),
            }
        }
    }

    /// Waits (at most [`WAIT`]) for the server's close frame, skipping data messages, then
    /// for the server to end the transport cleanly (it closes TCP first, RFC 6455 §7.1.1);
    /// returns the close code and reason (`1005` for a close frame without a code).
    pub fn expect_close(&mut self) -> (u16, String)
    where
        S: TimeoutStream,
    {
        let deadline = Instant::now() + WAIT;
        let mut close: Option<(u16, String)> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("connection not over within {WAIT:?} (close frame seen: {close:?})");
            }
            match self.try_recv_any(left) {
                Ok(Message::Close(frame)) => {
                    close = Some(frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string())));
                }
                Ok(_) | Err(RecvError::Timeout) => {}
                Err(RecvError::Ended) => {
                    return close.expect("tungstenite reports a clean end only after a close frame");
                }
                Err(RecvError::Closed(why)) => {
                    panic!("connection did not end cleanly (close frame seen: {close:?}): {why}");
                }
            }
        }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &S {
        self.ws.get_ref()
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// A gate handlers wait at until the test opens it: tests of blocking handlers need no
/// clock. The wait is bounded (twice [`WAIT`]) so a broken test cannot hang the suite.
#[derive(Debug, Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

impl Gate {
    /// Waits until the gate opens (counted in [`waiting`](Self::waiting)).
    pub fn wait(&self) {
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let open = self.open.lock().expect("gate");
        let _ = self.changed.wait_timeout_while(open, WAIT * 2, |open| !*open);
    }

    /// Opens the gate for every waiter, present and future.
    pub fn release(&self) {
        *self.open.lock().expect("gate") = true;
        self.changed.notify_all();
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        *self.open.lock().expect("gate")
    }

    /// How many waits began.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Generates `mod smol` and `mod std_threads`, each with one `#[test]` per listed function
/// calling it with its adapter: one suite, both adapters. Attributes before a name (e.g.
/// `#[ignore = "..."]`) apply to both.
#[macro_export]
macro_rules! for_both_adapters {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod smol {
            $( $(#[$attr])* #[test] fn $name() { super::$name($crate::Adapter::Smol) } )*
        }
        mod std_threads {
            $( $(#[$attr])* #[test] fn $name() { super::$name($crate::Adapter::Std) } )*
        }
    };
}

/// A stream whose reads can be bounded.
pub trait TimeoutStream {
    /// Bounds each read by `timeout`.
    fn set_timeout(&mut self, timeout: Duration);
}

impl TimeoutStream for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).expect("set read timeout");
    }
}

impl TimeoutStream for std::os::unix::net::UnixStream {
    fn set_timeout(&mut self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).expect("set read timeout");
    }
}

/// A WebSocket client that speaks frames by hand: it never answers pings, so keepalive
/// timeouts can be observed.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One frame read by [`RawClient::read_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The FIN bit.
    pub fin: bool,
    /// The RSV1 bit: a compressed message (permessage-deflate).
    pub rsv1: bool,
    /// The opcode (`0x1` text, `0x2` binary, `0x8` close, `0x9` ping, `0xA` pong).
    pub opcode: u8,
    /// The payload (server frames are unmasked).
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawClient {
    /// Opens a WebSocket to `path` (panics unless the server answers `101`).
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        let mut stream = tcp_connect(addr);
        let (_, tail) = handshake(&mut stream, &addr.to_string(), path, &[], &[])
            .unwrap_or_else(|e| panic!("upgrade of {path} refused: {e:?}"));
        RawClient { stream, buf: tail }
    }

    /// Opens a WebSocket to `path` with extra request headers (e.g. an extension offer);
    /// returns the client and the response headers (panics unless the server answers `101`).
    pub fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (Self, Headers) {
        let mut stream = tcp_connect(addr);
        let (response, tail) = handshake(&mut stream, &addr.to_string(), path, headers, &[])
            .unwrap_or_else(|e| panic!("upgrade of {path} refused: {e:?}"));
        (RawClient { stream, buf: tail }, response)
    }

    /// Sends the upgrade request and a first frame in one write (pipelined), then reads
    /// the `101` (panics otherwise).
    pub fn connect_with_first_frame(addr: SocketAddr, path: &str, opcode: u8, payload: &[u8]) -> Self {
        let mut stream = tcp_connect(addr);
        let key = tungstenite::handshake::client::generate_key();
        let mut bytes = Vec::new();
        write_upgrade(&mut bytes, &addr.to_string(), path, &key, &[], &[]).expect("in memory");
        bytes.extend_from_slice(&masked_frame(opcode, payload));
        stream.write_all(&bytes).expect("send request and frame");
        let head = read_head(&mut stream).expect("read the 101");
        assert_eq!(head.status, 101, "{:?}", head.headers);
        RawClient { stream, buf: head.tail }
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send raw bytes");
    }

    /// Sends bytes as they are, reporting a failed write (the server went away).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame, waiting at most `timeout`: `Ok(None)` when the server ended the
    /// connection, `Err` on timeout or a socket error.
    pub fn read_frame(&mut self, timeout: Duration) -> io::Result<Option<RawFrame>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time"));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the first bytes of a masked text frame and stops, as a client that dies
    /// mid-frame would.
    pub fn send_partial_frame(&mut self) {
        self.stream
            .write_all(&[0x81, 0x80 | 100, 1, 2, 3, 4, b'x'])
            .expect("send partial frame");
    }

    /// Resets the connection: closes the socket with `SO_LINGER` 0, so the server gets
    /// an RST instead of a FIN, as from a client that crashed.
    pub fn reset(self) {
        rustix::net::sockopt::set_socket_linger(&self.stream, Some(Duration::ZERO)).expect("SO_LINGER 0");
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.stream
            .write_all(&masked_frame(opcode, payload))
            .expect("send raw frame");
    }
}

/// One final, masked client frame.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Parses one unmasked server frame from the front of `buf`.
fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let mask = if buf[1] & 0x80 != 0 {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let mut payload = buf.get(at..at + len)?.to_vec();
    if let Some(m) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= m[i % 4]);
    }
    let rsv1 = buf[0] & 0x40 != 0;
    Some((
        RawFrame {
            fin,
            rsv1,
            opcode,
            payload,
        },
        at + len,
    ))
}
