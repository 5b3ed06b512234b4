//! eventum's smol adapter: serves an [`App`](eventum_core::app::App) over smol /
//! async-io, one task per connection on a multi-threaded executor.
//!
//! * [`Server::listen`] binds a TCP address and serves on a pool of threads, with a
//!   connection limit (`503` beyond it), peer addresses, lifespan hooks, and graceful
//!   [`Running::shutdown`] (close 1001, bounded wait, shutdown hooks).
//! * [`Server::serve_stream`] serves any `AsyncRead + AsyncWrite` stream (TLS, Unix
//!   socket, in-memory pipe) with the same driver.
//! * [`ConnectionHandle`] sends to or closes a connection from any task or thread; rooms,
//!   broadcasts and sends by id go through the core's sharded [`Hub`](eventum_core::app::Hub).
//!
//! The driver is the core's loop: read (while the core wants input) → `handle_input`,
//! write the output, wait for the next deadline, deliver the actions. A client that does
//! not read only fills its own output queue, which the core bounds.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod handle;
mod server;

pub use eventum_core as core;
pub use eventum_core::app::HandleError;
pub use handle::{ConnectionHandle, Inbox};
pub use server::{Running, Server, ServerOptions};
