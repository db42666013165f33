//! Support for the fuzz targets. [`sip`] is sipbox's SIP layer (host/src/sip), compiled here
//! from the same source files so the fuzz build needs neither wasmtime nor tokio (seconds
//! instead of many minutes) and fuzzes exactly the code the proxy runs; the module only
//! needs `bytes`, `memchr`, `thiserror` and `rand`, as in the host crate. [`props`] holds the edit
//! property shared with the stable unit test; [`stream`] the TCP read loop.

#[path = "../../src/sip/mod.rs"]
pub mod sip;

pub mod props;
pub mod stream;
