//! Test support for sessiond backends.
pub mod conformance;
pub mod server;
