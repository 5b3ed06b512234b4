//! The peer measured beside eventum's echo examples in the load benchmark: the textbook
//! tungstenite echo server, one thread per connection, every message sent back unchanged.
//!
//! `cargo run --release -p eventum-benches --bin peer_echo_tungstenite [ADDRESS]` (default 127.0.0.1:9003)

use std::net::{TcpListener, TcpStream};

use tungstenite::{Error, Message};

fn serve(stream: TcpStream) -> Result<(), Error> {
    // The same as eventum's adapters: small echoes go out at once.
    stream.set_nodelay(true)?;
    let mut ws = tungstenite::accept(stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => Error::ConnectionClosed,
    })?;
    loop {
        // Pings are answered and closes replied to by tungstenite itself.
        if let message @ (Message::Text(_) | Message::Binary(_)) = ws.read()? {
            ws.send(message)?;
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let listener = TcpListener::bind(&addr)?;
    println!("echo server on ws://{}/", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let spawned = std::thread::Builder::new().spawn(move || {
                    let _ = serve(stream);
                });
                if let Err(e) = spawned {
                    eprintln!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    Ok(())
}
