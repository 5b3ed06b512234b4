//! What a server tells its operator: one `debug` log line per connection when it ends,
//! and, with the feature `metrics`, counters and a gauge through the
//! [`metrics`](https://docs.rs/metrics) facade, so an app exports them with whatever
//! recorder it already runs (Prometheus, StatsD, …).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `eventum_connections_open` | gauge | |
//! | `eventum_handshakes_total` | counter | `status`: `101`, or the refusal's status (`400`, `404`, `426`, `431`, `503`, …) |
//! | `eventum_http_responses_total` | counter | `status` (plain HTTP requests: pages, health checks) |
//! | `eventum_messages_received_total`, `eventum_messages_sent_total` | counter | |
//! | `eventum_bytes_received_total`, `eventum_bytes_sent_total` | counter | (bytes on the wire) |
//! | `eventum_closes_total` | counter | `code`: `1000`…`1015`, `3xxx`, `4xxx`, or `none` (no close handshake) |
//! | `eventum_slow_consumer_closes_total` | counter | |
//! | `eventum_deliveries_dropped_total` | counter | (a full mailbox or outgoing queue refused a delivery) |
//! | `eventum_handler_panics_total` | counter | |
//! | `eventum_events_total` | counter | `event`: a name the app registered, or `unknown` |
//!
//! Every label has a bounded set of values. Handles are looked up once per process and
//! per event name, so install the recorder before the server starts; per-message counts
//! are added once per batch of input, not once per message.

use std::net::SocketAddr;
use std::time::Instant;

use crate::app::ConnectionId;
use crate::event::{CloseCause, Closed};

/// Gives every metric above its help text, for exporters that show it (Prometheus'
/// `# HELP` lines). Call it once, after installing the recorder.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!("eventum_connections_open", "WebSocket connections open now");
    describe_counter!(
        "eventum_handshakes_total",
        "Upgrade requests answered, by HTTP status (101 accepted)"
    );
    describe_counter!(
        "eventum_http_responses_total",
        "Plain HTTP requests answered, by status"
    );
    describe_counter!("eventum_messages_received_total", "WebSocket messages received");
    describe_counter!("eventum_messages_sent_total", "WebSocket messages queued for sending");
    describe_counter!("eventum_bytes_received_total", Unit::Bytes, "Bytes read from clients");
    describe_counter!("eventum_bytes_sent_total", Unit::Bytes, "Bytes written to clients");
    describe_counter!("eventum_closes_total", "WebSocket connections ended, by close code");
    describe_counter!(
        "eventum_slow_consumer_closes_total",
        "Connections closed with 1008 for not reading"
    );
    describe_counter!(
        "eventum_deliveries_dropped_total",
        "Deliveries refused for want of room in a queue"
    );
    describe_counter!(
        "eventum_handler_panics_total",
        "Panics caught in handlers, hooks and middleware"
    );
    describe_counter!("eventum_events_total", "JSON events dispatched, by event name");
}

/// Counts of one connection's traffic not yet reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// Reports a batch of traffic.
pub(crate) fn traffic(counts: Traffic) {
    #[cfg(feature = "metrics")]
    if counts != Traffic::default() {
        let handles = handles::traffic();
        handles.messages_in.increment(counts.messages_in);
        handles.messages_out.increment(counts.messages_out);
        handles.bytes_in.increment(counts.bytes_in);
        handles.bytes_out.increment(counts.bytes_out);
    }
    let _ = counts;
}

/// A connection was refused before its request was read (`503`).
pub(crate) fn refused_busy() {
    #[cfg(feature = "metrics")]
    metrics::counter!("eventum_handshakes_total", "status" => "503").increment(1);
}

/// The app accepted an upgrade: the 101 went out.
pub(crate) fn upgraded() {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("eventum_handshakes_total", "status" => "101").increment(1);
        metrics::gauge!("eventum_connections_open").increment(1.0);
    }
}

/// A connection ended: the lifecycle log line, and what it ended with.
pub(crate) struct Ended<'a> {
    pub(crate) id: ConnectionId,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) path: Option<&'a str>,
    pub(crate) started: Instant,
    pub(crate) now: Instant,
    /// The upgrade was accepted.
    pub(crate) opened: bool,
    /// The request asked for an upgrade (rather than a page).
    pub(crate) upgrade: bool,
}

pub(crate) fn ended(ended: &Ended<'_>, closed: &Closed) {
    // Checked first: the peer's text costs an allocation per connection.
    if log::log_enabled!(log::Level::Debug) {
        let peer = ended.peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let kind = match (ended.opened, ended.upgrade) {
            (true, _) => "websocket",
            (false, true) => "refused upgrade",
            (false, false) => "http",
        };
        log::debug!(
            "connection {} from {peer} {} ({kind}): ended with {} {:?} after {:?}",
            ended.id,
            ended.path.unwrap_or("(no request)"),
            closed.code.0,
            closed.cause,
            ended.now.saturating_duration_since(ended.started),
        );
    }
    #[cfg(feature = "metrics")]
    {
        if ended.opened {
            metrics::gauge!("eventum_connections_open").decrement(1.0);
            metrics::counter!("eventum_closes_total", "code" => close_label(closed)).increment(1);
            if closed.cause == CloseCause::SlowConsumer {
                metrics::counter!("eventum_slow_consumer_closes_total").increment(1);
            }
            return;
        }
        let status = match &closed.cause {
            CloseCause::Handshake(error) => error.status(),
            CloseCause::Responded { status } => *status,
            // The transport ended (or timed out) before an answer: nothing was refused.
            _ => return,
        };
        let name = match (&closed.cause, ended.upgrade) {
            (CloseCause::Responded { .. }, false) => "eventum_http_responses_total",
            _ => "eventum_handshakes_total",
        };
        metrics::counter!(name, "status" => status.to_string()).increment(1);
    }
}

/// The `code` label of a close: RFC 6455's codes by number, the registered and private
/// ranges as one value each, so the label's values stay few whatever peers send.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn close_label(closed: &Closed) -> &'static str {
    if closed.cause == CloseCause::TransportEnded {
        return "none";
    }
    const RFC: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012", "1013",
        "1014", "1015",
    ];
    match closed.code.0 {
        code @ 1000..=1015 => RFC[usize::from(code - 1000)],
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

/// A handler, hook or middleware panicked.
pub(crate) fn handler_panicked() {
    #[cfg(feature = "metrics")]
    metrics::counter!("eventum_handler_panics_total").increment(1);
}

/// A delivery to a connection was refused for want of room.
pub(crate) fn delivery_dropped() {
    #[cfg(feature = "metrics")]
    metrics::counter!("eventum_deliveries_dropped_total").increment(1);
}

/// Counts dispatches of one event name; kept with the event's handler.
#[derive(Default, Clone)]
pub(crate) struct EventCounter {
    #[cfg(feature = "metrics")]
    counter: std::sync::OnceLock<metrics::Counter>,
}

impl EventCounter {
    /// One event named `name` was dispatched.
    pub(crate) fn dispatched(&self, name: &str) {
        #[cfg(feature = "metrics")]
        self.counter
            .get_or_init(|| metrics::counter!("eventum_events_total", "event" => name.to_owned()))
            .increment(1);
        let _ = name;
    }
}

/// An event name the app does not handle was dispatched.
pub(crate) fn unknown_event() {
    #[cfg(feature = "metrics")]
    metrics::counter!("eventum_events_total", "event" => "unknown").increment(1);
}

#[cfg(feature = "metrics")]
mod handles {
    use std::sync::OnceLock;

    use metrics::{counter, Counter};

    pub(super) struct TrafficHandles {
        pub(super) messages_in: Counter,
        pub(super) messages_out: Counter,
        pub(super) bytes_in: Counter,
        pub(super) bytes_out: Counter,
    }

    pub(super) fn traffic() -> &'static TrafficHandles {
        static HANDLES: OnceLock<TrafficHandles> = OnceLock::new();
        HANDLES.get_or_init(|| TrafficHandles {
            messages_in: counter!("eventum_messages_received_total"),
            messages_out: counter!("eventum_messages_sent_total"),
            bytes_in: counter!("eventum_bytes_received_total"),
            bytes_out: counter!("eventum_bytes_sent_total"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;

    fn closed(code: u16, cause: CloseCause) -> Closed {
        Closed {
            code: CloseCode(code),
            reason: String::new(),
            cause,
        }
    }

    #[test]
    fn close_labels_are_bounded() {
        let local = || CloseCause::Local { answered: true };
        assert_eq!(close_label(&closed(1000, CloseCause::Remote)), "1000");
        assert_eq!(close_label(&closed(1015, local())), "1015");
        assert_eq!(close_label(&closed(3123, CloseCause::Remote)), "3xxx");
        assert_eq!(close_label(&closed(4999, CloseCause::Remote)), "4xxx");
        assert_eq!(close_label(&closed(1006, CloseCause::TransportEnded)), "none");
    }
}
