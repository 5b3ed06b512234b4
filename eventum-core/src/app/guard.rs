//! Running user code: a panic in a handler, hook or middleware is caught, logged, and
//! turned into the answer the protocol allows (1011 after the upgrade, 500 before it). It
//! never reaches the driver, and never takes other connections down.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::close::CloseCode;
use crate::handshake::HttpResponse;

use super::Context;

/// The reason sent with 1011 when a handler panics.
pub(crate) const PANIC_REASON: &str = "internal error";

/// User code panicked (the panic was logged); the connection closes with 1011.
#[derive(Debug)]
pub(crate) struct Panicked;

impl Panicked {
    /// The close a panic leads to.
    pub(crate) fn close(self) -> (CloseCode, String) {
        (CloseCode::INTERNAL_ERROR, PANIC_REASON.to_owned())
    }
}

/// Runs user code with the connection's context; a panic is logged and reported.
pub(crate) fn run_handler(ctx: &mut Context<'_>, what: &str, f: impl FnOnce(&mut Context<'_>)) -> Result<(), Panicked> {
    catch_unwind(AssertUnwindSafe(|| f(ctx))).map_err(|panic| {
        crate::observe::handler_panicked();
        log::error!("connection {}: {what} panicked: {}", ctx.id(), panic_message(&*panic));
        Panicked
    })
}

/// Runs user code before the upgrade; a panic is logged and becomes `Err(message)`.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        crate::observe::handler_panicked();
        let message = panic_message(&*panic);
        log::error!("{what} panicked: {message}");
        message
    })
}

/// The answer to a request whose handling panicked.
pub(crate) fn server_error(_panic: String) -> HttpResponse {
    HttpResponse::text(500, "Internal Server Error")
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
