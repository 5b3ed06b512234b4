//! eventum's smol adapter: serves an [`App`](eventum_core::app::App) on its own event
//! loops or on any smol / async-io executor.
//!
//! * [`Server::listen`] binds a TCP address and serves it on one epoll loop per thread
//!   (each owns its connections: no task, channel or lock per connection);
//!   [`Running::shutdown`] stops it gracefully (close 1001, a bounded wait, shutdown hooks).
//! * [`Server::serve_stream`] serves any `AsyncRead + AsyncWrite` stream (TLS, Unix
//!   socket, in-memory pipe) as a future on whatever executor runs it.
//! * [`Server::tls`] serves `wss://` (rustls; `eventum_tls::server_config` reads PEM
//!   files), and [`Server::backplane`] makes the server one node of several (e.g. over
//!   Redis with `eventum-redis`).
//!
//! Everything but the runtime comes from eventum-core's [driver kit](eventum_core::driver):
//! the connection limit and its `503`, rooms and broadcasts, the portable
//! [`ConnectionHandle`] handlers get from `ctx.handle()`, the mailbox and its slow-consumer
//! policy, and the shutdown plan. What is here is the driver loop twice: over epoll and
//! over smol's read, write, timer and wake-up.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod event_loop;
mod server;

pub use eventum_core as core;
pub use eventum_core::app::{ConnectionHandle, HandleError};
pub use eventum_core::driver::ServerOptions;
pub use server::{Running, Server};
