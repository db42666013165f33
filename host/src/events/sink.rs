//! The registry's side of event transports: the [`Sink`] trait every transport implements,
//! the [`SinkSchemes`] table that maps a socket's prefix (`udp`, `flatstore`, `route`, ...)
//! to the function that parses it (OpenSIPS `get_trans_mod`), and the [`SinkContext`] those
//! functions get. The transports themselves live in the `sinks` module, which fills a table at
//! start (`sinks::schemes`) for [`EventBus::new`](super::EventBus::new): the registry calls
//! through the table and never names a transport, so the dependency runs one way, sinks → events.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::destinations::Destinations;
use super::{Event, EventError, EventsConfig};

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
    /// `route:` without an event-route handler.
    #[error("no event route handler installed")]
    NoHandler,
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// Parses one socket of a scheme: gets the whole (trimmed) socket text, the part after
/// the first ':', and the bus's [`SinkContext`]. Checks syntax only; opens nothing.
pub type ParseSocket = dyn Fn(&str, &str, &SinkContext) -> Result<Arc<dyn Sink>, EventError> + Send + Sync;

/// The socket schemes a bus knows: prefix before the first ':' → its parser. Built once at
/// start by `sinks::schemes`; an empty table knows no transport (every subscribe
/// fails with [`EventError::UnknownTransport`]), which is enough for a bus that only raises.
#[derive(Clone, Default)]
pub struct SinkSchemes {
    by_prefix: HashMap<Box<str>, Arc<ParseSocket>>,
}

impl SinkSchemes {
    /// A table with no scheme.
    pub fn new() -> SinkSchemes {
        SinkSchemes::default()
    }

    /// Adds (or replaces) the parser of sockets starting `prefix:` (builder style).
    pub fn with(
        mut self,
        prefix: &str,
        parse: impl Fn(&str, &str, &SinkContext) -> Result<Arc<dyn Sink>, EventError> + Send + Sync + 'static,
    ) -> SinkSchemes {
        self.by_prefix.insert(prefix.into(), Arc::new(parse));
        self
    }

    /// Whether sockets starting `prefix:` are known.
    pub fn contains(&self, prefix: &str) -> bool {
        self.by_prefix.contains_key(prefix)
    }

    /// Parses a subscriber socket, choosing the transport by the prefix before the first ':'.
    ///
    /// # Errors
    /// [`EventError::UnknownTransport`] for an unknown prefix (or none), else what the
    /// scheme's parser says ([`EventError::BadSocket`] for a malformed address).
    fn parse(&self, socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
        let socket = socket.trim();
        let parse = socket.split_once(':').and_then(|(prefix, rest)| Some((self.by_prefix.get(prefix)?, rest)));
        match parse {
            Some((parse, rest)) => parse(socket, rest, ctx),
            None => Err(EventError::UnknownTransport(socket.to_owned())),
        }
    }
}

/// Raises an event on the bus a sink belongs to (`E_FLATSTORE_ROTATION`).
type Raiser = Box<dyn Fn(Event) + Send + Sync>;

/// What sinks get from their bus: the `[events]` settings, the scheme table (a
/// `virtual:` socket parses its members with it) and a way to raise events themselves
/// (`E_FLATSTORE_ROTATION`). Cheap to clone; one per bus, made with it.
#[derive(Clone)]
pub struct SinkContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    cfg: EventsConfig,
    schemes: SinkSchemes,
    raiser: Raiser,
    destinations: Arc<Destinations>,
}

impl SinkContext {
    /// The context of a bus: `raiser` raises on it (it holds the bus weakly, so that a
    /// sink that keeps its context does not keep its bus alive).
    pub(super) fn new(cfg: &EventsConfig, schemes: SinkSchemes, raiser: Raiser) -> SinkContext {
        let destinations = Arc::new(Destinations::from_config_or_refuse_all(cfg));
        SinkContext { inner: Arc::new(ContextInner { cfg: cfg.clone(), schemes, raiser, destinations }) }
    }

    /// A context of no bus, for parsing sockets on their own (tests, checks): what
    /// sinks raise goes nowhere.
    pub fn detached(cfg: &EventsConfig, schemes: SinkSchemes) -> SinkContext {
        SinkContext::new(cfg, schemes, Box::new(|_| {}))
    }

    /// The settings.
    pub fn config(&self) -> &EventsConfig {
        &self.inner.cfg
    }

    /// Where subscribers may point (checked by each transport).
    pub fn destinations(&self) -> &Destinations {
        &self.inner.destinations
    }

    /// The same policy as a shared handle (for a resolver that outlives a borrow).
    pub fn destinations_handle(&self) -> Arc<Destinations> {
        self.inner.destinations.clone()
    }

    /// Parses a subscriber socket with this bus's schemes (see [`SinkSchemes`]).
    ///
    /// # Errors
    /// [`EventError::UnknownTransport`] for an unknown prefix (or none),
    /// [`EventError::BadSocket`] for a malformed address.
    pub fn parse(&self, socket: &str) -> Result<Arc<dyn Sink>, EventError> {
        self.inner.schemes.parse(socket, self)
    }

    /// Raises an event from inside a sink (never blocks).
    pub fn raise(&self, event: Event) {
        (self.inner.raiser)(event);
    }
}
