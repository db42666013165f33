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
