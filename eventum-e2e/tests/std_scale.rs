//! eventum-std holds thousands of idle connections with its defaults (one thread each)
//! and still admits, upgrades and echoes for a new client. Its own test binary: the
//! client's sockets and the server's live in this one process and share its file limit.

use eventum_core::app::{App, Route};
use eventum_e2e::{Adapter, RawClient};

const IDLE: usize = 5_000;

#[test]
fn five_thousand_idle_connections_and_a_new_client_still_echoes() {
    let app = App::builder()
        .route(Route::new("/ws"))
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .build();
    let server = Adapter::Std.start_with(
        app,
        eventum_e2e::Options {
            max_connections: eventum_core::driver::ServerOptions::default().max_connections,
            ..eventum_e2e::Options::default()
        },
    );
    // Each RawClient completes its upgrade: every one of them is admitted, none refused.
    let idle: Vec<RawClient> = (0..IDLE).map(|_| RawClient::connect(server.addr(), "/ws")).collect();
    assert!(server.wait_connections(IDLE), "connections: {}", server.connections());
    let mut client = server.client("/ws");
    client.send_text("still here");
    assert_eq!(client.recv_text(), "still here");
    assert_eq!(server.connections(), IDLE + 1);
    drop(idle);
    drop(client);
    assert!(server.wait_connections(0), "connections: {}", server.connections());
    server.shutdown();
}
