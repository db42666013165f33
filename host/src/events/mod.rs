//! The Event Interface (OpenSIPS EVI semantics): the registry of published
//! events, subscriptions with expiry, and `raise`, which hands each event to
//! every live subscriber's bounded queue without ever blocking the caller.
//! The transports that carry events out live in the `sinks` module, which
//! implements [`Sink`] and fills the [`SinkSchemes`] table the bus is built
//! with; nothing here names a transport.
//!
//! # Layout
//! - this file: the data model ([`Value`], [`Params`], [`Event`]), [`EventError`]
//!   and the [`EventRouteHandler`] hook for `route:` subscribers;
//! - [`config`]: [`EventsConfig`], the `[events]` table of `sipbox.toml`;
//! - [`destinations`]: where subscribers may point (address allow/deny lists,
//!   `unix:` and `flatstore:` directories);
//! - `payload`: the OpenSIPS JSON-RPC notification encoder (`evi_build_payload`);
//! - `registry`: [`EventBus`] — publish, subscribe/refresh/unsubscribe, raise, listing;
//! - `sink`: the [`Sink`] trait transports implement, the [`SinkSchemes`] table
//!   (socket prefix → parser) and the [`SinkContext`] parsers get;
//! - `subscription`: one subscriber: its queue, drain task and expiry;
//! - [`ebr`]: event-based routing (`notify_on_event`, `wait_for_event`);
//! - [`usrloc`]: the location listener that turns registrar
//!   [`LocationEvent`](crate::location::LocationEvent)s into `E_UL_*` events.
//!
//! # Delivery model
//! OpenSIPS raises synchronously in the producing worker and lets each
//! transport queue or send. Here `raise` only `try_send`s an `Arc<Event>` into
//! each subscriber's bounded queue (a full queue drops and counts); one tokio
//! task per subscription drains it into [`Sink::deliver`].
//! A slow or dead destination therefore stalls nothing but its own queue.

pub mod config;
pub mod destinations;
pub mod ebr;
pub mod usrloc;

pub(crate) mod payload;
mod registry;
mod sink;
mod subscription;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sinks;

use std::sync::Arc;

pub use config::{EventsConfig, StaticSubscription};
pub use registry::{EventBus, RaiseObserver};
pub use sink::{CloseFut, DeliverFut, ParseSocket, Sink, SinkContext, SinkError, SinkSchemes};

pub use crate::BoxFut;

/// Longest event name (OpenSIPS `MAX_EVENT_NAME`).
pub const MAX_EVENT_NAME: usize = 64;

/// Events the host publishes at start, so `events_list` shows them before
/// the first raise (usrloc, core, pike, and the flatstore rotation event).
pub const PREDEFINED_EVENTS: &[&str] = &[
    usrloc::E_UL_AOR_INSERT,
    usrloc::E_UL_AOR_DELETE,
    usrloc::E_UL_CONTACT_INSERT,
    usrloc::E_UL_CONTACT_UPDATE,
    usrloc::E_UL_CONTACT_DELETE,
    usrloc::E_UL_CONTACT_REFRESH,
    E_CORE_THRESHOLD,
    E_PIKE_BLOCKED,
    E_CORE_SHM_THRESHOLD,
    E_FLATSTORE_ROTATION,
];

/// A message (or action) took longer than its threshold: `source`, `time` (µs), `extra`.
pub const E_CORE_THRESHOLD: &str = "E_CORE_THRESHOLD";
/// The flood detector blocked a source: `ip`.
pub const E_PIKE_BLOCKED: &str = "E_PIKE_BLOCKED";
/// Memory pressure (here: the WASM instance pool): `usage` (%), `threshold`, `used`, `size`.
pub const E_CORE_SHM_THRESHOLD: &str = "E_CORE_SHM_THRESHOLD";
/// A flatstore file was reopened: `timestamp`, `reason` (`size`/`mi`), `filename`, `old_filename`.
pub const E_FLATSTORE_ROTATION: &str = "E_FLATSTORE_ROTATION";

/// One parameter value. OpenSIPS has only int and string (and a NULL
/// string); structured data travels as a JSON string.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer; JSON number, decimal in flatstore lines.
    Int(i64),
    /// A string.
    Str(String),
    /// A NULL string: JSON `null`, empty in flatstore lines.
    Null,
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

/// Ordered event parameters. When the first one has no name the whole list
/// is positional (a JSON array), as in OpenSIPS; otherwise a JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(pub Vec<(Option<String>, Value)>);

impl Params {
    /// An empty list.
    pub fn new() -> Params {
        Params(Vec::new())
    }
    /// Appends a named parameter (builder style).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Params {
        self.0.push((Some(name.to_owned()), value.into()));
        self
    }
    /// Appends a named parameter.
    pub fn push(&mut self, name: &str, value: impl Into<Value>) {
        self.0.push((Some(name.to_owned()), value.into()));
    }
    /// Appends an unnamed (positional) parameter.
    pub fn push_positional(&mut self, value: impl Into<Value>) {
        self.0.push((None, value.into()));
    }
    /// True when the list encodes as a JSON array (first parameter unnamed).
    pub fn is_positional(&self) -> bool {
        matches!(self.0.first(), Some((None, _)))
    }
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One raised event: its name and parameters.
#[derive(Clone, Debug)]
pub struct Event {
    /// The event name (case-sensitive, at most [`MAX_EVENT_NAME`] bytes).
    pub name: Arc<str>,
    /// Ordered parameters.
    pub params: Params,
}

impl Event {
    /// An event with the given name and parameters.
    pub fn new(name: &str, params: Params) -> Event {
        Event { name: Arc::from(name), params }
    }

    /// The OpenSIPS notification as a JSON value:
    /// `{"jsonrpc":"2.0","method":NAME,"params":{..}|[..]}`, `params` omitted
    /// when empty. Note: `serde_json::Map` sorts keys (no `preserve_order`),
    /// so a named-params object loses its order here; sinks send
    /// [`to_jsonrpc_string`](Self::to_jsonrpc_string), which keeps it.
    pub fn to_jsonrpc(&self) -> serde_json::Value {
        payload::to_value(self)
    }

    /// The exact OpenSIPS payload bytes (`cJSON_PrintUnformatted`: compact,
    /// keys in order `jsonrpc`, `method`, `params`; params in raise order).
    pub fn to_jsonrpc_string(&self) -> String {
        payload::build(&self.params, &self.name, None)
    }

    /// A parameter by name, case-sensitive like OpenSIPS `$param(name)`.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.0.iter().find(|(n, _)| n.as_deref() == Some(name)).map(|(_, v)| v)
    }
}

/// Runs `event_route`s: what a `route:NAME` subscriber calls (the runtime,
/// which runs a route component's `on-event` export). The `route:` scheme is
/// given one when the sink schemes are built; without one, `route:`
/// deliveries fail.
pub trait EventRouteHandler: Send + Sync + 'static {
    /// Runs route `route` for `event`; the future completes when it is done.
    fn run_event_route(&self, route: Arc<str>, event: Event) -> BoxFut;
}

/// Why an event operation was refused. `Display` names the problem, for the
/// MI's JSON-RPC error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The socket's prefix (before ':') is no known transport.
    #[error("unknown event transport in socket '{0}'")]
    UnknownTransport(String),
    /// The socket is malformed (missing port, bad address, ...).
    #[error("bad event socket: {0}")]
    BadSocket(String),
    /// A negative expire was given (MI -32602 "Negative expire value").
    #[error("Negative expire value")]
    NegativeExpire,
    /// No event with that name is published.
    #[error("Event not published: {0}")]
    NotPublished(String),
    /// No such subscriber for the event.
    #[error("Subscriber does not exist: {0}")]
    NoSuchSubscriber(String),
    /// The destination refused the subscription (e.g. a flatstore path in a
    /// missing directory, or that is a directory).
    #[error("destination refused: {0}")]
    Refused(String),
    /// An event name that is empty, too long (> 64) or has whitespace/control characters.
    #[error("bad event name '{0}': 1..=64 printable characters without spaces")]
    BadName(String),
    /// `rotate_flatstore` named a file no flatstore subscriber writes.
    #[error("File not found: {0}")]
    FileNotFound(String),
    /// No tokio runtime to run the subscriber's delivery task on.
    #[error("no async runtime to deliver events on")]
    NoRuntime,
    /// An EBR filter that is not `key=glob` (the message names it).
    #[error("bad event filter {0}")]
    BadFilter(String),
    /// The destination is not allowed by the `[events]` destination policy
    /// (a denied or not allowed address, a path outside the configured directories).
    #[error("destination not allowed: {0}")]
    DestinationRefused(String),
    /// `max_subscriptions` or `max_subscriptions_per_destination` reached.
    #[error("subscription limit reached: {0}")]
    SubscriptionLimit(String),
    /// `ebr_max_waiters` EBR subscriptions and waiters are already live.
    #[error("too many event waiters and notify subscriptions (limit {0})")]
    EbrLimit(usize),
}

/// Checks an event name: 1..=64 bytes, no whitespace or control characters.
pub(crate) fn check_name(name: &str) -> Result<(), EventError> {
    let ok =
        !name.is_empty() && name.len() <= MAX_EVENT_NAME && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(EventError::BadName(name.chars().take(80).collect())) }
}
