//! `[events]` table of `sipbox.toml`: queue bounds, transport settings and
//! static subscriptions (OpenSIPS `subscribe_event()` in `startup_route`).

use serde::Deserialize;

/// Event Interface settings (the `[events]` table of `sipbox.toml`). Every
/// field has a default; unknown keys are rejected.
///
/// ```toml
/// [events]
/// queue_len = 1024
/// flatstore_max_size = 0
/// flatstore_file_permissions = "644"
/// flatstore_delimiter = ","
/// stream_timeout_ms = 1000
/// failover_timeout_s = 30
/// ebr_max_waiters = 20000
/// ebr_max_notify_concurrency = 256
/// deny_destinations = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]
/// flatstore_dirs = ["/var/log/sipbox"]
/// subscribe = [
///   { event = "E_UL_CONTACT_INSERT", socket = "udp:127.0.0.1:9999" },
///   { event = "E_PIKE_BLOCKED", socket = "flatstore:/var/log/sipbox/pike.log", expire = 3600 },
/// ]
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events one subscriber may have waiting for delivery. When its queue
    /// is full (a slow or unreachable destination) further events for it
    /// are dropped and counted, so `raise` never waits. For reconnecting
    /// transports (`tcp:`/`stream:`) this is also how many events raised
    /// during an outage are delivered once the destination is back.
    ///
    /// Default: `1024`.
    pub queue_len: usize,
    /// Subscriptions made at start, before any traffic. Without `expire`
    /// they never expire (like a script `subscribe_event()`).
    ///
    /// Default: none.
    pub subscribe: Vec<StaticSubscription>,
    /// `flatstore:` files are rotated once they reach this many bytes: the
    /// file is renamed to `<path>.<unix seconds>` and a fresh one is opened
    /// (raising `E_FLATSTORE_ROTATION`, reason `size`). `0` = never.
    ///
    /// Default: `0`.
    pub flatstore_max_size: u64,
    /// Permissions of created `flatstore:` files, an octal string.
    ///
    /// Default: `"644"`.
    pub flatstore_file_permissions: String,
    /// Separator between the event name and the values of a flatstore
    /// line. Occurrences of its first character inside string values are
    /// replaced by a space (OpenSIPS does the same).
    ///
    /// Default: `","`.
    pub flatstore_delimiter: String,
    /// Leave the event name out of flatstore lines (OpenSIPS `suppress_event_name`).
    ///
    /// Default: `false`.
    pub flatstore_suppress_event_name: bool,
    /// `tcp:`/`stream:` connect-and-write timeout per attempt, milliseconds
    /// (OpenSIPS event_stream `timeout`).
    ///
    /// Default: `1000`.
    pub stream_timeout_ms: u64,
    /// When set, `tcp:` payloads carry the event name inside `params` under
    /// this key (OpenSIPS event_stream `event_param`).
    ///
    /// Default: none.
    pub stream_event_param: Option<String>,
    /// `virtual:FAILOVER`: after a destination fails, it is skipped for this
    /// many seconds while another one works (OpenSIPS `failover_timeout`).
    ///
    /// Default: `30`.
    pub failover_timeout_s: u64,
    /// Event-based routing: most `wait-for-event` waiters and
    /// `notify-on-event` subscriptions alive at once (together). Each is a
    /// few hundred bytes here, but a waiter also holds a suspended route
    /// instance; past the limit, new ones fail with an error the route sees.
    ///
    /// Default: `20000`.
    pub ebr_max_waiters: usize,
    /// Event-based routing: most notification routes (`on-notify`) running
    /// at once. A matching event over the limit is not notified to that
    /// subscription (dropped and counted in `ebr_notify_dropped`), so a burst
    /// of events cannot pile up unbounded work.
    ///
    /// Default: `256`.
    pub ebr_max_notify_concurrency: usize,
    /// Networks (CIDR, or single addresses) event destinations must be in;
    /// empty = any address not in `deny_destinations`. Applies to the IP
    /// of every `udp:`, `tcp:`, `http(s)://`, `rabbitmq:` and `xmlrpc:`
    /// destination: literals when subscribing, host names after each
    /// resolution at delivery (see `events::destinations`).
    ///
    /// Default: none (any).
    pub allow_destinations: Vec<String>,
    /// Networks event destinations must never be in; wins over
    /// `allow_destinations`. The defaults are link-local networks (cloud
    /// metadata services answer at 169.254.169.254) and the EC2 IPv6
    /// metadata address.
    ///
    /// Default: `["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]`.
    pub deny_destinations: Vec<String>,
    /// Directories `unix:` destination sockets must be in (absolute;
    /// symlinks resolved). Empty refuses every `unix:` subscription.
    ///
    /// Default: none.
    pub unix_socket_dirs: Vec<String>,
    /// Directories `flatstore:` files must be in (absolute; symlinks
    /// resolved; a file that is a symlink is refused, and files are opened
    /// with `O_NOFOLLOW`). Empty refuses every `flatstore:` subscription.
    ///
    /// Default: none.
    pub flatstore_dirs: Vec<String>,
    /// Most subscriptions alive at once (all events, all destinations); a
    /// new one beyond it is refused (counted in `events_subscribe_refused_limit`).
    ///
    /// Default: `10000`.
    pub max_subscriptions: usize,
    /// Most subscriptions of one destination socket (one per event it is
    /// subscribed to); a new one beyond it is refused (counted as above).
    ///
    /// Default: `256`.
    pub max_subscriptions_per_destination: usize,
    /// `http(s)://` limit on one POST attempt (connect, send, response), ms.
    ///
    /// Default: `5000`.
    pub http_timeout_ms: u64,
    /// `http(s)://` limit on establishing a connection (TCP and TLS), ms.
    ///
    /// Default: `3000`.
    pub http_connect_timeout_ms: u64,
    /// `rabbitmq:` limit on opening a connection and its channel (TCP, TLS,
    /// AMQP handshake), ms (OpenSIPS `connect_timeout`).
    ///
    /// Default: `5000`.
    pub amqp_connect_timeout_ms: u64,
    /// `rabbitmq:` limit on the broker confirming one publish, ms (OpenSIPS `timeout`).
    ///
    /// Default: `5000`.
    pub amqp_confirm_timeout_ms: u64,
    /// PEM file of the certificate authorities `rabbitmq:` TLS connections
    /// (`tls` socket parameter) trust, instead of the platform's roots.
    ///
    /// Default: none (the platform's trust store).
    pub amqp_tls_ca_file: Option<String>,
    /// `xmlrpc:` limit on connecting, sending the call and reading the
    /// HTTP status line, ms.
    ///
    /// Default: `1000`.
    pub xmlrpc_timeout_ms: u64,
    /// `xmlrpc:` packs each named parameter into a struct (OpenSIPS
    /// `use_struct_param`).
    ///
    /// Default: `false`.
    pub xmlrpc_use_struct_param: bool,
}

/// One `[[events.subscribe]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticSubscription {
    /// Event name; published if unknown.
    pub event: String,
    /// Destination socket, e.g. `udp:127.0.0.1:9999`.
    pub socket: String,
    /// Lifetime in seconds; absent = never expires.
    #[serde(default)]
    pub expire: Option<u32>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue_len: 1024,
            subscribe: Vec::new(),
            flatstore_max_size: 0,
            flatstore_file_permissions: "644".into(),
            flatstore_delimiter: ",".into(),
            flatstore_suppress_event_name: false,
            stream_timeout_ms: 1000,
            stream_event_param: None,
            failover_timeout_s: 30,
            ebr_max_waiters: 20_000,
            ebr_max_notify_concurrency: 256,
            allow_destinations: Vec::new(),
            deny_destinations: super::destinations::DEFAULT_DENY.iter().map(|s| (*s).to_owned()).collect(),
            unix_socket_dirs: Vec::new(),
            flatstore_dirs: Vec::new(),
            max_subscriptions: 10_000,
            max_subscriptions_per_destination: 256,
            http_timeout_ms: 5000,
            http_connect_timeout_ms: 3000,
            amqp_connect_timeout_ms: 5000,
            amqp_confirm_timeout_ms: 5000,
            amqp_tls_ca_file: None,
            xmlrpc_timeout_ms: 1000,
            xmlrpc_use_struct_param: false,
        }
    }
}

impl EventsConfig {
    /// Checks what serde cannot. Sockets of static subscriptions are checked
    /// when they are applied ([`EventBus::new`](super::EventBus::new)).
    ///
    /// # Errors
    /// A zero `queue_len`, bad permissions, an empty delimiter or timeout.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.queue_len > 0, "events.queue_len must be at least 1");
        self.file_mode()?;
        anyhow::ensure!(!self.flatstore_delimiter.is_empty(), "events.flatstore_delimiter must not be empty");
        anyhow::ensure!(self.stream_timeout_ms > 0, "events.stream_timeout_ms must be at least 1");
        anyhow::ensure!(self.ebr_max_waiters > 0, "events.ebr_max_waiters must be at least 1");
        anyhow::ensure!(self.ebr_max_notify_concurrency > 0, "events.ebr_max_notify_concurrency must be at least 1");
        for (key, v) in [
            ("max_subscriptions", self.max_subscriptions as u64),
            ("max_subscriptions_per_destination", self.max_subscriptions_per_destination as u64),
            ("http_timeout_ms", self.http_timeout_ms),
            ("http_connect_timeout_ms", self.http_connect_timeout_ms),
            ("amqp_connect_timeout_ms", self.amqp_connect_timeout_ms),
            ("amqp_confirm_timeout_ms", self.amqp_confirm_timeout_ms),
            ("xmlrpc_timeout_ms", self.xmlrpc_timeout_ms),
        ] {
            anyhow::ensure!(v > 0, "events.{key} must be at least 1");
        }
        super::destinations::Destinations::from_config(self)?;
        for s in &self.subscribe {
            super::check_name(&s.event)?;
        }
        Ok(())
    }

    /// `flatstore_file_permissions` as a mode.
    pub(crate) fn file_mode(&self) -> anyhow::Result<u32> {
        let s = self.flatstore_file_permissions.trim();
        match u32::from_str_radix(s, 8) {
            Ok(mode) if !s.is_empty() && mode <= 0o7777 => Ok(mode),
            _ => anyhow::bail!("events.flatstore_file_permissions must be an octal mode like \"644\", not {s:?}"),
        }
    }
}
