//! The counters an operator alerts on, read back through a real recorder (Prometheus
//! text): a handler panic, a slow consumer's close and its dropped deliveries, a refusal
//! past the connection limit. Its own test binary: the recorder is process-wide.

use std::time::Instant;

use eventum_core::app::{App, HandleError, Route};
use eventum_core::driver::{Endpoint, ServerOptions};
use eventum_core::Config;
use metrics_exporter_prometheus::PrometheusBuilder;

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked text frame with the all-zero mask (the payload goes as it is).
fn text_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    [&[0x81, 0x80 | text.len() as u8, 0, 0, 0, 0][..], text.as_bytes()].concat()
}

/// The value of one series in the exposition (0 when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
#[allow(clippy::disallowed_methods)] // bare sessions need a starting instant
fn panics_slow_consumers_drops_and_refusals_are_counted() {
    let metrics = PrometheusBuilder::new().install_recorder().expect("the only recorder");
    let config = Config::builder()
        .water_marks(2048, 1024)
        .max_backlog(4096)
        .build()
        .unwrap();
    let app = App::builder()
        .config(config)
        .route(Route::new("/ws"))
        .on_text(|_, text| {
            assert_ne!(text, "panic", "the handler panics on request");
        })
        .build();
    let options = ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    };
    let endpoint = Endpoint::with_options(app, options);
    let now = Instant::now();

    // A handler panic closes its connection with 1011.
    let mut panicking = endpoint.admit(now, None).unwrap();
    panicking.handle_input(now, UPGRADE);
    panicking.handle_input(now, &text_frame("panic"));
    let out: Vec<u8> = panicking.poll_transmit().chunks().flatten().copied().collect();
    assert!(out.ends_with(b"\x88\x10\x03\xf3internal error"), "closed with 1011");
    panicking.handle_eof(now);
    assert!(!panicking.is_open());

    // A member that does not read: its mailbox overflows, then it is closed with 1008.
    let mut slow = endpoint.admit(now, None).unwrap();
    slow.handle_input(now, UPGRADE);
    let handle = endpoint.connection(slow.id()).unwrap();
    let message = "m".repeat(100);
    let accepted = (0..100).take_while(|_| handle.send_text(&message).is_ok()).count();
    assert_eq!(handle.send_text(&message), Err(HandleError::Full));
    slow.handle_mail(now);
    assert!(!slow.is_open());

    // Past the limit of two: 503 before the request is read.
    assert!(endpoint.admit(now, None).is_err());

    let text = metrics.render();
    let check = |series: &str, expected: f64| assert_eq!(value(&text, series), expected, "{series}\n{text}");
    check("eventum_handler_panics_total", 1.0);
    check(r#"eventum_closes_total{code="1011"}"#, 1.0);
    check(r#"eventum_closes_total{code="1008"}"#, 1.0);
    check("eventum_slow_consumer_closes_total", 1.0);
    check("eventum_deliveries_dropped_total", 2.0); // the refused send, and the one after
    check(r#"eventum_handshakes_total{status="101"}"#, 2.0);
    check(r#"eventum_handshakes_total{status="503"}"#, 1.0);
    check("eventum_connections_open", 0.0);
    check("eventum_messages_received_total", 1.0);
    check("eventum_messages_sent_total", accepted as f64);
}
