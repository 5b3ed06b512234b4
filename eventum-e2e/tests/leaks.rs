//! Connections that come and go leave nothing behind: after 60 of them (closed, dropped,
//! reset) and 20 refused upgrades, and once the server has shut down, the process holds no
//! more file descriptors and no more threads than before. Its own test binary: the counts
//! are the process's, so no other test may run beside it.

use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_e2e::{generous, wait_until, Adapter, Client};

/// Open file descriptors and threads of this process.
fn resources() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (fds, threads)
}

fn echo_app() -> App {
    App::builder()
        .route(Route::new("/ws"))
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .build()
}

fn come_and_go(adapter: Adapter) {
    let server = adapter.start(echo_app());
    for i in 0..60 {
        let mut client = server.client("/ws");
        client.send_text("hi");
        assert_eq!(client.recv_text(), "hi");
        client.leave(i);
    }
    for _ in 0..20 {
        assert!(Client::connect(server.addr(), "/nope").is_err(), "refused with 404");
    }
    assert!(server.wait_connections(0), "connections: {}", server.connections());
    server.shutdown();
}

#[test]
fn connections_that_come_and_go_leave_no_descriptor_or_thread_behind() {
    for adapter in Adapter::ALL {
        // One round first: what a runtime starts once per process (smol's reactor thread)
        // is part of the baseline, not a leak.
        come_and_go(adapter);
        let before = resources();
        come_and_go(adapter);
        let settled = wait_until(generous(Duration::from_secs(2)), || {
            let now = resources();
            now.0 <= before.0 && now.1 <= before.1
        });
        assert!(
            settled,
            "{adapter:?}: (fds, threads) before {before:?}, after {:?}",
            resources()
        );
    }
}
