//! The sans-io driver kit: everything an adapter needs except its runtime.
//!
//! * [`Endpoint`]: one server's app, hub (rooms, sends by id), connection slots (and the
//!   `503` [`Busy`] answer past [`ServerOptions::max_connections`]), and the graceful
//!   [`Shutdown`] plan, polled with the time.
//! * [`Session`]: one admitted connection. Its inputs run the app's handlers and hand
//!   what they ask of other connections to the hub; its bounded mailbox receives
//!   broadcasts, sends by id and the server's commands, under the slow-consumer policy;
//!   dropping it always unregisters it completely.
//!
//! An adapter is then: accept → [`Endpoint::admit`] → for each connection run the driver
//! loop with its runtime's read, write, sleep and wake-up. Nothing in here reads a
//! clock, starts a thread or opens a socket ([`Session::write_to`] writes to whatever
//! `io::Write` its caller hands in).
//!
//! # The driver loop
//!
//! 1. read what the transport has (while [`Session::wants_read`]) and pass it to
//!    [`Session::handle_input`], which takes all of it (so one read buffer per thread can
//!    serve every connection, and an idle one keeps none); at end of stream call
//!    [`Session::handle_eof`], on a transport error [`Session::handle_transport_error`];
//! 2. write [`Session::poll_transmit`] and report it with [`Session::transmitted`] (over a
//!    non-blocking `io::Write`, [`Session::write_to`] does both and flushes);
//! 3. close the transport once [`Session::should_close_transport`]; otherwise sleep until
//!    the transport is ready, [`Session::poll_timeout`] passes (then call
//!    [`Session::handle_timeout`]) or the waker given to [`Session::set_waker`] fires
//!    (then call [`Session::handle_mail`]).
//!
//! Here that loop serves a chat room over in-memory byte pipes: two connections, one
//! broadcast, no runtime at all.
//!
//! ```
//! use eventum_core::app::{App, Route};
//! use eventum_core::driver::Endpoint;
//! use eventum_core::{frame, SharedFrame};
//! use std::time::Instant;
//!
//! let app = App::builder()
//!     .route(Route::new("/chat"))
//!     .on_text(|ctx, text| {
//!         ctx.join("lobby");
//!         ctx.broadcast_others("lobby", SharedFrame::text(text));
//!     })
//!     .build();
//! let endpoint = Endpoint::new(app);
//! let request = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
//! let mut hello = Vec::new();
//! frame::encode_client_frame(&mut hello, true, frame::OpCode::Text, b"hi", [1, 2, 3, 4]);
//!
//! let now = Instant::now();
//! let (mut ada, mut bob) = (endpoint.admit(now, None).unwrap(), endpoint.admit(now, None).unwrap());
//! for session in [&mut ada, &mut bob] {
//!     session.handle_input(now, request);           // 1. read
//!     session.handle_input(now, &hello);            //    (each joins the lobby)
//!     let n = session.poll_transmit().len();        // 2. write (here: discard the 101)
//!     session.transmitted(n);
//! }
//! // ada's "hi" was broadcast before bob joined; bob's reaches ada's mailbox:
//! assert!(ada.has_mail());
//! ada.handle_mail(now);                             // 3. woken: take the mail
//! assert_eq!(ada.poll_transmit().first(), b"\x81\x02hi");
//! ```
//!
//! `eventum-std/examples/custom_loop.rs` runs the same loop over real sockets in a
//! hand-written mio (epoll) loop, rooms and broadcasts included, in under 150 lines.

pub(crate) mod endpoint;
mod session;
mod shutdown;

pub use endpoint::{Busy, Endpoint, ServerOptions};
pub use session::Session;
pub use shutdown::Shutdown;
