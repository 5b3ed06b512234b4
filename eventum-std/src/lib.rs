//! eventum's blocking adapter: serves an [`App`](eventum_core::app::App) with std threads,
//! no async runtime.
//!
//! * [`Server::listen`] binds a TCP address; each connection gets a writer thread (which
//!   owns the output, the timers and the command queue) and a reader thread. A
//!   connection limit answers `503` beyond it; lifespan hooks run at start and stop;
//!   [`Running::shutdown`] closes every connection with 1001 and waits a bounded time.
//! * [`Server::serve_stream`] serves any [`Transport`] (TCP, Unix sockets, your own).
//! * [`ConnectionHandle`] sends to or closes a connection from any thread without taking
//!   its lock; rooms, broadcasts and sends by id go through the core's sharded
//!   [`Hub`](eventum_core::app::Hub).
//!
//! A client that stops reading blocks only its own writer thread: its commands queue up
//! to a bound, then the slow-consumer policy applies; other connections never wait on it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod driver;
mod server;
mod transport;

pub use conn::{ConnectionHandle, Queue};
pub use eventum_core as core;
pub use eventum_core::app::HandleError;
pub use server::{Running, Server, ServerOptions};
pub use transport::Transport;
