//! Serving an app over `std::net`: the accept loop, a thread per connection, lifespan
//! hooks and graceful shutdown.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use eventum_core::app::App;
use eventum_core::backplane::Backplane;
use eventum_core::driver::{Busy, Endpoint, Session};
use eventum_tls::rustls::ServerConfig;
use rustix::process::{getrlimit, setrlimit, Resource};

use crate::driver::drive;
use crate::tls::TlsStream;
use crate::transport::Transport;

/// The stack of each connection's thread unless set otherwise: room for handlers and
/// deeply nested JSON; only the pages a thread touches are resident.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// File descriptors each connection holds: its socket and its mail signal (an eventfd).
const FDS_PER_CONNECTION: u64 = 2;
/// How long a connection thread with nothing to serve waits for the next connection.
const SPARE_WAIT: Duration = Duration::from_secs(10);

/// An app ready to serve connections with blocking threads, one per connection: over TCP
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
    stack_size: usize,
    spare: Arc<Spare>,
    tls: Option<Arc<ServerConfig>>,
}

impl Server {
    /// A server for `app` with the default [`ServerOptions`](crate::ServerOptions); for
    /// other options, build it from an endpoint:
    /// `Server::from(Endpoint::with_options(app, options))`.
    pub fn new(app: App) -> Self {
        Self::from(Endpoint::new(app))
    }

    /// Sets the stack size of connection threads (default [`DEFAULT_STACK_SIZE`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Serves `wss://`: [`listen`](Self::listen) runs every connection through TLS with
    /// `config` (see [`eventum_tls::server_config`] for one from PEM files), on the
    /// connection's thread. The TLS handshake counts against the app's handshake
    /// timeout; a client that does not finish it in time is dropped.
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

    /// Serves one connection over `stream` on the calling thread until it ends. Over the
    /// connection limit the stream gets `503` and is closed.
    pub fn serve_stream<T: Transport>(&self, stream: T, peer: Option<SocketAddr>) -> io::Result<()> {
        match self.endpoint.admit(Instant::now(), peer) {
            Ok(session) => drive(session, stream),
            Err(busy) => refuse(stream, &busy),
        }
    }

    /// Binds `addr`, runs the startup hooks, and accepts on a thread of its own; each
    /// connection gets a thread. The process's file limit is raised to its hard limit, and
    /// a warning says so when it still holds fewer connections than the endpoint allows.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
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
        let room = files.saturating_sub(64) / FDS_PER_CONNECTION;
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
            // Admitted here, so a refused connection costs no thread.
            match self.endpoint.admit(Instant::now(), peer) {
                Ok(session) => self.spawn_connection(Job {
                    session,
                    stream,
                    peer,
                    tls: self.tls.clone(),
                }),
                // Over TLS the 503 would need a handshake on this thread: just close.
                Err(busy) if self.tls.is_none() => {
                    let _ = refuse(stream, &busy);
                }
                Err(_) => {}
            }
        }
    }

    /// Hands the connection to a thread that finished its last one and waits for more, or
    /// starts a thread: starting one costs about as much as the rest of a handshake.
    fn spawn_connection(&self, job: Job) {
        if self.spare.claim() {
            // A waiting thread is ours: it takes the job off the channel.
            let _ = self.spare.jobs.send(Some(job));
            return;
        }
        let spare = Arc::clone(&self.spare);
        let builder = std::thread::Builder::new().name("eventum-conn".into());
        // A failed spawn drops the closure, and with it the session: its slot is freed.
        if let Err(e) = builder.stack_size(self.stack_size).spawn(move || spare.work(job)) {
            log::warn!("cannot start a connection thread: {e}");
        }
    }
}

/// A connection for a thread.
struct Job {
    session: Session,
    stream: TcpStream,
    peer: Option<SocketAddr>,
    /// Set for `wss://`: the TLS handshake comes first.
    tls: Option<Arc<ServerConfig>>,
}

impl Job {
    /// Serves the connection on the calling thread until it ends.
    fn serve(self) -> io::Result<()> {
        let Job {
            session, stream, tls, ..
        } = self;
        match tls {
            Some(config) => {
                // The session's first deadline is its handshake's: TLS counts against it.
                let stream = TlsStream::accept(&config, stream, session.poll_timeout())?;
                drive(session, stream)
            }
            None => drive(session, stream),
        }
    }
}

/// Connection threads that finished their connection and wait a while for the next.
#[derive(Debug)]
struct Spare {
    /// Threads waiting for a job and not yet promised one.
    waiting: AtomicUsize,
    /// `None` tells a waiting thread to end (the server stopped).
    jobs: Sender<Option<Job>>,
    next: Mutex<Receiver<Option<Job>>>,
}

impl Spare {
    /// Ends every waiting thread.
    fn release(&self) {
        while self.claim() {
            let _ = self.jobs.send(None);
        }
    }

    /// Promises the next job to a waiting thread, if one is waiting.
    fn claim(&self) -> bool {
        let one_less = |n: usize| n.checked_sub(1);
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, one_less)
            .is_ok()
    }

    /// Serves `job`, then the jobs handed to this thread, until none comes for a while.
    fn work(&self, mut job: Job) {
        loop {
            let peer = job.peer;
            if let Err(e) = job.serve() {
                log::debug!("connection from {peer:?} ended with {e}");
            }
            self.waiting.fetch_add(1, Ordering::AcqRel);
            let next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let promised = match next.recv_timeout(SPARE_WAIT) {
                Ok(promised) => promised,
                // Leave, unless a job was promised meanwhile: then it is on its way, and
                // this thread, holding the channel, takes it.
                Err(_) if self.claim() => return,
                Err(_) => next.recv().ok().flatten(),
            };
            match promised {
                Some(promised) => job = promised,
                None => return,
            }
        }
    }
}

impl From<Endpoint> for Server {
    /// A server for the endpoint's app and options.
    fn from(endpoint: Endpoint) -> Self {
        let (jobs, next) = channel();
        let spare = Arc::new(Spare {
            waiting: AtomicUsize::new(0),
            jobs,
            next: Mutex::new(next),
        });
        let stack_size = DEFAULT_STACK_SIZE;
        Server {
            endpoint,
            stack_size,
            spare,
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
        self.server.spare.release();
        endpoint.app().shutdown();
    }
}
