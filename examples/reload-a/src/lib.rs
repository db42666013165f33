//! One of two route modules that do the same thing and say which of them did
//! it, for testing hot reload (`reload-b` is the other; both build
//! `src/route.rs` of this crate):
//! - a new request is relayed to `config next_hop` (`host:port`) with
//!   `X-Route-Version: reload-a`, Record-Routed; in-dialog requests are
//!   loose-routed;
//! - an event route raises `E_ROUTE_VERSION {version, route}`, after waiting
//!   for `E_RELOAD_RESUME` (at most 10 s) when the event has a `wait` param.

include!("route.rs");
