//! eventum's blocking adapter: serves an [`App`](eventum_core::app::App) with std threads,
//! no async runtime.
//!
//! * [`Server::listen`] binds a TCP address; each connection gets a writer thread (which
//!   owns the output, the timers and the mailbox) and a reader thread (which feeds the
//!   input and runs the handlers it triggers). [`Running::shutdown`] closes every
//!   connection with 1001 and waits a bounded time.
//! * [`Server::serve_stream`] serves any [`Transport`] (TCP, Unix sockets, your own).
//!
//! Everything but the runtime comes from eventum-core's [driver kit](eventum_core::driver):
//! the connection limit and its `503`, rooms and broadcasts, the portable
//! [`ConnectionHandle`] handlers get from `ctx.handle()`, the mailbox and its
//! slow-consumer policy, and the shutdown plan.
//!
//! A client that stops reading blocks only its own writer thread, and never while the
//! session's lock is held: its reader keeps handling input (and its broadcasts reach
//! everyone else) until the output passes the high-water mark.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod server;
mod transport;

pub use eventum_core as core;
pub use eventum_core::app::{ConnectionHandle, HandleError};
pub use eventum_core::driver::ServerOptions;
pub use server::{Running, Server};
pub use transport::Transport;
