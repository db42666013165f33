//! [`TcpConfig`] (`[tcp]`) and what enforces it per connection: the count of connections
//! accepted from one IP ([`IpSlot`]) and the timeouts of one connection ([`Lifetime`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// The `[tcp]` table of `sipbox.toml`: limits on TCP connections.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Connections accepted from one source IP at once (Kamailio `tcp_accept_iplimit`);
    /// one more is closed as soon as it is accepted. 0 = no limit.
    pub max_connections_per_ip: usize,
    /// A message whose first byte arrived must be complete within this many seconds
    /// (Kamailio `tcp_msg_read_timeout`), else the connection is closed. 0 = no limit.
    pub msg_read_timeout_s: u64,
    /// A connection with no traffic in either direction (keep-alives included) for this
    /// long is closed (Kamailio `tcp_connection_lifetime`). Longer than any transaction
    /// (Timer C, 3 min) so an INVITE's responses can always come back.
    pub connection_lifetime_s: u64,
    /// A connection with no SIP message in either direction for this long is closed even
    /// if CRLF keep-alives (RFC 5626) arrive. Longer than the longest registration
    /// (`[location] max_expires`), so a phone that refreshes its binding keeps its flow.
    /// 0 = keep-alives keep a connection open for ever.
    pub keepalive_only_lifetime_s: u64,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            max_connections_per_ip: 64,
            msg_read_timeout_s: 10,
            connection_lifetime_s: 300,
            keepalive_only_lifetime_s: 3900,
        }
    }
}

impl TcpConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.connection_lifetime_s >= 1, "tcp.connection_lifetime_s must be at least 1");
        Ok(())
    }

    pub(super) fn secs(s: u64) -> Option<Duration> {
        (s > 0).then(|| Duration::from_secs(s))
    }
}

/// One accepted connection counted against its source IP; uncounted when dropped.
pub(super) struct IpSlot {
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpSlot {
    /// A slot for `ip`, or `None` when it already has `max` (0: no limit).
    pub(super) fn take(per_ip: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { per_ip: per_ip.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// When a connection is closed for want of traffic ([`TcpConfig`]'s timeouts).
pub(super) struct Lifetime {
    idle: Duration,
    msg_read: Option<Duration>,
    keepalive_only: Option<Duration>,
    /// Any byte read or written.
    last_traffic: Instant,
    /// A SIP message read or written.
    last_message: Instant,
    /// The partial message in the read buffer must be complete by then.
    msg_deadline: Option<Instant>,
}

impl Lifetime {
    pub(super) fn new(cfg: &TcpConfig, now: Instant) -> Lifetime {
        Lifetime {
            idle: Duration::from_secs(cfg.connection_lifetime_s.max(1)),
            msg_read: TcpConfig::secs(cfg.msg_read_timeout_s),
            keepalive_only: TcpConfig::secs(cfg.keepalive_only_lifetime_s),
            last_traffic: now,
            last_message: now,
            msg_deadline: None,
        }
    }

    /// Bytes were read; `framed`: a whole message among them; `partial`: a message begun
    /// and not complete is left in the buffer. Its clock starts with the read that began it
    /// (a message framed in this read ends the previous one's), not with each byte.
    pub(super) fn read(&mut self, now: Instant, framed: bool, partial: bool) {
        self.last_traffic = now;
        if framed {
            self.last_message = now;
        }
        if !partial {
            self.msg_deadline = None;
        } else if framed || self.msg_deadline.is_none() {
            self.msg_deadline = self.msg_read.map(|d| now + d);
        }
    }

    /// A message was written.
    pub(super) fn wrote(&mut self, now: Instant) {
        self.last_traffic = now;
        self.last_message = now;
    }

    pub(super) fn next(&self) -> Instant {
        let idle = self.last_traffic + self.idle;
        let keepalive = self.keepalive_only.map(|d| self.last_message + d);
        [Some(idle), keepalive, self.msg_deadline].into_iter().flatten().min().unwrap_or(idle)
    }

    /// Why the connection must close now, if it must.
    pub(super) fn expired(&self, now: Instant) -> Option<&'static str> {
        if self.msg_deadline.is_some_and(|d| d <= now) {
            Some("a message did not complete within tcp.msg_read_timeout_s")
        } else if now >= self.last_traffic + self.idle {
            Some("idle for tcp.connection_lifetime_s")
        } else if self.keepalive_only.is_some_and(|d| now >= self.last_message + d) {
            Some("only keep-alives for tcp.keepalive_only_lifetime_s")
        } else {
            None
        }
    }
}
