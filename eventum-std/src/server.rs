//! Serving an app over `std::net`: the accept loop, the connection limit, lifespan hooks
//! and graceful shutdown.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventum_core::app::{App, Command, ConnectionId, Hub};
use eventum_core::handshake::HttpResponse;

use crate::conn::ConnectionHandle;
use crate::driver::drive;
use crate::transport::Transport;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Most connections served at once (each has two threads); beyond it new ones get
    /// `503`. Default 1 000.
    pub max_connections: usize,
    /// How long [`Running::shutdown`] waits for connections to finish their close
    /// handshake; default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1_000,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) struct ServerShared {
    pub(crate) app: App,
    pub(crate) hub: Hub<ConnectionHandle>,
    active: AtomicUsize,
    /// Set when shutdown starts: no new connections, and late ones close at once.
    pub(crate) stopping: AtomicBool,
    options: ServerOptions,
}

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
#[derive(Clone)]
pub struct Server {
    shared: Arc<ServerShared>,
}

impl Server {
    /// A server for `app` with default options.
    pub fn new(app: App) -> Self {
        Self::with_options(app, ServerOptions::default())
    }

    /// A server for `app` with `options`.
    pub fn with_options(app: App, options: ServerOptions) -> Self {
        Server {
            shared: Arc::new(ServerShared {
                app,
                hub: Hub::new(),
                active: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                options,
            }),
        }
    }

    /// Serves one connection over `stream` on the calling thread (plus one reader thread)
    /// until it ends.
    pub fn serve_stream<T: Transport>(&self, stream: T, peer: Option<SocketAddr>) -> io::Result<()> {
        if !self.try_reserve() {
            return refuse_busy(stream);
        }
        self.serve_reserved(stream, peer)
    }

    /// Serves a connection whose slot is already counted.
    fn serve_reserved<T: Transport>(&self, stream: T, peer: Option<SocketAddr>) -> io::Result<()> {
        struct Release<'a>(&'a AtomicUsize);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _release = Release(&self.shared.active);
        drive(&self.shared, stream, peer)
    }

    /// A handle to the open connection `id`, to send to it from anywhere.
    pub fn connection(&self, id: ConnectionId) -> Option<ConnectionHandle> {
        self.shared.hub.mailbox(id)
    }

    /// How many connections are being served.
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// The app being served.
    pub fn app(&self) -> &App {
        &self.shared.app
    }

    /// Binds `addr`, runs the startup hooks, and accepts on a thread of its own; each
    /// connection gets a thread.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        self.shared.app.startup();
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
            if self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if !self.try_reserve() {
                // Over the limit: answer 503 here, without a thread for it.
                let _ = refuse_busy(stream);
                continue;
            }
            let peer = stream.peer_addr().ok();
            let server = self.clone();
            let spawned = std::thread::Builder::new().name("eventum-conn".into()).spawn(move || {
                if let Err(e) = server.serve_reserved(stream, peer) {
                    log::debug!("connection from {peer:?} ended with {e}");
                }
            });
            if let Err(e) = spawned {
                // The stream went with the closure; give its reserved slot back.
                self.shared.active.fetch_sub(1, Ordering::AcqRel);
                log::warn!("cannot start a connection thread: {e}");
            }
        }
    }

    fn try_reserve(&self) -> bool {
        let max = self.shared.options.max_connections;
        !self.shared.stopping.load(Ordering::Acquire)
            && self
                .shared
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
                .is_ok()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// Answers `503` to a connection over the limit, without reading its request.
fn refuse_busy<T: Transport>(mut stream: T) -> io::Result<()> {
    let response = HttpResponse::text(503, "Server busy: too many connections")
        .to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&response)?;
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

/// A server listening on a TCP address.
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

    /// The server, for handles and counts.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Blocks the calling thread while the server runs.
    pub fn wait(self) {
        let _ = self.acceptor.join();
    }

    /// Graceful shutdown: stops accepting, closes every connection with 1001, waits up
    /// to the shutdown timeout for them to finish, then runs the shutdown hooks.
    pub fn shutdown(self) {
        let shared = &self.server.shared;
        shared.stopping.store(true, Ordering::Release);
        // Wake the blocking accept so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        let _ = self.acceptor.join();
        let deadline = Instant::now() + shared.options.shutdown_timeout;
        while shared.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            // Repeated each pass (closing twice is harmless) so that a connection that
            // registered late is told too; urgent commands get through a full queue.
            shared.hub.command_all(&Command::Shutdown);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whoever did not finish the close handshake in time is dropped, hooks included.
        let grace = Instant::now() + Duration::from_millis(500);
        while shared.active.load(Ordering::Acquire) > 0 && Instant::now() < grace {
            shared.hub.command_all(&Command::Abort);
            std::thread::sleep(Duration::from_millis(10));
        }
        shared.app.shutdown();
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
