//! The HTTP/1.1 opening handshake (RFC 6455 §4.2).
//!
//! The connection reads the request head with a `HeadReader`, parses it into a
//! [`Request`] and checks RFC 6455 §4.2.1 before the application decides. The application
//! then answers with [`Accept`] (the `101 Switching Protocols` that opens the WebSocket)
//! or an [`HttpResponse`] (a refusal, or the answer to a plain HTTP request, after which
//! the connection closes).

mod accept_key;
mod head;
mod permessage_deflate;
mod request;
mod response;

pub use accept_key::accept_key;
pub use permessage_deflate::{DeflateConfig, DeflateParams, Negotiated, PERMESSAGE_DEFLATE};
pub use request::{ExtensionOffer, Request};
pub use response::{Accept, HttpResponse};

pub(crate) use self::{
    head::HeadReader,
    request::{parse_request, validate_upgrade},
    response::{error_response, write_accept, write_response},
};
