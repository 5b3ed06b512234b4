//! Echo server on std threads: every message comes back unchanged. For conformance and load tests.
//!
//! `cargo run --release -p eventum-std --example echo [ADDRESS]` (default 127.0.0.1:9002)

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let running = eventum_std::Server::new(eventum_demo::echo_app()).listen(&addr)?;
    println!("echo server on ws://{}/", running.local_addr());
    running.wait();
    Ok(())
}
