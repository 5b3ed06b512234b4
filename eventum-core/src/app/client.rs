//! `eventum.js`, the JavaScript client, and its TypeScript declarations, shipped with the
//! crate so an app can serve them ([`AppBuilder::serve_client`](super::AppBuilder::serve_client))
//! and a page needs no build step:
//!
//! ```html
//! <script type="module">
//!   import { connect } from "/eventum.js";
//!   const client = connect("/ws", { onReconnect: (c) => c.emit("join", { room: "lobby" }) });
//!   client.on("message", (data) => console.log(data));
//!   const sum = await client.request("add", { a: 1, b: 2 }, { timeout: 2000 });
//! </script>
//! ```
//!
//! It is a dependency-free ES module for browsers and Node 20+ (the global `WebSocket`, or
//! one given as `options.WebSocket`) and speaks exactly the [`envelope`](super::envelope):
//! `emit`, `on`/`off`, `request` (a Promise settled by the reply, rejected with a
//! `TimeoutError`, a `ValidationError` or a `ConnectionClosedError`), answers to the
//! server's [`request_ack`](super::Context::request_ack) (a handler's return value),
//! reconnection with exponential backoff and jitter (bounded, configurable, `reconnect:
//! false` to turn it off; by default not after the server's deliberate refusals, close
//! codes 1002, 1003, 1007-1010 and 4000-4999, see `shouldReconnect`) and an `onReconnect`
//! hook to re-join rooms, a queue for events emitted while disconnected, bounded in count
//! (`queueLimit`, default 100) and bytes (`queueBytes`, default 1 MiB; what does not fit
//! is refused and reported as a `QueueFullError`), an attempt to connect given up after
//! `connectTimeout` (default 10 s; an error before the upgrade ends it at once, for Node
//! 20's `WebSocket` reports no close when the server drops a connection unanswered), and
//! the close code and reason of every close.

/// The client, an ES module (`eventum-core/js/eventum.js`).
pub const ESM: &str = include_str!("../../js/eventum.js");

/// Its TypeScript declarations (`eventum-core/js/eventum.d.ts`).
pub const TYPES: &str = include_str!("../../js/eventum.d.ts");
