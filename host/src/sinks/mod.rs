//! Event transports (OpenSIPS `event_*` modules): one module per socket
//! prefix, each implementing the registry's [`Sink`](crate::events::Sink)
//! trait, and [`schemes`], which builds the table of prefixes (OpenSIPS
//! `get_trans_mod`) the [`EventBus`](crate::events::EventBus) is created with.
//! The registry never names a transport: sinks depend on events, not back.
//!
//! # Layout
//! - `datagram`: `udp:host:port`, `unix:/path` (event_datagram);
//! - `stream`: `tcp:host:port[/method]`, alias `stream:` (event_stream);
//! - `flatstore`: `flatstore:/path/file` (event_flatstore), and [`Flatstore`],
//!   the open files (`evi_flat_rotate` reopens them);
//! - `route`: `route:NAME`, event routes run by an [`EventRouteHandler`];
//! - `virt`: `virtual:POLICY sock1 sock2 ...` (event_virtual);
//! - `http`: `http://`, `https://` webhooks; `rabbitmq`: `rabbitmq:` AMQP;
//! - `xmlrpc`: `xmlrpc:host:port[/path]:method` (event_xmlrpc);
//! - `addr`: `host:port` parsing shared by `udp:` and `tcp:`.
//!
//! A sink is created per subscription and is lazy: parsing a socket checks
//! its syntax only and opens nothing, so refreshing or cancelling a
//! subscription (which parses the socket again to find it) is cheap.
//! Connections, sockets and files are opened on the first delivery, and
//! closed by [`Sink::close`] when the bus shuts down (or dropped with the sink).

mod addr;
mod datagram;
mod flatstore;
mod http;
mod rabbitmq;
mod route;
mod stream;
mod virt;
mod xmlrpc;

use std::sync::Arc;

use crate::events::{EventRouteHandler, SinkSchemes};

pub use flatstore::Flatstore;

/// The socket schemes of every transport here, for [`EventBus::new`](crate::events::EventBus::new):
/// `route:` subscribers run on `route_handler` (without one their deliveries fail), and
/// `flatstore:` subscribers write through `flatstore` (keep a clone to rotate the files).
pub fn schemes(route_handler: Option<Arc<dyn EventRouteHandler>>, flatstore: &Flatstore) -> SinkSchemes {
    let flatstore = flatstore.clone();
    // One HTTP client (connection pool, policy-checking resolver) per bus.
    let http_client = http::Clients::default();
    let https_client = http_client.clone();
    SinkSchemes::new()
        .with("udp", |_, rest, ctx| datagram::parse_udp(rest, ctx))
        .with("unix", |_, rest, ctx| datagram::parse_unix(rest, ctx))
        .with("tcp", |_, rest, ctx| stream::parse(rest, ctx))
        .with("stream", |_, rest, ctx| stream::parse(rest, ctx))
        .with("flatstore", move |_, rest, ctx| flatstore.parse(rest, ctx))
        .with("route", move |_, rest, _| route::parse(rest, route_handler.clone()))
        .with("virtual", |_, rest, ctx| virt::parse(rest, ctx))
        .with("http", move |socket, _, ctx| http_client.parse(socket, ctx))
        .with("https", move |socket, _, ctx| https_client.parse(socket, ctx))
        .with("rabbitmq", |socket, _, ctx| rabbitmq::parse(socket, ctx))
        .with("xmlrpc", |_, rest, ctx| xmlrpc::parse(rest, ctx))
}

#[cfg(test)]
mod tests;
