//! Serving an app over `std::net`: the accept loop, lifespan hooks and graceful shutdown.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventum_core::app::App;
use eventum_core::driver::{Busy, Endpoint, Session};

use crate::driver::{drive, unpark_me};
use crate::transport::Transport;

/// An app ready to serve connections with blocking threads: over TCP with
/// [`Server::listen`], or over any [`Transport`] with [`Server::serve_stream`].
///
/// ```no_run
/// use eventum_core::app::{App, Route};
/// use eventum_std::Server;
///
/// let app = App::builder().route(Route::new("/echo")).on_text(|ctx, text| {
///     let _ = ctx.send_text(text);
/// }).build();
/// let running = Server::new(app).listen("127.0.0.1:9002").unwrap();
/// println!("listening on {}", running.local_addr());
/// running.wait();
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    endpoint: Endpoint,
}

impl Server {
    /// A server for `app` with the default [`ServerOptions`]; for other options, build it
    /// from an endpoint: `Server::from(Endpoint::with_options(app, options))`.
    pub fn new(app: App) -> Self {
        Self::from(Endpoint::new(app))
    }

    /// The kit's endpoint: connection handles by id, counts, room members, the app.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Serves one connection over `stream` on the calling thread (plus one reader thread)
    /// until it ends. Over the connection limit the stream gets `503` and is closed.
    pub fn serve_stream<T: Transport>(&self, stream: T, peer: Option<SocketAddr>) -> io::Result<()> {
        match self.endpoint.admit(Instant::now(), peer) {
            Ok(session) => drive(session, stream),
            Err(busy) => refuse(stream, &busy),
        }
    }

    /// Binds `addr`, runs the startup hooks, and accepts on a thread of its own; each
    /// connection gets a thread.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        self.endpoint.app().startup();
        let server = self.clone();
        let acceptor = std::thread::Builder::new()
            .name("eventum-accept".into())
            .spawn(move || server.accept_loop(&listener))?;
        Ok(Running {
            server: self,
            local_addr,
            acceptor,
        })
    }

    fn accept_loop(&self, listener: &TcpListener) {
        for stream in listener.incoming() {
            if self.endpoint.is_stopping() {
                return;
            }
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().ok();
            // Admitted here, so a refused connection costs no thread.
            match self.endpoint.admit(Instant::now(), peer) {
                Ok(session) => spawn_connection(session, stream, peer),
                Err(busy) => {
                    let _ = refuse(stream, &busy);
                }
            }
        }
    }
}

impl From<Endpoint> for Server {
    /// A server for the endpoint's app and options.
    fn from(endpoint: Endpoint) -> Self {
        Server { endpoint }
    }
}

fn spawn_connection(session: Session, stream: TcpStream, peer: Option<SocketAddr>) {
    // A failed spawn drops the closure, and with it the session: its slot is freed.
    let spawned = std::thread::Builder::new().name("eventum-conn".into()).spawn(move || {
        if let Err(e) = drive(session, stream) {
            log::debug!("connection from {peer:?} ended with {e}");
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start a connection thread: {e}");
    }
}

/// Answers `503` without reading the request.
fn refuse<T: Transport>(mut stream: T, busy: &Busy) -> io::Result<()> {
    stream.write_all(busy.response())?;
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

/// A server listening on a TCP address.
#[derive(Debug)]
pub struct Running {
    server: Server,
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl Running {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server, for its endpoint (handles, counts).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Blocks the calling thread while the server runs.
    pub fn wait(self) {
        let _ = self.acceptor.join();
    }

    /// Graceful shutdown: stops accepting, closes every connection with 1001, waits up
    /// to the shutdown timeout for them to finish, drops the ones left (their disconnect
    /// hooks still run), then runs the shutdown hooks.
    pub fn shutdown(self) {
        let endpoint = &self.server.endpoint;
        let mut plan = endpoint.shutdown(Instant::now());
        // Wake the blocking accept so it sees the flag and closes the listener.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        let _ = self.acceptor.join();
        let waker = unpark_me();
        while let Some(until) = plan.poll(Instant::now(), &waker) {
            std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
        }
        endpoint.app().shutdown();
    }
}
