//! eventum-core (crate docs are written at the end of the core issue).
#![forbid(unsafe_code)]
#![deny(unused_must_use)]
#![warn(missing_docs, unreachable_pub)]

mod close;
mod config;
mod connection;
mod error;
mod event;
pub mod frame;
pub mod handshake;
mod outbound;
mod utf8;

pub use close::{CloseCode, MAX_CLOSE_REASON};
pub use config::{Config, ConfigBuilder, Keepalive, SlowConsumerPolicy};
pub use connection::{Connection, Sender};
pub use error::{ApiMisuse, CloseError, ConfigError, HandshakeError, ProtocolError, SendError};
pub use event::{CloseCause, Closed, Event, State};
pub use outbound::SharedFrame;
