//! `wss://` on both adapters, with a certificate made for the run: echo over TLS, ALPN,
//! a client that stalls mid-TLS-handshake dropped by the handshake timeout, and a plain
//! `ws://` client on the TLS port refused cleanly while TLS clients go on being served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use eventum_core::app::{App, Route};
use eventum_core::Config;
use eventum_e2e::tls::TestCertificate;
use eventum_e2e::{generous, upgrade_request, Adapter, Client, Options, TestServer};
use tungstenite::Message;

fn echo_app(handshake_timeout: Duration) -> App {
    let config = Config::builder()
        .handshake_timeout(Some(handshake_timeout))
        .build()
        .expect("a valid config");
    App::builder()
        .config(config)
        .route(Route::new("/echo"))
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .build()
}

fn start(adapter: Adapter, cert: &TestCertificate, handshake_timeout: Duration) -> TestServer {
    let options = Options {
        tls: Some(cert.server_config()),
        ..Options::default()
    };
    adapter.start_with(echo_app(handshake_timeout), options)
}

/// Reads until the server ends the connection; returns what arrived and when it ended.
fn read_to_end(sock: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    sock.set_read_timeout(Some(limit)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return (got, Some(started.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, Some(started.elapsed())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return (got, None),
            Err(e) => panic!("read: {e}"),
        }
        if started.elapsed() > limit {
            return (got, None);
        }
    }
}

/// The server still echoes for a TLS client, then shuts down.
fn still_serves_tls(server: TestServer, cert: TestCertificate) {
    let mut client = Client::over_stream(cert.connect(server.addr()), "/echo").expect("upgrade");
    client.send_text("tls still works");
    assert_eq!(client.recv_text(), "tls still works", "{:?}", server.adapter());
    server.shutdown();
}

fn echo_over_wss(adapter: Adapter) {
    let cert = TestCertificate::new();
    let server = start(adapter, &cert, Duration::from_secs(10));
    let stream = cert.connect(server.addr());
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "{adapter:?}: ALPN");
    let mut client = Client::over_stream(stream, "/echo").expect("the upgrade over TLS is accepted");
    for text in ["hello over wss", &"x".repeat(100_000)] {
        client.send_text(text);
        assert_eq!(client.recv_text(), text, "{adapter:?}: echo over TLS");
    }
    client.send_message(Message::Close(None));
    let _ = client.expect_close();
    assert!(server.wait_connections(0), "{adapter:?}: the connection ended");
    server.shutdown();
}

#[test]
fn echo_over_wss_smol() {
    echo_over_wss(Adapter::Smol);
}

#[test]
fn echo_over_wss_std() {
    echo_over_wss(Adapter::Std);
}

fn stalled_tls_handshake_is_dropped(adapter: Adapter) {
    let cert = TestCertificate::new();
    let timeout = Duration::from_millis(800);
    let server = start(adapter, &cert, timeout);
    // The first bytes of a TLS record carrying a ClientHello, and then nothing.
    let mut stalled = TcpStream::connect(server.addr()).expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("a partial ClientHello");
    assert!(
        server.wait_connections(1),
        "{adapter:?}: the stalled client holds a slot"
    );
    let (_, ended) = read_to_end(&mut stalled, generous(timeout * 4));
    let ended = ended.unwrap_or_else(|| panic!("{adapter:?}: a stalled TLS handshake was not dropped"));
    assert!(
        ended >= timeout / 2,
        "{adapter:?}: dropped after {ended:?}, before the timeout"
    );
    assert!(server.wait_connections(0), "{adapter:?}: its slot is free");
    still_serves_tls(server, cert);
}

#[test]
fn stalled_tls_handshake_is_dropped_smol() {
    stalled_tls_handshake_is_dropped(Adapter::Smol);
}

#[test]
fn stalled_tls_handshake_is_dropped_std() {
    stalled_tls_handshake_is_dropped(Adapter::Std);
}

fn plain_ws_on_the_tls_port_fails_cleanly(adapter: Adapter) {
    let cert = TestCertificate::new();
    let server = start(adapter, &cert, Duration::from_secs(10));
    let mut plain = TcpStream::connect(server.addr()).expect("connect");
    plain
        .write_all(&upgrade_request("/echo"))
        .expect("send a plain upgrade");
    let (got, ended) = read_to_end(&mut plain, generous(Duration::from_secs(2)));
    assert!(ended.is_some(), "{adapter:?}: the plain client is disconnected at once");
    // What comes back, if anything, is a TLS alert record, never an HTTP answer.
    assert!(got.is_empty() || got[0] == 0x15, "{adapter:?}: got {got:?}");
    assert!(server.wait_connections(0), "{adapter:?}: its slot is free");
    still_serves_tls(server, cert);
}

#[test]
fn plain_ws_on_the_tls_port_fails_cleanly_smol() {
    plain_ws_on_the_tls_port_fails_cleanly(Adapter::Smol);
}

#[test]
fn plain_ws_on_the_tls_port_fails_cleanly_std() {
    plain_ws_on_the_tls_port_fails_cleanly(Adapter::Std);
}

/// A client that asks for 32 MiB (more than loopback's socket buffers hold) and closes at
/// once, then reads slowly: the server answers the close after the burst and closes the
/// TCP connection first, yet every message and the close reply arrive (what rustls still
/// buffered is flushed before the socket closes).
fn close_after_a_burst_loses_nothing(adapter: Adapter) {
    const BURST: usize = 2048;
    let cert = TestCertificate::new();
    let config = Config::builder().max_backlog(64 << 20).build().expect("a valid config");
    let app = App::builder()
        .config(config)
        .route(Route::new("/burst"))
        .on_text(|ctx, _| {
            let chunk = "b".repeat(16 * 1024);
            for _ in 0..BURST {
                let _ = ctx.send_text(&chunk);
            }
        })
        .build();
    let options = Options {
        tls: Some(cert.server_config()),
        ..Options::default()
    };
    let server = adapter.start_with(app, options);
    let mut client = Client::over_stream(cert.connect(server.addr()), "/burst").expect("upgrade");
    client.send_text("go");
    client.send_message(Message::Close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Library(4000),
        reason: "enough".into(),
    })));
    // Let the server fill the socket, answer the close and close while we do not read.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..BURST {
        assert_eq!(client.recv_text().len(), 16 * 1024, "{adapter:?}: message {i}");
    }
    assert_eq!(client.expect_close().0, 4000, "{adapter:?}: the close reply");
    server.shutdown();
}

#[test]
fn close_after_a_burst_loses_nothing_smol() {
    close_after_a_burst_loses_nothing(Adapter::Smol);
}

#[test]
fn close_after_a_burst_loses_nothing_std() {
    close_after_a_burst_loses_nothing(Adapter::Std);
}
