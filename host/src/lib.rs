//! sipbox: a SIP proxy and registrar whose routing logic runs as WebAssembly components.
//!
//! One folder per layer, bottom to top:
//! - [`sip`]: zero-copy SIP messages (parse, typed header views, edit-list serialisation);
//! - [`transport`]: UDP and TCP listeners and senders;
//! - [`transaction`]: RFC 3261 transactions and the stateful proxy core;
//! - [`location`]: the registrar and its persistent location store;
//! - [`auth`]: digest authentication and the subscriber store;
//! - [`runtime`]: wasmtime, route modules, and the host side of the `sipbox:route` WIT world;
//! - [`events`]: the event registry (OpenSIPS EVI) and [`sinks`], its transports;
//! - [`mi`]: the management interface, JSON-RPC over HTTP and UDP;
//! - [`pike`]: flood detection by source IP;
//! - [`config`]: `sipbox.toml` with embedded defaults; [`server`]: wires the layers together;
//! - [`project`]: route projects (`route.toml`, `sipbox new`, `sipbox build`);
//! - [`shutdown`]: the stop signal the long-lived loops wait on, and waiting for them to end.

/// A boxed handler future (router hooks, event and notification routes):
/// `Send + 'static`, so the caller may await it in place or spawn it. Shared
/// by the layers that call handlers, so none borrows it from another.
pub type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

pub mod auth;
pub mod config;
pub mod events;
pub mod harness;
pub mod location;
pub mod mi;
pub mod pike;
pub mod project;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod sip;
pub mod transaction;
pub mod transport;
