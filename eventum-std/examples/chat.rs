//! Chat server on std threads: open http://127.0.0.1:8081 in two browser tabs, join a room, chat.
//!
//! `cargo run --release -p eventum-std --example chat [ADDRESS]` (default 127.0.0.1:8081)

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let running = eventum_std::Server::new(eventum_demo::chat_app()).listen(&addr)?;
    println!("chat on http://{}/ (WebSocket events at /ws)", running.local_addr());
    running.wait();
    Ok(())
}
