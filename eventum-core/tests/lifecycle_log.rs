//! The operator's log: one `debug` line per connection when it ends (id, peer, path,
//! close code, duration), and nothing at `info` or above per message. Its own test
//! binary: the logger is process-wide.

use std::sync::Mutex;

use eventum_core::app::{App, Route};
use eventum_core::testing::TestServer;

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("eventum_core") {
            let line = record.args().to_string();
            RECORDS.lock().unwrap().push((record.level(), line));
        }
    }
    fn flush(&self) {}
}

#[test]
fn one_debug_line_per_connection_and_nothing_louder_per_message() {
    log::set_logger(&Capture).expect("the only logger");
    log::set_max_level(log::LevelFilter::Trace);
    let app = App::builder()
        .route(Route::new("/chat/{room}"))
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .build();
    let server = TestServer::new(app);
    let mut client = server.connect("/chat/lobby").expect("upgrade");
    for i in 0..50 {
        client.send_text(&format!("message {i}"));
    }
    assert_eq!(client.recv_all().len(), 50);
    client.close(1000, "done");
    assert!(client.is_closed());
    let id = client.id();

    let records = RECORDS.lock().unwrap().clone();
    let loud: Vec<_> = records.iter().filter(|(level, _)| *level <= log::Level::Info).collect();
    assert!(loud.is_empty(), "nothing at info or above for 50 messages: {loud:?}");
    let lifecycle: Vec<_> = records
        .iter()
        .filter(|(level, line)| *level == log::Level::Debug && line.starts_with(&format!("connection {id} ")))
        .filter(|(_, line)| line.contains("ended with"))
        .collect();
    assert_eq!(lifecycle.len(), 1, "one line for the connection: {records:?}");
    let line = &lifecycle[0].1;
    for part in ["/chat/lobby", "(websocket)", "ended with 1000", " after "] {
        assert!(line.contains(part), "{part:?} in {line:?}");
    }
}
