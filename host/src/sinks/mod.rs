//! Event transports (OpenSIPS `event_*` modules): one module per socket
//! prefix behind the [`Sink`] trait, and [`parse_socket`], which picks the
//! transport by the prefix before the first ':' (`get_trans_mod`).
//!
//! # Layout
//! - `datagram`: `udp:host:port`, `unix:/path` (event_datagram);
//! - `stream`: `tcp:host:port[/method]`, alias `stream:` (event_stream);
//! - `flatstore`: `flatstore:/path/file` (event_flatstore);
//! - `route`: `route:NAME`, event routes run by an [`EventRouteHandler`];
//! - `virt`: `virtual:POLICY sock1 sock2 ...` (event_virtual);
//! - `http`: `http://`, `https://` webhooks; `rabbitmq`: `rabbitmq:` AMQP;
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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use crate::events::{Event, EventError, EventRouteHandler, EventsConfig};

pub(crate) use flatstore::FlatFiles;

/// The future [`Sink::deliver`] returns.
pub type DeliverFut<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// The future [`Sink::close`] returns.
pub type CloseFut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One event destination (an OpenSIPS reply socket plus its transport).
pub trait Sink: Send + Sync + 'static {
    /// Canonical socket text, e.g. `udp:127.0.0.1:9999`: what
    /// `subscribers_list` shows and what stats are keyed by.
    fn socket(&self) -> &str;

    /// Delivers one event. Called by the subscription's own task, one event
    /// at a time; a failure is counted (and retried when
    /// [`retry_on_error`](Self::retry_on_error) says so).
    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a>;

    /// Whether an `expire` applies. OpenSIPS `rabbitmq:` and `route:`
    /// subscribers never expire.
    fn supports_expire(&self) -> bool {
        true
    }

    /// The subscription identity: two subscribes with the same key to the
    /// same event are one subscriber (the second refreshes it).
    fn match_key(&self) -> String {
        self.socket().to_owned()
    }

    /// Whether a failed delivery should be retried (with backoff, holding the
    /// queue behind it) instead of counted as failed and skipped: true for
    /// connection-oriented transports that reconnect, so events raised during
    /// an outage arrive afterwards, up to the queue bound.
    fn retry_on_error(&self) -> bool {
        false
    }

    /// Called once when a new subscription is made, to refuse destinations
    /// that cannot work (a flatstore path in a missing directory, ...).
    fn check(&self) -> Result<(), EventError> {
        Ok(())
    }

    /// Closes what the sink holds open, the way its protocol closes (a TCP
    /// FIN, an AMQP `connection.close`), when its subscription's task stops
    /// at shutdown. The task bounds the wait. The default has nothing to do:
    /// what a sink holds is released when it is dropped.
    fn close(&self) -> CloseFut<'_> {
        Box::pin(async {})
    }
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error (send, write, connect).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The destination did not answer or accept in time.
    #[error("timed out")]
    Timeout,
    /// The payload does not fit the transport (datagram > 65457 bytes).
    #[error("payload too large ({0} bytes)")]
    TooLarge(usize),
    /// `route:` without an event-route handler installed.
    #[error("no event route handler installed")]
    NoHandler,
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// What sinks share: settings, the route handler, the open flatstore files
/// and a way to raise events themselves (`E_FLATSTORE_ROTATION`). Cheap clone.
#[derive(Clone)]
pub struct SinkContext {
    pub(crate) inner: Arc<ContextInner>,
}

type Raiser = Box<dyn Fn(Event) + Send + Sync>;

pub(crate) struct ContextInner {
    pub(crate) cfg: EventsConfig,
    route_handler: RwLock<Option<Arc<dyn EventRouteHandler>>>,
    pub(crate) flat_files: FlatFiles,
    raiser: OnceLock<Raiser>,
}

impl SinkContext {
    /// A context with these settings, no route handler and nothing to raise into.
    pub fn new(cfg: &EventsConfig) -> SinkContext {
        SinkContext {
            inner: Arc::new(ContextInner {
                cfg: cfg.clone(),
                route_handler: RwLock::new(None),
                flat_files: FlatFiles::default(),
                raiser: OnceLock::new(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EventsConfig {
        &self.inner.cfg
    }

    /// Installs (or replaces) the handler `route:` sinks call.
    pub fn set_route_handler(&self, h: Arc<dyn EventRouteHandler>) {
        *self.inner.route_handler.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    pub(crate) fn route_handler(&self) -> Option<Arc<dyn EventRouteHandler>> {
        self.inner.route_handler.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the function sinks raise their own events with (once; the bus
    /// does it with a weak reference to itself).
    pub(crate) fn set_raiser(&self, f: Raiser) {
        let _ = self.inner.raiser.set(f);
    }

    /// Raises an event from inside a sink (never blocks).
    pub(crate) fn raise(&self, event: Event) {
        if let Some(f) = self.inner.raiser.get() {
            f(event);
        }
    }
}

/// Parses a subscriber socket, choosing the transport by the prefix before
/// the first ':'. Checks syntax only; nothing is opened yet.
///
/// # Errors
/// [`EventError::UnknownTransport`] for an unknown prefix (or none),
/// [`EventError::BadSocket`] for a malformed address.
pub fn parse_socket(socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    let socket = socket.trim();
    let Some((proto, rest)) = socket.split_once(':') else {
        return Err(EventError::UnknownTransport(socket.to_owned()));
    };
    match proto {
        "udp" => datagram::parse_udp(rest),
        "unix" => datagram::parse_unix(rest),
        "tcp" | "stream" => stream::parse(rest, ctx),
        "flatstore" => flatstore::parse(rest, ctx),
        "route" => route::parse(rest, ctx),
        "virtual" => virt::parse(rest, ctx),
        "http" | "https" => http::parse(socket),
        "rabbitmq" => rabbitmq::parse(socket),
        _ => Err(EventError::UnknownTransport(socket.to_owned())),
    }
}

#[cfg(test)]
mod tests;
