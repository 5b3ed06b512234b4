//! eventum's smol adapter. It will drive [`eventum_core::Connection`] over any
//! `AsyncRead + AsyncWrite` stream on a smol executor (tracked by the smol adapter issue);
//! until then it only re-exports the core so the workspace layout is in place.
#![forbid(unsafe_code)]

pub use eventum_core as core;
