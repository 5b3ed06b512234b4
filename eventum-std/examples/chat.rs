//! Chat server on std threads: open http://127.0.0.1:8081 in two browser tabs, join a room, chat.
//!
//! `cargo run --release -p eventum-std --example chat [ADDRESS] [--tls-cert FILE --tls-key FILE] [--redis URL]`
//! (default 127.0.0.1:8081). With a certificate and key it serves `https://` and `wss://`.
//! With `--redis redis://127.0.0.1:6379` it joins a cluster of chat nodes: members of a room
//! chat across nodes. `GET /healthz` answers 200 until shutdown begins; `GET /metrics` the
//! Prometheus metrics.

fn main() {
    if let Err(e) = run() {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

fn run() -> std::io::Result<()> {
    let args = eventum_demo::serving::ChatArgs::from_env("127.0.0.1:8081")?;
    eventum_demo::serving::metrics();
    let mut server = eventum_std::Server::new(eventum_demo::chat_app());
    if let Some(config) = args.tls.clone() {
        server = server.tls(config);
    }
    if let Some(backplane) = args.backplane()? {
        server = server.backplane(backplane);
    }
    let running = server.listen(&args.addr)?;
    println!("chat on {} (WebSocket events at /ws)", args.url(running.local_addr()));
    running.wait();
    Ok(())
}
