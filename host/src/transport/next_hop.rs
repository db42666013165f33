//! [`NextHop`]: an explicit place to send a request, instead of resolving its top Route or
//! Request-URI (RFC 3261 16.6 step 7), as the registrar's `received` for a NAT'd contact.
//!
//! A hop is parsed once, where it enters the host (the REGISTER's source address, a route's
//! event parameter), so the per-branch path only copies it. Text forms accepted, all in use
//! today:
//! - `udp:HOST[:PORT]`, `tcp:HOST[:PORT]`: the canonical form ([`Display`](fmt::Display)),
//!   as the registrar records `received` and the location database stores it;
//! - `sip:HOST[:PORT][;transport=tcp]`: as OpenSIPS writes `received` (the `E_UL_*` events'
//!   parameter, [`NextHop::sip_uri`]);
//! - a bare `HOST[:PORT]`: UDP.
//!
//! HOST is an IP literal (IPv6 in brackets, or bare when no port follows) or a DNS name.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::Proto;
use crate::sip::Uri;

/// Where a request goes: transport, host and port.
///
/// The host is typed ([`Host::Ip`] or [`Host::Name`]) so the common case, an IP literal,
/// becomes a socket address without parsing or allocating per branch; a name is kept as
/// written and resolved by the sender, which for DNS (RFC 3263) needs the transport and
/// whether a port was given. Hence `port` stays `None` when the text had none:
/// [`NextHop::port_or_default`] gives the transport's default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// Transport to send with.
    pub proto: Proto,
    /// IP literal or name.
    pub host: Host,
    /// Port, when the text gave one.
    pub port: Option<u16>,
}

/// The host of a [`NextHop`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal (IPv4-mapped IPv6 kept as written).
    Ip(IpAddr),
    /// A DNS name, resolved when sent (`[A-Za-z0-9._-]`, as a SIP URI host).
    Name(Box<str>),
}

/// Why a next hop's text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("next hop {input:?}: {why}")]
pub struct NextHopError {
    input: String,
    why: Cow<'static, str>,
}

impl NextHop {
    /// A hop to a socket address (the source of a request).
    pub fn from_addr(proto: Proto, addr: SocketAddr) -> NextHop {
        NextHop { proto, host: Host::Ip(addr.ip()), port: Some(addr.port()) }
    }

    /// The port, or the transport's default when none was given.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or_else(|| default_port(self.proto))
    }

    /// The socket address when the host is an IP literal (no resolution needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host.socket_addr(self.port_or_default())
    }

    /// The hop as OpenSIPS writes `received`: `sip:HOST[:PORT]`, with `;transport=tcp` for
    /// anything but UDP.
    pub fn sip_uri(&self) -> impl fmt::Display + '_ {
        SipUri(self)
    }
}

/// RFC 3261 19.1.2 (and 18.2.1): 5060 for UDP and TCP. TLS (5061) and WebSocket (80/443,
/// RFC 7118) get theirs here when they are added.
fn default_port(proto: Proto) -> u16 {
    match proto {
        Proto::Udp | Proto::Tcp => 5060,
    }
}

impl Host {
    /// A host as a SIP URI or Via carries it, already checked by their parsers: an IP
    /// literal (IPv6 with or without brackets) or else a name.
    pub fn from_uri_host(host: &str) -> Host {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.into()),
        }
    }

    /// The socket address at `port` when this is an IP literal.
    pub fn socket_addr(&self, port: u16) -> Option<SocketAddr> {
        match self {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, port)),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// As in a URI: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for NextHop {
    /// The canonical `proto:host[:port]` (IPv6 in brackets), which parses back to the same hop.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

struct SipUri<'a>(&'a NextHop);

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hop = self.0;
        write!(f, "sip:{}", hop.host)?;
        if let Some(port) = hop.port {
            write!(f, ":{port}")?;
        }
        match hop.proto {
            Proto::Udp => Ok(()),
            proto => write!(f, ";transport={proto}"),
        }
    }
}

impl FromStr for NextHop {
    type Err = NextHopError;

    /// Parses any of the forms in the module docs (surrounding whitespace ignored; scheme,
    /// transport and names case-insensitive as written).
    fn from_str(text: &str) -> Result<NextHop, NextHopError> {
        let bad = |why: &'static str| NextHopError { input: text.to_owned(), why: Cow::Borrowed(why) };
        let s = text.trim();
        let (head, rest) = s.split_once(':').unwrap_or(("", s));
        if head.eq_ignore_ascii_case("sip") {
            return parse_sip_uri(s).map_err(|why| NextHopError { input: text.to_owned(), why });
        }
        if head.eq_ignore_ascii_case("sips") {
            return Err(bad("sips: needs TLS, which is not supported"));
        }
        let (proto, hostport) = match Proto::from_name(head) {
            Some(proto) => (proto, rest),
            // A transport this build cannot send on (tls, ws, wss, sctp): say so rather than
            // taking the name for a host.
            None if is_transport_name(head) => return Err(bad("unsupported transport")),
            None => (Proto::Udp, s),
        };
        let (host, port) = split_host_port(hostport).map_err(bad)?;
        Ok(NextHop { proto, host, port })
    }
}

/// Transport names a next hop may carry later (RFC 3261 `transport-param`, RFC 7118).
fn is_transport_name(name: &str) -> bool {
    ["tls", "ws", "wss", "sctp"].iter().any(|t| name.eq_ignore_ascii_case(t))
}

/// `sip:HOST[:PORT][;transport=T]` (a user part, if any, is ignored).
fn parse_sip_uri(s: &str) -> Result<NextHop, Cow<'static, str>> {
    let uri = Uri::parse(s).map_err(|e| Cow::Owned(e.to_string()))?;
    let proto = match uri.param("transport") {
        Some(Some(t)) => Proto::from_name(t).ok_or(Cow::Borrowed("unsupported transport"))?,
        Some(None) => return Err(Cow::Borrowed("transport parameter without a value")),
        None => Proto::Udp,
    };
    if uri.port == Some(0) {
        return Err(Cow::Borrowed("bad port"));
    }
    let host = parse_host(uri.host).map_err(Cow::Borrowed)?;
    Ok(NextHop { proto, host, port: uri.port })
}

/// `HOST[:PORT]`: `[v6]` or `[v6]:port`; a bare v6 (several colons) has no port.
fn split_host_port(s: &str) -> Result<(Host, Option<u16>), &'static str> {
    let port_of = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or("bad port");
    if s.is_empty() {
        return Err("no host");
    }
    if let Some(inner) = s.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or("unclosed [")?;
        let port = match after {
            "" => None,
            p => Some(port_of(p.strip_prefix(':').ok_or("junk after ]")?)?),
        };
        let ip = addr.parse::<std::net::Ipv6Addr>().map_err(|_| "bad IPv6 address in []")?;
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    if s.matches(':').count() > 1 {
        let ip = s.parse::<std::net::Ipv6Addr>().map_err(|_| "bad IPv6 address (a port needs [addr]:port)")?;
        return Ok((Host::Ip(IpAddr::V6(ip)), None));
    }
    match s.split_once(':') {
        Some((host, port)) => Ok((parse_host(host)?, Some(port_of(port)?))),
        None => Ok((parse_host(s)?, None)),
    }
}

/// An IP literal (IPv6 in brackets) or a name of SIP URI host characters.
fn parse_host(host: &str) -> Result<Host, &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unclosed [")?;
        return inner.parse::<std::net::Ipv6Addr>().map(|ip| Host::Ip(IpAddr::V6(ip))).map_err(|_| "bad IPv6 address");
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if host.is_empty() {
        return Err("no host");
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err("bad host (an IP literal or a DNS name)");
    }
    Ok(Host::Name(host.into()))
}

impl serde::Serialize for NextHop {
    /// As its canonical text: what the location database has always stored.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NextHop {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NextHop, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn hop(text: &str) -> NextHop {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn ip(proto: Proto, ip: impl Into<IpAddr>, port: Option<u16>) -> NextHop {
        NextHop { proto, host: Host::Ip(ip.into()), port }
    }

    fn name(proto: Proto, name: &str, port: Option<u16>) -> NextHop {
        NextHop { proto, host: Host::Name(name.into()), port }
    }

    const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    #[test]
    fn proto_prefixed_forms() {
        assert_eq!(hop("udp:192.0.2.7:5080"), ip(Proto::Udp, V4, Some(5080)));
        assert_eq!(hop("tcp:192.0.2.7"), ip(Proto::Tcp, V4, None));
        assert_eq!(hop("TCP:[2001:db8::2]:5062"), ip(Proto::Tcp, V6, Some(5062)));
        assert_eq!(hop("udp:[2001:db8::2]"), ip(Proto::Udp, V6, None));
        assert_eq!(hop("udp:2001:db8::2"), ip(Proto::Udp, V6, None));
        assert_eq!(hop("udp:::1"), ip(Proto::Udp, Ipv6Addr::LOCALHOST, None));
        assert_eq!(hop(" tcp:proxy.example.com:5070 "), name(Proto::Tcp, "proxy.example.com", Some(5070)));
    }

    #[test]
    fn sip_uri_forms() {
        assert_eq!(hop("sip:192.0.2.7:5060"), ip(Proto::Udp, V4, Some(5060)));
        assert_eq!(hop("sip:192.0.2.7:5060;transport=tcp"), ip(Proto::Tcp, V4, Some(5060)));
        assert_eq!(hop("SIP:[2001:db8::2]:5062;transport=UDP"), ip(Proto::Udp, V6, Some(5062)));
        assert_eq!(hop("sip:edge.example.com"), name(Proto::Udp, "edge.example.com", None));
        assert_eq!(hop("sip:alice@192.0.2.7:5062"), ip(Proto::Udp, V4, Some(5062)));
    }

    #[test]
    fn bare_forms_are_udp() {
        assert_eq!(hop("192.0.2.7:5080"), ip(Proto::Udp, V4, Some(5080)));
        assert_eq!(hop("192.0.2.7"), ip(Proto::Udp, V4, None));
        assert_eq!(hop("[2001:db8::2]:5062"), ip(Proto::Udp, V6, Some(5062)));
        assert_eq!(hop("2001:db8::2"), ip(Proto::Udp, V6, None));
        assert_eq!(hop("::1"), ip(Proto::Udp, Ipv6Addr::LOCALHOST, None));
        assert_eq!(hop("edge.example.com:5060"), name(Proto::Udp, "edge.example.com", Some(5060)));
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (text, canonical) in [
            ("udp:192.0.2.7:5080", "udp:192.0.2.7:5080"),
            ("tcp:[2001:db8::2]:5062", "tcp:[2001:db8::2]:5062"),
            ("udp:2001:db8::2", "udp:[2001:db8::2]"),
            ("sip:192.0.2.7:5060;transport=tcp", "tcp:192.0.2.7:5060"),
            ("192.0.2.7", "udp:192.0.2.7"),
            ("edge.example.com:5070", "udp:edge.example.com:5070"),
        ] {
            let h = hop(text);
            assert_eq!(h.to_string(), canonical, "{text}");
            assert_eq!(hop(canonical), h, "{canonical}");
        }
    }

    #[test]
    fn from_addr_writes_what_the_registrar_always_stored() {
        let v4 = NextHop::from_addr(Proto::Udp, SocketAddr::new(V4.into(), 40000));
        assert_eq!(v4.to_string(), format!("udp:{}", SocketAddr::new(V4.into(), 40000)));
        let v6 = NextHop::from_addr(Proto::Tcp, SocketAddr::new(V6.into(), 5062));
        assert_eq!(v6.to_string(), "tcp:[2001:db8::2]:5062");
        assert_eq!(v6.socket_addr(), Some(SocketAddr::new(V6.into(), 5062)));
    }

    #[test]
    fn sip_uri_is_the_opensips_received() {
        assert_eq!(hop("udp:192.0.2.7:5060").sip_uri().to_string(), "sip:192.0.2.7:5060");
        assert_eq!(hop("tcp:[2001:db8::2]:5062").sip_uri().to_string(), "sip:[2001:db8::2]:5062;transport=tcp");
        let h = hop("tcp:192.0.2.7:5070");
        assert_eq!(hop(&h.sip_uri().to_string()), h);
    }

    #[test]
    fn default_ports_and_addresses() {
        assert_eq!(hop("tcp:192.0.2.7").port_or_default(), 5060);
        assert_eq!(hop("udp:192.0.2.7").socket_addr(), Some(SocketAddr::new(V4.into(), 5060)));
        assert_eq!(hop("udp:edge.example.com").socket_addr(), None);
        assert_eq!(Host::from_uri_host("[::1]"), Host::Ip(Ipv6Addr::LOCALHOST.into()));
        assert_eq!(Host::from_uri_host("p1.example.com"), Host::Name("p1.example.com".into()));
    }

    #[test]
    fn bad_inputs_say_why() {
        for (text, why) in [
            ("", "no host"),
            ("udp:", "no host"),
            ("tcp:192.0.2.7:0", "bad port"),
            ("udp:192.0.2.7:x", "bad port"),
            ("192.0.2.7:70000", "bad port"),
            ("udp:[2001:db8::2", "unclosed ["),
            ("udp:[2001:db8::2]5060", "junk after ]"),
            ("udp:[example.com]:5060", "bad IPv6 address in []"),
            ("udp:2001:db8::zz", "bad IPv6 address"),
            ("udp:bad host:5060", "bad host"),
            ("udp:a;b=c", "bad host"),
            ("bob@192.0.2.7", "bad host"),
            ("udp:a@b:5", "bad host"),
            ("sip:192.0.2.7;transport=sctp", "unsupported transport"),
            ("tls:192.0.2.7:5061", "unsupported transport"),
            ("wss:edge.example.com", "unsupported transport"),
            ("sips:192.0.2.7", "sips: needs TLS"),
            ("sip:192.0.2.7;transport=tls", "unsupported transport"),
            ("sip:192.0.2.7:0", "bad port"),
            ("sip:", "URI"),
        ] {
            let err = text.parse::<NextHop>().expect_err(text).to_string();
            assert!(err.starts_with(&format!("next hop {text:?}: ")), "{text}: {err}");
            assert!(err.contains(why), "{text}: {err} (expected {why:?})");
        }
    }

    #[test]
    fn serde_stores_the_canonical_text_and_reads_every_form() {
        let h = hop("udp:[2001:db8::2]:5062");
        assert_eq!(serde_json::to_string(&h).expect("json"), "\"udp:[2001:db8::2]:5062\"");
        assert_eq!(serde_json::from_str::<NextHop>("\"udp:[2001:db8::2]:5062\"").expect("json"), h);
        assert_eq!(serde_json::from_str::<NextHop>("\"sip:192.0.2.7:5060\"").expect("json"), hop("udp:192.0.2.7:5060"));
        assert!(serde_json::from_str::<NextHop>("\"udp:\"").is_err());
    }
}
