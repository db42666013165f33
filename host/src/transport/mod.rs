//! Transports: UDP and TCP listeners and senders (TLS and WebSocket later).
//!
//! This layer owns sockets and nothing SIP-semantic beyond framing: it turns datagrams and
//! framed stream messages into [`sip::Message`]s handed to an [`InboundHandler`], and sends
//! bytes to a `(Proto, SocketAddr)`. TCP connections are kept in a table keyed by the
//! remote address, so responses and requests towards a peer reuse the connection it opened
//! (RFC 3261 section 18.2.2, connection reuse).
//!
//! Two steps, because the proxy core both sends through the transports and is the handler of
//! what they receive: [`Transports::bind`] opens the sockets and returns the sending side
//! ([`Transports`], which the core is built with) and the receiving side ([`Listeners`]);
//! [`Listeners::start`] then starts the receive loops with the handler. Nothing is read before
//! that, so no message arrives before there is someone to hand it to.
//!
//! The receive loops run under a [`Shutdown`]: on its signal they stop reading and close the
//! sockets (UDP sockets, listening sockets, every TCP connection after writing what is queued
//! on it), and [`Shutdown::stop`] returns once they all have. Sends after that fail with
//! [`SendError::Stopped`].
//!
//! # Layout
//! - this file: [`Proto`], [`ListenSpec`], [`Inbound`], [`InboundHandler`], [`Transports`],
//!   [`Listeners`];
//! - [`udp`]: one socket per listen address, its receive loop, non-blocking sends;
//! - [`tcp`]: accept loops, the connection table, per-connection read/write task with framing;
//! - [`tcp_limits`]: `[tcp]` ([`TcpConfig`]): per-IP connection limit, read and idle timeouts;
//! - [`memory`]: a wire in place of sockets for the sample harness ([`Transports::memory`]).

pub mod memory;
mod next_hop;
mod tcp;
mod tcp_limits;
mod udp;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::shutdown::Shutdown;
use crate::sip;

pub use next_hop::{Host, NextHop, NextHopError};
pub use tcp_limits::TcpConfig;

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// RFC 768 datagrams; unreliable (transactions retransmit).
    Udp,
    /// RFC 793 streams; reliable (no retransmissions, zero-length wait timers).
    Tcp,
}

impl Proto {
    /// Lower-case name as used in listen specs and `;transport=` parameters: "udp" / "tcp".
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// Upper-case name as used in a Via header ("UDP" / "TCP").
    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    /// Parses a transport name case-insensitively ("udp", "TCP"); `None` for others (tls, ws...).
    pub fn from_name(name: &str) -> Option<Proto> {
        if name.eq_ignore_ascii_case("udp") {
            Some(Proto::Udp)
        } else if name.eq_ignore_ascii_case("tcp") {
            Some(Proto::Tcp)
        } else {
            None
        }
    }

    /// True for stream transports, where RFC 3261 sets timers I, J, K and D to zero.
    pub fn is_reliable(self) -> bool {
        self == Proto::Tcp
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One address to listen on, parsed from `"udp:127.0.0.1:5060"` or `"tcp:[::1]:5060"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    /// Transport of the listener.
    pub proto: Proto,
    /// Local address (port 0 picks a free port; [`Transports::listeners`] reports the real one).
    pub addr: SocketAddr,
}

/// Why a [`ListenSpec`] could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenSpecError {
    /// No `proto:` prefix.
    #[error("listen spec {0:?} must look like \"udp:127.0.0.1:5060\" or \"tcp:[::1]:5060\"")]
    Shape(String),
    /// The prefix is not a supported transport.
    #[error("unsupported transport {0:?} in listen spec (udp and tcp are supported)")]
    Proto(String),
    /// The address is not `ip:port` (IPv6 in brackets).
    #[error("bad address {0:?} in listen spec (expected ip:port, IPv6 as [addr]:port)")]
    Addr(String),
}

impl FromStr for ListenSpec {
    type Err = ListenSpecError;

    fn from_str(s: &str) -> Result<ListenSpec, ListenSpecError> {
        let s = s.trim();
        let (proto, addr) = s.split_once(':').ok_or_else(|| ListenSpecError::Shape(s.to_owned()))?;
        let proto = Proto::from_name(proto).ok_or_else(|| ListenSpecError::Proto(proto.to_owned()))?;
        let addr = addr.parse::<SocketAddr>().map_err(|_| ListenSpecError::Addr(addr.to_owned()))?;
        Ok(ListenSpec { proto, addr })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}

impl<'de> serde::Deserialize<'de> for ListenSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ListenSpec, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One received message and where it came from.
#[derive(Clone, Debug)]
pub struct Inbound {
    /// The parsed message (owns the received bytes).
    pub msg: sip::Message,
    /// Remote address (for TCP: the connection's peer, which keys the connection table).
    pub src: SocketAddr,
    /// Transport it arrived on.
    pub proto: Proto,
    /// Local address of the listener (or connection) it arrived on.
    pub local: SocketAddr,
}

/// Receives what the transports read. Called from receive loops: implementations must not
/// block or await anything slow (spawn instead).
pub trait InboundHandler: Send + Sync + 'static {
    /// A message that parsed.
    fn on_message(&self, inbound: Inbound);
    /// Bytes that did not parse as a SIP message (a candidate for a `400`).
    fn on_malformed(&self, raw: Bytes, err: sip::ParseError, src: SocketAddr, proto: Proto);
}

/// Why [`Transports::send`] failed. Sending never blocks: a full queue is an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No listener of this transport is configured.
    #[error("no {0} listener configured")]
    NoListener(Proto),
    /// The per-connection send queue is full (the peer does not read fast enough).
    #[error("send queue to {0} is full")]
    QueueFull(SocketAddr),
    /// Too many TCP connections are open to open another one.
    #[error("TCP connection limit reached, cannot connect to {0}")]
    TooManyConnections(SocketAddr),
    /// The message is larger than a datagram can carry.
    #[error("message of {0} bytes is too large for UDP")]
    TooLarge(usize),
    /// The transport's receiving side is not running: it has shut down (its sockets are
    /// closed), or its [`Listeners`] were dropped without being started (so a new TCP
    /// connection could not be read).
    #[error("the {0} transport is not running")]
    Stopped(Proto),
    /// The operating system refused the send.
    #[error("send to {addr} failed: {reason}")]
    Io {
        /// Destination.
        addr: SocketAddr,
        /// The OS error text.
        reason: String,
    },
}

/// Counters of the transport layer (monotonic since start).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// UDP datagrams dropped because the socket buffer was full (WouldBlock).
    pub(crate) udp_send_drops: AtomicU64,
    /// Messages (or streams) that failed to parse.
    pub(crate) malformed: AtomicU64,
    /// TCP connections closed at accept: their IP had `max_connections_per_ip`.
    pub(crate) tcp_refused_per_ip: AtomicU64,
    /// TCP connections closed by a `[tcp]` timeout (message read, idle, keep-alives only).
    pub(crate) tcp_timeouts: AtomicU64,
}

/// Snapshot of the transport counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// UDP sends dropped because the socket buffer was full.
    pub udp_send_drops: u64,
    /// Messages that failed to parse.
    pub malformed: u64,
    /// Open TCP connections.
    pub tcp_connections: usize,
    /// TCP connections refused: too many from their IP.
    pub tcp_refused_per_ip: u64,
    /// TCP connections closed by a `[tcp]` timeout.
    pub tcp_timeouts: u64,
}

/// The sending side of the bound transports. Cheap to clone. The sockets close when the
/// receive loops stop (on their [`Shutdown`]), however many clones are left.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every listener with its real bound address, in configuration order.
    listeners: Vec<ListenSpec>,
    udp: Vec<Arc<udp::UdpListener>>,
    tcp: Option<tcp::TcpSide>,
    /// Set for [`Transports::memory`]: every send goes to the wire instead.
    memory: Option<memory::MemorySide>,
    /// Host used in Via/Record-Route when a listener is bound to an unspecified address.
    advertised_ip: Option<IpAddr>,
    /// DNS names that are this proxy (`[server] domains`, OpenSIPS `alias`).
    aliases: Vec<String>,
    counters: Arc<Counters>,
}

/// The receiving side of the bound transports, not reading yet: hand it the handler with
/// [`start`](Listeners::start). UDP datagrams that arrive before then wait in the socket's
/// buffer, TCP connections in the listen backlog.
#[must_use = "nothing is received until the listeners are started"]
pub struct Listeners {
    udp: Vec<Arc<udp::UdpListener>>,
    tcp: Option<tcp::TcpReceiver>,
    counters: Arc<Counters>,
}

impl Listeners {
    /// Starts every receive loop (one per UDP socket, one accept loop per TCP listener, the
    /// connector that opens the TCP connections `send` needs, and one task per connection);
    /// what they read goes to `handler`. They are spawned under `shutdown` and end on its
    /// signal, closing their sockets: [`Shutdown::stop`] returns when they all have.
    pub fn start(self, handler: Arc<dyn InboundHandler>, shutdown: &Shutdown) {
        for l in &self.udp {
            shutdown.spawn(udp::receive(l.clone(), handler.clone(), self.counters.clone(), shutdown.clone()));
        }
        if let Some(tcp) = self.tcp {
            tcp.start(handler, shutdown);
        }
    }
}

impl Transports {
    /// Binds every listener; fails if any bind fails. Returns the sending side, usable at
    /// once, and the receiving side, which reads nothing until [`Listeners::start`].
    pub async fn bind(listen: &[ListenSpec]) -> anyhow::Result<(Transports, Listeners)> {
        Transports::bind_with(listen, &TcpConfig::default()).await
    }

    /// [`bind`](Self::bind), with TCP connections limited by `tcp` (`[tcp]`).
    pub async fn bind_with(listen: &[ListenSpec], tcp: &TcpConfig) -> anyhow::Result<(Transports, Listeners)> {
        anyhow::ensure!(!listen.is_empty(), "no listen address configured");
        let counters = Arc::new(Counters::default());
        let mut listeners = Vec::with_capacity(listen.len());
        let mut udp_socks = Vec::new();
        let mut tcp_listeners = Vec::new();
        for spec in listen {
            match spec.proto {
                Proto::Udp => {
                    let l = udp::UdpListener::bind(spec.addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot bind {spec}: {e}"))?;
                    listeners.push(ListenSpec { proto: Proto::Udp, addr: l.local });
                    udp_socks.push(Arc::new(l));
                }
                Proto::Tcp => {
                    let l = tokio::net::TcpListener::bind(spec.addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot bind {spec}: {e}"))?;
                    let local = l.local_addr()?;
                    listeners.push(ListenSpec { proto: Proto::Tcp, addr: local });
                    tcp_listeners.push((l, local));
                }
            }
        }
        let advertised_ip = listeners.iter().any(|l| l.addr.ip().is_unspecified()).then(primary_ip);
        let (tcp, tcp_receiver) = if tcp_listeners.is_empty() {
            (None, None)
        } else {
            let (side, receiver) = tcp::TcpSide::new(tcp_listeners, counters.clone(), tcp.clone());
            (Some(side), Some(receiver))
        };
        for l in &listeners {
            tracing::info!(listen = %l, "listening");
        }
        let receiving = Listeners { udp: udp_socks.clone(), tcp: tcp_receiver, counters: counters.clone() };
        let sending = Transports {
            inner: Arc::new(Inner {
                listeners,
                udp: udp_socks,
                tcp,
                memory: None,
                advertised_ip,
                aliases: Vec::new(),
                counters,
            }),
        };
        Ok((sending, receiving))
    }

    /// Transports that open no socket: `listen` are the addresses the proxy
    /// believes it has (for Via, Record-Route, `is_local`; port 0 is kept as
    /// given), and everything sent over either protocol is queued on the
    /// returned [`MemoryWire`](memory::MemoryWire). Inbound messages are handed
    /// to the core's [`InboundHandler`] by whoever drives the wire.
    pub fn memory(listen: &[ListenSpec]) -> anyhow::Result<(Transports, memory::MemoryWire)> {
        anyhow::ensure!(!listen.is_empty(), "no listen address configured");
        let (side, wire) = memory::MemorySide::new();
        let inner = Inner {
            listeners: listen.to_vec(),
            udp: Vec::new(),
            tcp: None,
            memory: Some(side),
            advertised_ip: None,
            aliases: Vec::new(),
            counters: Arc::new(Counters::default()),
        };
        Ok((Transports { inner: Arc::new(inner) }, wire))
    }

    /// The listener a message to `dst` over `proto` leaves from (the first of
    /// that transport, as for sockets).
    fn memory_source(&self, proto: Proto) -> Option<SocketAddr> {
        self.inner.listeners.iter().find(|l| l.proto == proto).map(|l| l.addr)
    }

    /// Sends `bytes` to `dst`. Never blocks: UDP uses a non-blocking send (a full socket
    /// buffer drops the datagram and counts it, as UDP may drop); TCP queues on the
    /// connection to `dst`, opening one if there is none.
    pub fn send(&self, proto: Proto, dst: SocketAddr, bytes: Bytes) -> Result<(), SendError> {
        if let Some(wire) = &self.inner.memory {
            let src = self.memory_source(proto).ok_or(SendError::NoListener(proto))?;
            return wire.send(proto, src, dst, bytes);
        }
        match proto {
            Proto::Udp => {
                let sock = udp::pick(&self.inner.udp, dst).ok_or(SendError::NoListener(Proto::Udp))?;
                sock.send(dst, &bytes, &self.inner.counters)
            }
            Proto::Tcp => match &self.inner.tcp {
                Some(tcp) => tcp.send(dst, bytes, None),
                None => Err(SendError::NoListener(Proto::Tcp)),
            },
        }
    }

    /// [`send`](Self::send), and over TCP `on_failure` runs if the connection the message
    /// was queued on fails to open (a refused or timed-out connect), which `send` cannot
    /// report: it returns before the connect ends. A client transaction turns that into a
    /// transport error (RFC 3261 17.1.4) instead of waiting for its timeout.
    pub fn send_or_report(
        &self,
        proto: Proto,
        dst: SocketAddr,
        bytes: Bytes,
        on_failure: impl FnOnce() + Send + 'static,
    ) -> Result<(), SendError> {
        match (proto, &self.inner.tcp) {
            (Proto::Tcp, Some(tcp)) => tcp.send(dst, bytes, Some(Box::new(on_failure))),
            _ => self.send(proto, dst, bytes),
        }
    }

    /// The `(host, port)` this proxy puts in Via and Record-Route for `proto`: the first
    /// listener of that transport (of any transport if none). IPv6 hosts come bracketed
    /// (`"[::1]"`) so `format!("{host}:{port}")` is valid; an unspecified bind address is
    /// replaced by the host's primary address.
    pub fn sent_by(&self, proto: Proto) -> (String, u16) {
        let l =
            self.inner.listeners.iter().find(|l| l.proto == proto).or_else(|| self.inner.listeners.first()).copied();
        let Some(l) = l else { return ("127.0.0.1".to_owned(), 5060) };
        let ip = match l.addr.ip() {
            ip if ip.is_unspecified() => self.inner.advertised_ip.unwrap_or(ip),
            ip => ip,
        };
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        (host, l.addr.port())
    }

    /// Names `aliases` as this proxy too (`[server] domains`): a URI naming one, with a
    /// listener's port, is local. Call before the transports are shared.
    pub fn with_aliases(mut self, aliases: &[String]) -> Transports {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.aliases = aliases.iter().map(|a| a.trim_end_matches('.').to_ascii_lowercase()).collect()
            }
            None => tracing::error!("transport aliases set after the transports were shared: ignored"),
        }
        self
    }

    /// Is `host[:port]` this proxy? True when some listener's address matches (port `None`
    /// means 5060), and for `localhost` or one of the aliases when a listener has that port
    /// (a loopback one, for `localhost`). A listener on an unspecified address matches
    /// loopback and the advertised primary address.
    pub fn is_local(&self, host: &str, port: Option<u16>) -> bool {
        let port = port.unwrap_or(5060);
        let host = host.trim();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let ip = bare.parse::<IpAddr>().ok();
        if ip.is_none() {
            let name = bare.trim_end_matches('.');
            if self.inner.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                return self.inner.listeners.iter().any(|l| l.addr.port() == port);
            }
        }
        let is_localhost =
            ip.is_none() && (bare.eq_ignore_ascii_case("localhost") || bare.eq_ignore_ascii_case("localhost."));
        self.inner.listeners.iter().filter(|l| l.addr.port() == port).any(|l| {
            let lip = l.addr.ip();
            match ip {
                Some(ip) => {
                    ip == lip || (lip.is_unspecified() && (ip.is_loopback() || Some(ip) == self.inner.advertised_ip))
                }
                None => is_localhost && (lip.is_loopback() || lip.is_unspecified()),
            }
        })
    }

    /// Every listener with its actual bound address (port 0 resolved), in configuration order.
    pub fn listeners(&self) -> &[ListenSpec] {
        &self.inner.listeners
    }

    /// A snapshot of the transport counters.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            udp_send_drops: self.inner.counters.udp_send_drops.load(Ordering::Relaxed),
            malformed: self.inner.counters.malformed.load(Ordering::Relaxed),
            tcp_connections: self.inner.tcp.as_ref().map_or(0, |t| t.connection_count()),
            tcp_refused_per_ip: self.inner.counters.tcp_refused_per_ip.load(Ordering::Relaxed),
            tcp_timeouts: self.inner.counters.tcp_timeouts.load(Ordering::Relaxed),
        }
    }
}

/// The address the host would use for outbound traffic, used in Via when bound to
/// 0.0.0.0. A connected UDP socket sends nothing; connect only selects a route.
fn primary_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?; // TEST-NET-1: never routed on the Internet
        Ok(s.local_addr()?.ip())
    };
    probe().ok().filter(|ip| !ip.is_unspecified()).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;
