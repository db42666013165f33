//! `rabbitmq:[user[:password]@]host[:port]/[params?]routing_key` (OpenSIPS
//! event_rabbitmq): each event is published over AMQP 0-9-1 as the JSON-RPC
//! notification (`content_type: application/json`), to `exchange=` (default
//! `""`, i.e. straight to the queue named by the routing key), persistent
//! (`delivery_mode=2`) with the `persistent` parameter. Queues and exchanges
//! are not declared: that is the consumer's business, as in OpenSIPS. The
//! socket grammar is in [`socket`].
//!
//! Delivery: one connection and one channel per subscriber, opened on the
//! first event (like OpenSIPS' lazy connect) and reopened after any failure.
//! The channel is in confirm mode: a delivery succeeds only once the broker
//! acks the publish, so a message written into a connection that is dying
//! is not counted as delivered. A failed delivery returns an error quickly
//! (bounded connect and confirm timeouts) and the subscription task retries
//! it with backoff ([`Sink::retry_on_error`]), holding later events in the
//! subscriber's bounded queue: a broker outage is survived, and the events
//! raised during it are published once the broker is back, in order, up to
//! the queue bound. After a lost confirm the event may be published twice
//! (at-least-once).
//!
//! The broker's address is resolved here and checked against the `[events]`
//! destination policy before connecting. Timeouts: `[events]`
//! `amqp_connect_timeout_ms` and `amqp_confirm_timeout_ms`.
//!
//! Like OpenSIPS, rabbitmq subscriptions never expire. The canonical socket
//! (what `subscribers_list` shows, and the subscriber identity) omits the
//! password and always names the user and port.

mod confirm;
mod socket;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use amqprs::channel::{BasicPublishArguments, Channel, ConfirmSelectArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, DELIVERY_MODE_PERSISTENT};
use tokio::sync::Mutex;

use self::confirm::{Callbacks, Confirms, Outcome};
use self::socket::Target;
use crate::events::{CloseFut, DeliverFut, Event, EventError, Sink, SinkContext, SinkError};

// Timeouts: `[events] amqp_connect_timeout_ms` bounds opening a connection
// and its channel (TCP + AMQP handshake); OpenSIPS `connect_timeout` defaults
// to 500 ms, the default here is 5 s because RabbitMQ waits 3 s before
// dropping a client whose login it refused, and that refusal should be
// reported as such rather than as a timeout. `amqp_confirm_timeout_ms`
// bounds the broker confirming one publish.
/// AMQP heartbeat (seconds), so a silently dead broker or NAT is noticed.
const HEARTBEAT_S: u16 = 30;

/// Parses a `rabbitmq:` socket (the whole string). Opens nothing.
pub(crate) fn parse(socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    let target = socket::parse_target(socket.trim()).map_err(|e| EventError::BadSocket(format!("{socket}: {e}")))?;
    Ok(Arc::new(RabbitSink::new(target, ctx)))
}

/// A RabbitMQ subscriber.
pub(crate) struct RabbitSink {
    target: Target,
    canonical: String,
    connect_timeout: Duration,
    confirm_timeout: Duration,
    ctx: SinkContext,
    /// TLS settings (the `tls` parameter), made when subscribing.
    tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// The open link, if any. The lock also serialises publishes, which
    /// keeps delivery tags in publish order.
    link: Mutex<Option<Link>>,
}

/// One connection, its channel (in confirm mode) and their confirms.
struct Link {
    /// Kept so the connection stays open (dropping it closes it).
    conn: Connection,
    chan: Channel,
    confirms: Arc<Confirms>,
    /// False while a publish awaits its confirm. A link found unsettled was
    /// abandoned mid-publish (the delivery future was dropped), so its tag
    /// count may be off: it is replaced.
    settled: bool,
}

impl Link {
    fn usable(&self) -> bool {
        self.settled && self.conn.is_open() && self.chan.is_open() && self.confirms.closed().is_none()
    }
}

impl RabbitSink {
    fn new(target: Target, ctx: &SinkContext) -> RabbitSink {
        let cfg = ctx.config();
        RabbitSink {
            canonical: target.canonical(),
            target,
            connect_timeout: Duration::from_millis(cfg.amqp_connect_timeout_ms),
            confirm_timeout: Duration::from_millis(cfg.amqp_confirm_timeout_ms),
            ctx: ctx.clone(),
            tls: std::sync::OnceLock::new(),
            link: Mutex::new(None),
        }
    }

    /// The TLS settings, made on first use (they read `amqp_tls_ca_file`).
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(c) = self.tls.get() {
            return Ok(c.clone());
        }
        let config = tls::client_config(self.ctx.config().amqp_tls_ca_file.as_deref())?;
        Ok(self.tls.get_or_init(|| config).clone())
    }

    /// The broker's host without IPv6 brackets, and its literal address if it is one.
    fn host_ip(&self) -> (&str, Option<IpAddr>) {
        let host = self.target.host.trim_start_matches('[').trim_end_matches(']');
        (host, host.parse().ok())
    }

    /// The address to connect to: resolved here (not by amqprs) so that the
    /// destination policy sees the address actually used.
    async fn resolve(&self) -> Result<SocketAddr, SinkError> {
        let (host, ip) = self.host_ip();
        let policy = self.ctx.destinations();
        let addr = match ip {
            Some(ip) => SocketAddr::new(ip, self.target.port),
            None => tokio::net::lookup_host((host, self.target.port))
                .await
                .map_err(|e| self.err("resolve", e))?
                .next()
                .ok_or_else(|| self.err("resolve", format!("{host} does not resolve")))?,
        };
        let checked = if ip.is_some() { policy.check_ip(addr.ip()) } else { policy.check_resolved(host, addr.ip()) };
        checked.map_err(SinkError::Other)?;
        Ok(addr)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> SinkError {
        SinkError::Other(format!("{}: {what}: {e}", self.canonical))
    }

    async fn connect(&self) -> Result<Link, SinkError> {
        let t = &self.target;
        let mut addr = self.resolve().await?;
        if t.tls {
            let config = self.tls_config().map_err(|e| self.err("tls", e))?;
            let (host, _) = self.host_ip();
            let handshake = tls::tunnel(config, host, addr, self.connect_timeout);
            addr = match tokio::time::timeout(self.connect_timeout, handshake).await {
                Ok(r) => r.map_err(|e| self.err("tls", e))?,
                Err(_) => return Err(self.err("tls", format!("no TLS session within {:?}", self.connect_timeout))),
            };
        }
        let mut args = OpenConnectionArguments::new(&addr.ip().to_string(), addr.port(), &t.user, &t.password);
        // amqprs panics on an over-long (> 255 bytes) connection name.
        let mut name = format!("sipbox events {}", self.canonical);
        if name.len() > 200 {
            let cut = (0..=200).rev().find(|i| name.is_char_boundary(*i)).unwrap_or(0);
            name.truncate(cut);
        }
        args.virtual_host(&t.vhost).heartbeat(HEARTBEAT_S).connection_name(&name);
        let open = async {
            let conn = Connection::open(&args).await.map_err(|e| {
                // RabbitMQ answers bad credentials by resetting the connection
                // (amqprs does not announce `authentication_failure_close`).
                let text = e.to_string();
                let hint = if text.contains("reset by peer") { " (refused credentials?)" } else { "" };
                self.err("connect", format!("{text}{hint}"))
            })?;
            let confirms = Confirms::new();
            conn.register_callback(Callbacks(confirms.clone())).await.map_err(|e| self.err("connect", e))?;
            let chan = conn.open_channel(None).await.map_err(|e| self.err("open channel", e))?;
            chan.register_callback(Callbacks(confirms.clone())).await.map_err(|e| self.err("open channel", e))?;
            chan.confirm_select(ConfirmSelectArguments::new(false)).await.map_err(|e| self.err("confirm.select", e))?;
            Ok::<_, SinkError>(Link { conn, chan, confirms, settled: true })
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(self.err("connect", format!("no AMQP session within {:?}", self.connect_timeout))),
        }
    }

    /// Publishes on `link` and waits for the broker's confirm.
    async fn publish(&self, link: &mut Link, body: Vec<u8>) -> Result<(), SinkError> {
        let t = &self.target;
        let mut props = BasicProperties::default();
        props.with_content_type("application/json");
        if t.persistent {
            props.with_delivery_mode(DELIVERY_MODE_PERSISTENT);
        }
        let confirmed = link.confirms.expect_next().map_err(|e| self.err("publish", e))?;
        link.settled = false;
        link.chan
            .basic_publish(props, body, BasicPublishArguments::new(&t.exchange, &t.routing_key))
            .await
            .map_err(|e| self.err("publish", e))?;
        let outcome = tokio::select! {
            r = confirmed => r.unwrap_or_else(|_| Outcome::Closed("channel dropped".into())),
            _ = link.conn.listen_network_io_failure() => Outcome::Closed("network failure".into()),
            _ = tokio::time::sleep(self.confirm_timeout) => {
                return Err(self.err("publish", format!("no confirm within {:?}", self.confirm_timeout)));
            }
        };
        match outcome {
            Outcome::Ack => {
                link.settled = true;
                Ok(())
            }
            Outcome::Nack => {
                link.settled = true;
                Err(self.err("publish", "the broker nacked the message"))
            }
            Outcome::Closed(why) => Err(self.err("publish", why)),
        }
    }

    async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let body = event.to_jsonrpc_string().into_bytes();
        let mut slot = self.link.lock().await;
        // A link that was already open may have died unnoticed (idle, broker
        // restarted): one failure on it earns one fresh connection at once.
        let mut fresh = false;
        loop {
            if !slot.as_ref().is_some_and(Link::usable) {
                *slot = None;
                *slot = Some(self.connect().await?);
                fresh = true;
            }
            let Some(link) = slot.as_mut() else { continue };
            match self.publish(link, body.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let broken = !link.settled || !link.usable();
                    if broken {
                        *slot = None;
                    }
                    // A nack on a healthy link is the broker's answer, not a dead link.
                    if fresh || !broken {
                        return Err(e);
                    }
                    tracing::debug!(socket = %self.canonical, error = %e, "publish on an old link failed; reconnecting");
                }
            }
        }
    }
}

impl Sink for RabbitSink {
    fn socket(&self) -> &str {
        &self.canonical
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(self.send(event))
    }

    /// OpenSIPS event_rabbitmq subscriptions never expire.
    fn supports_expire(&self) -> bool {
        false
    }

    /// Reconnecting transport: outage events wait in the queue and are retried.
    fn retry_on_error(&self) -> bool {
        true
    }

    /// A literal broker address must be allowed (a name is checked when connecting).
    fn check(&self) -> Result<(), EventError> {
        if self.target.tls {
            self.tls_config().map_err(|e| EventError::Refused(format!("{}: {e}", self.canonical)))?;
        }
        match self.host_ip() {
            (_, Some(ip)) => self
                .ctx
                .destinations()
                .check_ip(ip)
                .map_err(|e| EventError::DestinationRefused(format!("{}: {e}", self.canonical))),
            _ => Ok(()),
        }
    }

    /// Closes the channel and the connection with the AMQP handshake, so the
    /// broker logs a client that left, not one that vanished. (Dropping a
    /// link only spawns that close, which may not run once the runtime stops.)
    fn close(&self) -> CloseFut<'_> {
        Box::pin(async {
            let Some(link) = self.link.lock().await.take() else { return };
            if let Err(e) = link.chan.close().await {
                tracing::debug!(socket = %self.canonical, error = %e, "AMQP channel close failed");
            }
            if let Err(e) = link.conn.close().await {
                tracing::debug!(socket = %self.canonical, error = %e, "AMQP connection close failed");
            }
        })
    }
}

#[cfg(test)]
#[path = "testutil_broker.rs"]
mod testutil_broker;

#[cfg(test)]
mod tests;
