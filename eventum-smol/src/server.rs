//! Serving an app: on the event loops or an executor, and graceful shutdown.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use eventum_core::app::App;
use eventum_core::backplane::Backplane;
use eventum_core::driver::{Busy, Endpoint, Session};
use eventum_tls::rustls::ServerConfig;
use futures_rustls::TlsAcceptor;
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};

use crate::driver::drive;
use crate::event_loop::Loops;

/// An app ready to serve connections: over TCP with [`Server::listen`], or over any byte
/// stream with [`Server::serve_stream`]. Cloning is cheap; clones share connections and rooms.
///
/// ```no_run
/// use eventum_core::app::{App, Route};
/// use eventum_smol::Server;
///
/// let app = App::builder().route(Route::new("/echo")).on_text(|ctx, text| {
///     let _ = ctx.send_text(text);
/// }).build();
/// let running = Server::new(app).listen("127.0.0.1:9001").unwrap();
/// println!("listening on {}", running.local_addr());
/// running.wait();
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    endpoint: Endpoint,
    threads: usize,
    tls: Option<Arc<ServerConfig>>,
}

impl Server {
    /// A server for `app` with the default [`ServerOptions`](crate::ServerOptions); for
    /// other options, build it from an endpoint:
    /// `Server::from(Endpoint::with_options(app, options))`.
    pub fn new(app: App) -> Self {
        Self::from(Endpoint::new(app))
    }

    /// Sets how many threads [`listen`](Self::listen) starts (at least one): event loops,
    /// or executor threads for `wss://`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Serves `wss://`: [`listen`](Self::listen) runs every connection through TLS with
    /// `config` (see [`eventum_tls::server_config`] for one from PEM files). The TLS
    /// handshake counts against the app's handshake timeout; a client that does not
    /// finish it in time is dropped.
    ///
    /// ```no_run
    /// # let app = eventum_core::app::App::builder().build();
    /// let config = eventum_tls::server_config("cert.pem", "key.pem")?;
    /// eventum_smol::Server::new(app).tls(config).listen("0.0.0.0:443")?.wait();
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

    /// Serves one connection over any byte stream (TLS, a Unix socket, an in-memory
    /// pipe) until it ends, on whatever executor runs the returned future. Over the
    /// connection limit the stream gets `503` and is closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future ends the connection: its disconnect hook runs once, it leaves
    /// every room, and its slot is freed. No other connection is affected.
    pub async fn serve_stream<S>(&self, stream: S, peer: Option<SocketAddr>) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let admitted = self.endpoint.admit(Instant::now(), peer).map(Box::new);
        self.serve_admitted(admitted, stream).await
    }

    /// Serves an admitted session (boxed: an async fn's future keeps room for its
    /// arguments, so a session by value would be held in every connection's task beside
    /// the box `drive` needs) or answers `503`.
    async fn serve_admitted<S>(&self, admitted: Result<Box<Session>, Busy>, mut stream: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match admitted {
            Ok(session) => drive(session, stream, self.endpoint.app().config().close_timeout()).await,
            Err(busy) => {
                stream.write_all(busy.response()).await?;
                stream.close().await
            }
        }
    }

    /// Serves one TCP connection over TLS: admitted first (so the TLS handshake runs
    /// under the connection's handshake timeout), then the WebSocket handshake.
    async fn serve_tls(&self, config: &Arc<ServerConfig>, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        let admitted = self.endpoint.admit(Instant::now(), Some(peer)).map(Box::new);
        let deadline = match &admitted {
            Ok(session) => session.poll_timeout(),
            Err(_) => self
                .endpoint
                .app()
                .config()
                .handshake_timeout()
                .map(|t| Instant::now() + t),
        };
        let handshake = TlsAcceptor::from(Arc::clone(config)).accept(stream);
        let tls = match deadline {
            Some(deadline) => {
                let timeout = async {
                    Timer::at(deadline).await;
                    Err(io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out"))
                };
                handshake.or(timeout).await?
            }
            None => handshake.await?,
        };
        self.serve_admitted(admitted, tls).await
    }

    /// Binds `addr`, runs the startup hooks and serves: plain TCP on one event loop per
    /// thread (see [`threads`](Self::threads)), `wss://` on a pool of smol executor threads.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        let listener = StdListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        self.endpoint.app().startup();
        let serving = match &self.tls {
            None => Serving::Loops(Loops::start(&self.endpoint, listener, self.threads)?),
            Some(config) => self.start_executor(TcpListener::try_from(listener)?, Arc::clone(config))?,
        };
        Ok(Running {
            server: self,
            local_addr,
            serving,
        })
    }

    /// Serves `wss://`: an accept task and one smol task per connection on a pool of
    /// executor threads.
    fn start_executor(&self, listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Serving> {
        let executor = Arc::new(Executor::new());
        let (stop_threads, threads_stopped) = async_channel::bounded::<()>(1);
        let accept_task = executor.spawn(self.clone().accept_tls(listener, config, Arc::clone(&executor)));
        let threads = (0..self.threads)
            .map(|i| {
                let (executor, stop) = (Arc::clone(&executor), threads_stopped.clone());
                std::thread::Builder::new()
                    .name(format!("eventum-smol-{i}"))
                    .spawn(move || smol::block_on(executor.run(async { stop.recv().await.ok() })))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Serving::Executor {
            stop_threads,
            threads,
            accept_task,
        })
    }

    async fn accept_tls(self, listener: TcpListener, config: Arc<ServerConfig>, executor: Arc<Executor<'static>>) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (server, config) = (self.clone(), Arc::clone(&config));
            executor
                .spawn(async move {
                    if let Err(e) = server.serve_tls(&config, stream, peer).await {
                        log::debug!("connection from {peer} ended with {e}");
                    }
                })
                .detach();
        }
    }
}

impl From<Endpoint> for Server {
    /// A server for the endpoint's app and options, on one thread per core it may run on.
    fn from(endpoint: Endpoint) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Server {
            endpoint,
            threads,
            tls: None,
        }
    }
}

/// A server listening on a TCP address. Dropping it without [`shutdown`](Self::shutdown)
/// shuts it down all the same.
#[derive(Debug)]
pub struct Running {
    server: Server,
    local_addr: SocketAddr,
    serving: Serving,
}

/// What serves a listening server's connections.
#[derive(Debug)]
enum Serving {
    /// Plain TCP: the event loops.
    Loops(Loops),
    /// `wss://`: the executor threads and the accept task.
    Executor {
        stop_threads: async_channel::Sender<()>,
        threads: Vec<JoinHandle<Option<()>>>,
        accept_task: smol::Task<()>,
    },
    Stopped,
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

    /// Blocks the calling thread while the server runs (until the process ends).
    pub fn wait(mut self) {
        match &mut self.serving {
            Serving::Loops(loops) => loops.wait(),
            Serving::Executor { threads, .. } => {
                for thread in std::mem::take(threads) {
                    let _ = thread.join();
                }
            }
            Serving::Stopped => {}
        }
    }

    /// Graceful shutdown: answers every new request `503` (health checks too), serves
    /// open connections through the drain period, closes every connection with 1001,
    /// waits up to the shutdown timeout for them to finish, drops the ones left (their
    /// disconnect hooks still run), stops accepting and the threads, then runs the
    /// shutdown hooks.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if matches!(self.serving, Serving::Stopped) {
            return;
        }
        // The listener stays open while the plan runs: new requests get their 503. This
        // thread waits for it without a runtime: the event loops use none.
        let mut plan = self.server.endpoint.shutdown(Instant::now());
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        while let Some(until) = plan.poll(Instant::now(), &waker) {
            std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
        }
        match std::mem::replace(&mut self.serving, Serving::Stopped) {
            Serving::Loops(mut loops) => loops.stop(),
            Serving::Executor {
                stop_threads,
                threads,
                accept_task,
            } => {
                smol::block_on(accept_task.cancel());
                stop_threads.close();
                for thread in threads {
                    let _ = thread.join();
                }
            }
            Serving::Stopped => {}
        }
        self.server.endpoint.app().shutdown();
    }
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
