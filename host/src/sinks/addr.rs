//! `host:port` destinations of `udp:` and `tcp:` sockets: IPv4, bracketed
//! IPv6 (`[::1]:9999`) or a host name resolved at delivery time.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::events::destinations::Destinations;
use crate::events::{EventError, SinkError};

/// A parsed `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// Host as written (no brackets), lowercased when it is a name.
    pub host: String,
    pub port: u16,
    /// Set when `host` is an IP literal (no resolution needed).
    pub ip: Option<IpAddr>,
}

impl HostPort {
    /// Parses `host:port`; `proto` only names the socket in errors.
    pub fn parse(proto: &str, s: &str) -> Result<HostPort, EventError> {
        let bad = |why: &str| EventError::BadSocket(format!("{proto}:{s}: {why}"));
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("unterminated '[' in IPv6 address"))?;
            let port = after.strip_prefix(':').ok_or_else(|| bad("missing port"))?;
            let ip: std::net::Ipv6Addr = host.parse().map_err(|_| bad("bad IPv6 address"))?;
            (ip.to_string(), port)
        } else {
            if s.matches(':').count() > 1 {
                return Err(bad("IPv6 addresses must be in brackets, e.g. [::1]:9999"));
            }
            let (host, port) = s.split_once(':').ok_or_else(|| bad("missing port"))?;
            (host.to_ascii_lowercase(), port)
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if port.is_empty() {
            return Err(bad("missing port"));
        }
        let port: u16 = match port.parse() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad("port must be a number in 1..=65535")),
        };
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_') {
            return Err(bad("bad host name"));
        }
        Ok(HostPort { host, port, ip })
    }

    /// The address to send to: the literal, or the first resolved one.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Some(ip) = self.ip {
            return Ok(SocketAddr::new(ip, self.port));
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} does not resolve", self.host)))
    }
}

impl HostPort {
    /// At subscribe time: an IP literal must be allowed by the destination
    /// policy (a name is checked after each resolution, [`resolve_allowed`](Self::resolve_allowed)).
    pub fn check(&self, proto: &str, policy: &Destinations) -> Result<(), EventError> {
        match self.ip {
            Some(ip) => policy.check_ip(ip).map_err(|e| EventError::DestinationRefused(format!("{proto}:{self}: {e}"))),
            None => Ok(()),
        }
    }

    /// [`resolve`](Self::resolve), then the policy's check of the address
    /// the name resolved to (so DNS cannot point a subscriber elsewhere).
    pub async fn resolve_allowed(&self, policy: &Destinations) -> Result<SocketAddr, SinkError> {
        let addr = self.resolve().await?;
        let checked = match self.ip {
            Some(ip) => policy.check_ip(ip),
            None => policy.check_resolved(&self.host, addr.ip()),
        };
        checked.map_err(SinkError::Other)?;
        Ok(addr)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(IpAddr::V6(_)) => write!(f, "[{}]:{}", self.host, self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}
