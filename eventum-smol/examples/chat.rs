//! Chat server on smol: open http://127.0.0.1:8080 in two browser tabs, join a room, chat.
//!
//! `cargo run --release -p eventum-smol --example chat [ADDRESS]` (default 127.0.0.1:8080)

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let running = eventum_smol::Server::new(eventum_demo::chat_app()).listen(&addr)?;
    println!("chat on http://{}/ (WebSocket events at /ws)", running.local_addr());
    running.wait();
    Ok(())
}
