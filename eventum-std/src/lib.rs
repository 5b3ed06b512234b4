//! eventum's blocking adapter. It will drive [`eventum_core::Connection`] over any
//! `Read + Write` stream with std threads (tracked by the std adapter issue); until then it
//! only re-exports the core so the workspace layout is in place.
#![forbid(unsafe_code)]

pub use eventum_core as core;
