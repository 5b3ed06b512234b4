//! eventum's blocking adapter: serves an [`App`](eventum_core::app::App) with std threads,
//! no async runtime.
//!
//! * [`Server::listen`] binds a TCP address; each connection gets one thread (stack size
//!   set by [`Server::stack_size`]) that owns its session and waits with one `poll(2)` for
//!   its socket, its mail and its next deadline. Handlers run on it, so a handler may
//!   block (a database call, a file read) and delay only its own connection.
//!   [`Running::shutdown`] closes every connection with 1001 and waits a bounded time.
//! * [`Server::serve_stream`] serves any [`Transport`] (TCP, Unix sockets, your own) on
//!   the calling thread.
//! * [`Server::tls`] serves `wss://` (rustls, on each connection's thread;
//!   `eventum_tls::server_config` reads PEM files), and [`Server::backplane`] makes the
//!   server one node of several (e.g. over Redis with `eventum-redis`).
//!
//! Everything but the runtime comes from eventum-core's [driver kit](eventum_core::driver):
//! the connection limit and its `503`, rooms and broadcasts, the portable
//! [`ConnectionHandle`] handlers get from `ctx.handle()`, the mailbox and its
//! slow-consumer policy, and the shutdown plan. A broadcast queues a shared frame in each
//! member's mailbox and wakes its thread once per burst (an eventfd write); a member that
//! stops reading fills only its own bounded queues.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod server;
mod tls;
mod transport;

pub use eventum_core as core;
pub use eventum_core::app::{ConnectionHandle, HandleError};
pub use eventum_core::driver::ServerOptions;
pub use server::{Running, Server, DEFAULT_STACK_SIZE};
pub use transport::Transport;
