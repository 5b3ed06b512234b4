//! eventum's blocking adapter: serves an [`App`](eventum_core::app::App) with std threads,
//! no async runtime.
//!
//! * [`Server::listen`] binds a TCP address and accepts on a thread of its own. A pool of
//!   worker threads ([`Server::threads`], default [`DEFAULT_THREADS`]) shares one
//!   edge-triggered epoll instance and serves every connection, one pass at a time:
//!   read, run the handlers, write. Handlers run on the workers, so a handler may block (a
//!   database call, a file read): it holds one worker while the others serve everyone
//!   else, and while every worker is blocked for more than 10 ms the pool adds one (up to
//!   [`Server::max_threads`]). An idle connection costs its session and socket, no thread.
//!   [`Running::shutdown`] closes every connection with 1001 and waits a bounded time.
//! * [`Server::serve_stream`] serves any [`Transport`] (TCP, Unix sockets, your own) with
//!   the same pool, returning when the connection ends.
//! * [`Server::tls`] serves `wss://` (rustls on the workers; `eventum_tls::server_config`
//!   reads PEM files), and [`Server::backplane`] makes the server one node of several
//!   (e.g. over Redis with `eventum-redis`).
//!
//! Everything but the runtime comes from eventum-core's [driver kit](eventum_core::driver):
//! the connection limit and its `503`, rooms and broadcasts, the portable
//! [`ConnectionHandle`] handlers get from `ctx.handle()`, the mailbox and its
//! slow-consumer policy, and the shutdown plan. A broadcast queues a shared frame in each
//! member's mailbox and puts the member on the pool's ready queue, waking at most one
//! sleeping worker per burst; a member that stops reading fills only its own bounded
//! queues. Deadlines (handshake, keepalive, close) are kept by one timer thread.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod pool;
mod server;
mod tls;
mod transport;

pub use eventum_core as core;
pub use eventum_core::app::{ConnectionHandle, HandleError};
pub use eventum_core::driver::ServerOptions;
pub use server::{Running, Server, DEFAULT_MAX_THREADS, DEFAULT_STACK_SIZE, DEFAULT_THREADS};
pub use transport::Transport;
