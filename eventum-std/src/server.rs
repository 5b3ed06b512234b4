//! Serving an app over `std::net`: the accept loop, the worker pool's settings, lifespan
//! hooks and graceful shutdown.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::task::{Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use eventum_core::app::App;
use eventum_core::backplane::Backplane;
use eventum_core::driver::{Busy, Endpoint, Session};
use eventum_tls::rustls::ServerConfig;
use rustix::process::{getrlimit, setrlimit, Resource};

use crate::pool::{Pool, Threads};
use crate::tls::TlsStream;
use crate::transport::Transport;

/// The stack of each worker thread unless set otherwise: room for handlers and deeply
/// nested JSON; only the pages a thread touches are resident.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// The worker threads a server keeps unless set otherwise: handlers may block, so a few
/// more than cores.
pub const DEFAULT_THREADS: usize = 4;
/// The most worker threads a server runs unless set otherwise, when handlers block.
pub const DEFAULT_MAX_THREADS: usize = 512;
/// How long shutdown waits for the workers to leave once every connection is closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// An app ready to serve connections with a pool of blocking worker threads: over TCP
/// with [`Server::listen`], or over any [`Transport`] with [`Server::serve_stream`].
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
    threads: Threads,
    /// Started by the first connection, with the settings of that moment.
    pool: Arc<OnceLock<Pool>>,
    tls: Option<Arc<ServerConfig>>,
}

impl Server {
    /// A server for `app` with the default [`ServerOptions`](crate::ServerOptions); for
    /// other options, build it from an endpoint:
    /// `Server::from(Endpoint::with_options(app, options))`.
    pub fn new(app: App) -> Self {
        Self::from(Endpoint::new(app))
    }

    /// Sets the stack size of worker threads (default [`DEFAULT_STACK_SIZE`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.threads.stack_size = bytes;
        self
    }

    /// Sets how many worker threads serve connections (default [`DEFAULT_THREADS`], at
    /// least 1). A handler that blocks holds one of them; while all are blocked for more
    /// than 10 ms the server adds one, up to [`max_threads`](Self::max_threads), and those
    /// extra threads leave after 10 s without work.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads.min = threads.max(1);
        self.threads.max = self.threads.max.max(self.threads.min);
        self
    }

    /// Sets the most worker threads the server runs when handlers block (default
    /// [`DEFAULT_MAX_THREADS`]).
    pub fn max_threads(mut self, threads: usize) -> Self {
        self.threads.max = threads.max(self.threads.min);
        self
    }

    /// Serves `wss://`: [`listen`](Self::listen) runs every connection through TLS with
    /// `config` (see [`eventum_tls::server_config`] for one from PEM files), on the
    /// worker threads. The TLS handshake counts against the app's handshake timeout; a
    /// client that does not finish it in time is dropped.
    ///
    /// ```no_run
    /// # let app = eventum_core::app::App::builder().build();
    /// let config = eventum_tls::server_config("cert.pem", "key.pem")?;
    /// eventum_std::Server::new(app).tls(config).listen("0.0.0.0:443")?.wait();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Makes this server one node of several: rooms, broadcasts and sends by id reach
    /// the connections of the other nodes through `backplane` (e.g. `eventum_redis::Redis`;
    /// see [`eventum_core::backplane`]). Call it before serving.
    pub fn backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        let (app, options) = (self.endpoint.app().clone(), self.endpoint.options().clone());
        self.endpoint = Endpoint::with_backplane(app, options, backplane);
        self
    }

    /// The kit's endpoint: connection handles by id, counts, room members, the app.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Serves one connection over `stream` with the worker pool, returning when it has
    /// ended. Over the connection limit the stream gets `503` and is closed.
    pub fn serve_stream<T: Transport>(&self, stream: T, peer: Option<SocketAddr>) -> io::Result<()> {
        match self.endpoint.admit(Instant::now(), peer) {
            Ok(session) => {
                let (done, ended) = mpsc::channel();
                self.pool()?.serve(session, Box::new(stream), Some(done))?;
                // The pool drops the sender when the connection ends.
                let _ = ended.recv();
                Ok(())
            }
            Err(busy) => refuse(stream, &busy),
        }
    }

    /// The worker pool, started on first use.
    fn pool(&self) -> io::Result<&Pool> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        let pool = Pool::new(self.threads)?;
        Ok(self.pool.get_or_init(|| pool))
    }

    /// Binds `addr`, runs the startup hooks, and accepts on a thread of its own; the
    /// worker pool serves the connections. The process's file limit is raised to its
    /// hard limit, and a warning says so when it still holds fewer connections than the
    /// endpoint allows.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        self.pool()?;
        self.check_file_limit();
        self.endpoint.app().startup();
        let server = self.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let listening = Arc::clone(&closed);
        let acceptor = std::thread::Builder::new()
            .name("eventum-accept".into())
            .spawn(move || server.accept_loop(&listener, &listening))?;
        Ok(Running {
            server: self,
            local_addr,
            acceptor,
            closed,
        })
    }

    fn check_file_limit(&self) {
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            let _ = setrlimit(Resource::Nofile, limit);
        }
        let files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        // One descriptor per connection (its socket), and a few for the server.
        let room = files.saturating_sub(64);
        let wanted = self.endpoint.options().max_connections as u64;
        if room < wanted {
            log::warn!(
                "the file limit ({files}) holds about {room} connections, fewer than max_connections ({wanted})"
            );
        }
    }

    /// Accepts until `closed` is set (after a shutdown's plan: until then, late requests
    /// are read and answered `503`).
    fn accept_loop(&self, listener: &TcpListener, closed: &AtomicBool) {
        for stream in listener.incoming() {
            if closed.load(Ordering::Acquire) {
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
            // Admitted here, so a refused connection costs the workers nothing.
            match self.endpoint.admit(Instant::now(), peer) {
                Ok(session) => {
                    if let Err(e) = self.serve_accepted(session, stream) {
                        log::warn!("cannot serve a connection from {peer:?}: {e}");
                    }
                }
                // Over TLS the 503 would need a handshake on this thread: just close.
                Err(busy) if self.tls.is_none() => {
                    let _ = refuse(stream, &busy);
                }
                Err(_) => {}
            }
        }
    }

    /// Hands an admitted connection to the pool (through TLS for `wss://`).
    fn serve_accepted(&self, session: Session, stream: TcpStream) -> io::Result<()> {
        let stream: Box<dyn Transport> = match &self.tls {
            // The handshake runs on the workers, under the session's handshake deadline.
            Some(config) => Box::new(TlsStream::new(config, stream)?),
            None => Box::new(stream),
        };
        self.pool()?.serve(session, stream, None)
    }
}

impl From<Endpoint> for Server {
    /// A server for the endpoint's app and options.
    fn from(endpoint: Endpoint) -> Self {
        Server {
            endpoint,
            threads: Threads {
                min: DEFAULT_THREADS,
                max: DEFAULT_MAX_THREADS,
                stack_size: DEFAULT_STACK_SIZE,
            },
            pool: Arc::default(),
            tls: None,
        }
    }
}

/// Answers `503` without reading the request.
fn refuse<T: Transport>(mut stream: T, busy: &Busy) -> io::Result<()> {
    stream.write_all(busy.response())?;
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A server listening on a TCP address.
#[derive(Debug)]
pub struct Running {
    server: Server,
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
    /// Tells the accept loop to close the listener.
    closed: Arc<AtomicBool>,
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

    /// Graceful shutdown: answers every new request `503` (health checks too), serves
    /// open connections through the drain period, closes every connection with 1001,
    /// waits up to the shutdown timeout for them to finish, drops the ones left (their
    /// disconnect hooks still run), stops accepting, then runs the shutdown hooks.
    pub fn shutdown(self) {
        let endpoint = &self.server.endpoint;
        let mut plan = endpoint.shutdown(Instant::now());
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        while let Some(until) = plan.poll(Instant::now(), &waker) {
            std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
        }
        // Wake the blocking accept so it sees the flag and closes the listener.
        self.closed.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        let _ = self.acceptor.join();
        if let Some(pool) = self.server.pool.get() {
            pool.stop(STOP_TIMEOUT);
        }
        endpoint.app().shutdown();
    }
}
