//! `/metrics` of the chat examples on both adapters: Prometheus text that the official
//! `promtool check metrics` accepts, with counters that move as a scripted client
//! connects, sends and closes. One test: the `metrics` recorder is process-wide.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use eventum_e2e::{http_get, Adapter, Client};
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// Every series of a Prometheus text exposition, `name{labels}` → value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value = value.parse().unwrap_or_else(|e| panic!("a number in {line:?}: {e}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn scrape(adapter: Adapter, addr: std::net::SocketAddr) -> (String, HashMap<String, f64>) {
    let (status, headers, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{adapter:?}: /metrics answers");
    let content_type = headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("text/plain; version=0.0.4; charset=utf-8"));
    let series = parse(&body);
    (body, series)
}

/// `promtool check metrics` reads the exposition on stdin and lints it.
fn promtool_check(text: &str) {
    let required = std::env::var("EVENTUM_PROMTOOL").is_ok_and(|v| v == "required");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("SKIPPED: promtool check metrics ({e}); scripts/test.sh installs Debian's prometheus package");
            return;
        }
        Err(e) => panic!("promtool is required (EVENTUM_PROMTOOL=required) but cannot run: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[test]
fn metrics_move_as_a_client_connects_sends_and_closes() {
    eventum_demo::serving::metrics().expect("the Prometheus recorder installs");
    for adapter in Adapter::ALL {
        let server = adapter.start(eventum_demo::chat_app());
        let addr = server.addr();
        let (_, before) = scrape(adapter, addr);

        let mut client = server.client("/ws");
        client.send_json(&json!({"event": "join", "room": "m", "name": "ada"}));
        assert_eq!(client.recv_json()["event"], "joined");
        client.send_json(&json!({"event": "message", "room": "m", "text": "counted"}));
        assert_eq!(client.recv_json()["event"], "message");
        client.send_json(&json!({"event": "no-such-event"}));
        client.send_message(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })));
        let _ = client.expect_close();
        assert!(server.wait_connections(0), "{adapter:?}: the client is gone");
        let refused = Client::connect(addr, "/nowhere").err().map(|e| e.status);
        assert_eq!(refused, Some(404), "{adapter:?}: an upgrade to no route");
        assert!(server.wait_connections(0));

        let (text, after) = scrape(adapter, addr);
        let moved = |series: &str| delta(&before, &after, series);
        assert_eq!(
            moved(r#"eventum_handshakes_total{status="101"}"#),
            1.0,
            "{adapter:?}\n{text}"
        );
        assert_eq!(
            moved(r#"eventum_handshakes_total{status="404"}"#),
            1.0,
            "{adapter:?}\n{text}"
        );
        assert_eq!(
            moved("eventum_connections_open"),
            0.0,
            "{adapter:?}: opened and closed\n{text}"
        );
        assert_eq!(after.get("eventum_connections_open"), Some(&0.0), "{adapter:?}\n{text}");
        assert_eq!(moved("eventum_messages_received_total"), 3.0, "{adapter:?}\n{text}");
        assert_eq!(
            moved("eventum_messages_sent_total"),
            2.0,
            "{adapter:?}: joined and message\n{text}"
        );
        assert!(
            moved("eventum_bytes_received_total") > 200.0,
            "{adapter:?}: the upgrade and three frames\n{text}"
        );
        assert!(
            moved("eventum_bytes_sent_total") > 150.0,
            "{adapter:?}: the 101 and two events\n{text}"
        );
        assert_eq!(
            moved(r#"eventum_events_total{event="join"}"#),
            1.0,
            "{adapter:?}\n{text}"
        );
        assert_eq!(
            moved(r#"eventum_events_total{event="message"}"#),
            1.0,
            "{adapter:?}\n{text}"
        );
        assert_eq!(
            moved(r#"eventum_events_total{event="unknown"}"#),
            1.0,
            "{adapter:?}\n{text}"
        );
        assert_eq!(
            moved(r#"eventum_closes_total{code="1000"}"#),
            1.0,
            "{adapter:?}\n{text}"
        );
        assert!(
            moved(r#"eventum_http_responses_total{status="200"}"#) >= 1.0,
            "{adapter:?}: the first scrape\n{text}"
        );
        assert!(
            text.contains("# HELP eventum_handshakes_total "),
            "{adapter:?}: described\n{text}"
        );
        promtool_check(&text);
        server.shutdown();
    }
}
