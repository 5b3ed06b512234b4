//! The app `eventum.js` is tested against ([`eventum_e2e::js::client_fixture_app`]), as a
//! process the Node tests start, stop and start again:
//!
//! `client_fixture smol|std [ADDRESS]` (default `127.0.0.1:0`) prints
//! `listening on IP:PORT`, serves until its standard input closes, then shuts down
//! gracefully (clients see 1001) and exits.

use std::io::{Read, Write};

use eventum_e2e::Adapter;

fn main() {
    let mut args = std::env::args().skip(1);
    let adapter = match args.next().as_deref() {
        Some("smol") => Adapter::Smol,
        Some("std") => Adapter::Std,
        other => {
            eprintln!("usage: client_fixture smol|std [ADDRESS] (got {other:?})");
            std::process::exit(2);
        }
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let server = match adapter.start_at(eventum_e2e::js::client_fixture_app(), &addr) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("client_fixture: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", server.addr());
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    server.shutdown();
}
