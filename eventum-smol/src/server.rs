//! Serving an app: the shared state of a server, the accept loop, the executor threads and
//! graceful shutdown.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventum_core::app::{App, Command, ConnectionId, Hub};
use eventum_core::handshake::HttpResponse;
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::net::TcpListener;
use smol::Executor;

use crate::driver::drive;
use crate::handle::ConnectionHandle;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Executor threads; default: the number of cores.
    pub threads: usize,
    /// Most connections served at once; beyond it new ones get `503`. Default 10 000.
    pub max_connections: usize,
    /// How long [`Running::shutdown`] waits for connections to finish their close
    /// handshake before dropping them; default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) app: App,
    pub(crate) hub: Hub<ConnectionHandle>,
    pub(crate) active: AtomicUsize,
    /// Set when shutdown starts: no new connections, and late ones close at once.
    pub(crate) stopping: AtomicBool,
    options: ServerOptions,
}

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
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// A server for `app` with default options.
    pub fn new(app: App) -> Self {
        Self::with_options(app, ServerOptions::default())
    }

    /// A server for `app` with `options`.
    pub fn with_options(app: App, options: ServerOptions) -> Self {
        Server {
            shared: Arc::new(Shared {
                app,
                hub: Hub::new(),
                active: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                options,
            }),
        }
    }

    /// Serves one connection over any byte stream (TLS, a Unix socket, an in-memory
    /// pipe) until it ends, on whatever executor runs the returned future.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection (its disconnect hook does not run); no
    /// other connection is affected.
    pub async fn serve_stream<S>(&self, stream: S, peer: Option<SocketAddr>) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.try_reserve() {
            return refuse_busy(stream).await;
        }
        drive(Arc::clone(&self.shared), stream, peer).await
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

    /// Binds `addr`, runs the startup hooks and serves on a pool of executor threads.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Running> {
        let listener = StdListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let listener = TcpListener::try_from(listener)?;
        self.shared.app.startup();

        let executor = Arc::new(Executor::new());
        let (stop_accepting, accept_stopped) = async_channel::bounded::<()>(1);
        let (stop_threads, threads_stopped) = async_channel::bounded::<()>(1);
        let accept = {
            let server = self.clone();
            let executor = Arc::clone(&executor);
            async move { server.accept_loop(listener, executor, accept_stopped).await }
        };
        let accept_task = executor.spawn(accept);
        let threads = (0..self.shared.options.threads.max(1))
            .map(|i| {
                let executor = Arc::clone(&executor);
                let stop = threads_stopped.clone();
                std::thread::Builder::new()
                    .name(format!("eventum-smol-{i}"))
                    .spawn(move || smol::block_on(executor.run(async { stop.recv().await.ok() })))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Running {
            server: self,
            local_addr,
            stop_accepting,
            stop_threads,
            threads,
            accept_task: Some(accept_task),
        })
    }

    async fn accept_loop(
        &self,
        listener: TcpListener,
        executor: Arc<Executor<'static>>,
        stop: async_channel::Receiver<()>,
    ) {
        loop {
            let accepted = async { Some(listener.accept().await) }.or(async {
                let _ = stop.recv().await;
                None
            });
            let (stream, peer) = match accepted.await {
                None => return,
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    smol::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if !self.try_reserve() {
                executor.spawn(async move { refuse_busy(stream).await }).detach();
                continue;
            }
            let shared = Arc::clone(&self.shared);
            executor
                .spawn(async move {
                    if let Err(e) = drive(shared, stream, Some(peer)).await {
                        log::debug!("connection from {peer} ended with {e}");
                    }
                })
                .detach();
        }
    }

    /// Counts a new connection if there is room for it.
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
async fn refuse_busy<S: AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let response = HttpResponse::text(503, "Server busy: too many connections")
        .to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&response).await?;
    stream.close().await
}

/// A server listening on a TCP address. Dropping it without [`shutdown`](Self::shutdown)
/// shuts it down all the same.
pub struct Running {
    server: Server,
    local_addr: SocketAddr,
    stop_accepting: async_channel::Sender<()>,
    stop_threads: async_channel::Sender<()>,
    threads: Vec<JoinHandle<Option<()>>>,
    accept_task: Option<smol::Task<()>>,
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

    /// Blocks the calling thread while the server runs (until the process ends).
    pub fn wait(mut self) {
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }

    /// Graceful shutdown: stops accepting, closes every connection with 1001, waits up
    /// to the shutdown timeout for them to finish, drops the ones left (their disconnect
    /// hooks still run), stops the threads, then runs the shutdown hooks.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept_task) = self.accept_task.take() else {
            return;
        };
        let shared = &self.server.shared;
        shared.stopping.store(true, Ordering::Release);
        let _ = self.stop_accepting.try_send(());
        // Wait for the accept loop to end, so the listener is closed when we return.
        smol::block_on(accept_task);
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
        self.stop_threads.close();
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
        shared.app.shutdown();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
