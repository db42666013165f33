//! Flood detection by source IP, after OpenSIPS's pike module: requests are
//! counted per source address in sampling units; an address that sends more
//! than `reqs_density_per_unit` requests in one unit is blocked (its requests
//! are dropped unanswered) until a whole unit passes below the limit, and
//! `E_PIKE_BLOCKED` (param `ip`) is raised when it becomes blocked.
//!
//! It sits in front of the proxy core as an [`InboundHandler`] decorator, so
//! a flood is shed before any transaction or route instance is created.
//! Responses are never counted or blocked, nor are requests from the
//! `trusted` networks (OpenSIPS/Kamailio whitelist pike's check with the
//! permissions module's trusted table): a peer whose address an attacker
//! forges cannot be blocked by the forgery.
//!
//! Unless `[pike] enabled` is set, pike is on exactly when a SIP listener is
//! not on a loopback address ([`PikeConfig::enabled_for`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use crate::events::{Event, EventBus, Params, Value};
use crate::sip::ParseError;
use crate::transport::{Inbound, InboundHandler, ListenSpec, Proto};
use ipnet::IpNet;

/// The `[pike]` table of `sipbox.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PikeConfig {
    /// On or off; not set: on when any SIP listener is not loopback (secure by default
    /// where attackers can reach it), off otherwise.
    pub enabled: Option<bool>,
    /// Networks never counted nor blocked ("10.0.0.0/8", "2001:db8::/32", or one address):
    /// trunks and peers whose source an attacker could forge.
    pub trusted: Vec<String>,
    /// Length of one sampling unit, in seconds (OpenSIPS `sampling_time_unit`).
    pub sampling_time_unit: u64,
    /// Requests one IP may send per unit (OpenSIPS `reqs_density_per_unit`).
    pub reqs_density_per_unit: u32,
    /// Seconds an idle address is remembered (OpenSIPS `remove_latency`).
    pub remove_latency: u64,
}

impl Default for PikeConfig {
    fn default() -> Self {
        PikeConfig {
            enabled: None,
            trusted: Vec::new(),
            sampling_time_unit: 2,
            reqs_density_per_unit: 30,
            remove_latency: 120,
        }
    }
}

impl PikeConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.sampling_time_unit >= 1, "pike.sampling_time_unit must be at least 1");
        anyhow::ensure!(self.reqs_density_per_unit >= 1, "pike.reqs_density_per_unit must be at least 1");
        self.trusted_nets()?;
        Ok(())
    }

    /// `trusted`, parsed: a bare address is a network of one.
    pub fn trusted_nets(&self) -> anyhow::Result<Vec<IpNet>> {
        crate::config::parse_nets("pike.trusted", &self.trusted)
    }

    /// Whether pike runs in front of listeners `listen`: `enabled` when set, else on when
    /// any listener is not loopback. Logs the decision and why.
    pub fn enabled_for(&self, listen: &[ListenSpec]) -> bool {
        let exposed = listen.iter().find(|l| !l.addr.ip().is_loopback());
        let (on, why) = match (self.enabled, exposed) {
            (Some(on), _) => (on, "[pike] enabled"),
            (None, Some(_)) => (true, "a SIP listener is not loopback"),
            (None, None) => (false, "every SIP listener is loopback"),
        };
        tracing::info!(
            enabled = on,
            trusted = self.trusted.len(),
            "pike flood detection {}: {why}",
            if on { "on" } else { "off" }
        );
        on
    }
}

/// Most addresses tracked at once; beyond it the idle ones are purged early,
/// and if all are active new addresses pass uncounted (memory stays bounded
/// under a spoofed-source flood).
const MAX_TRACKED: usize = 100_000;

struct Track {
    unit_start: Instant,
    count: u32,
    blocked: bool,
    last_seen: Instant,
}

/// Per-address counters, pure logic on explicit time (tested without sockets).
struct Counters {
    unit: Duration,
    limit: u32,
    idle: Duration,
    by_ip: HashMap<IpAddr, Track>,
}

/// What one request means for its source.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// Just crossed the limit: drop and raise the event.
    NewlyBlocked,
    Blocked,
}

impl Counters {
    fn new(cfg: &PikeConfig) -> Counters {
        Counters {
            unit: Duration::from_secs(cfg.sampling_time_unit),
            limit: cfg.reqs_density_per_unit,
            idle: Duration::from_secs(cfg.remove_latency.max(cfg.sampling_time_unit)),
            by_ip: HashMap::new(),
        }
    }

    fn hit(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.by_ip.len() >= MAX_TRACKED && !self.by_ip.contains_key(&ip) {
            self.purge(now);
            if self.by_ip.len() >= MAX_TRACKED {
                return Verdict::Pass;
            }
        }
        let unit = self.unit;
        let track = self.by_ip.entry(ip).or_insert(Track { unit_start: now, count: 0, blocked: false, last_seen: now });
        track.last_seen = now;
        if now.duration_since(track.unit_start) >= unit {
            // A new unit: an address stays blocked only while the unit that
            // just ended was over the limit too.
            let elapsed_units = now.duration_since(track.unit_start).as_nanos() / unit.as_nanos().max(1);
            if elapsed_units > 1 || track.count <= self.limit {
                track.blocked = false;
            }
            track.unit_start = now;
            track.count = 0;
        }
        track.count = track.count.saturating_add(1);
        if track.blocked {
            Verdict::Blocked
        } else if track.count > self.limit {
            track.blocked = true;
            Verdict::NewlyBlocked
        } else {
            Verdict::Pass
        }
    }

    fn purge(&mut self, now: Instant) {
        let idle = self.idle;
        self.by_ip.retain(|_, t| now.duration_since(t.last_seen) < idle);
    }

    fn blocked(&self) -> Vec<IpAddr> {
        self.by_ip.iter().filter(|(_, t)| t.blocked).map(|(ip, _)| *ip).collect()
    }
}

/// The flood detector in front of the proxy core.
pub struct Pike {
    inner: Arc<dyn InboundHandler>,
    counters: Mutex<Counters>,
    bus: EventBus,
    /// Never counted nor blocked.
    trusted: Vec<IpNet>,
}

impl Pike {
    /// Wraps `inner`; also starts the task that forgets idle addresses.
    pub fn new(cfg: &PikeConfig, inner: Arc<dyn InboundHandler>, bus: EventBus) -> Arc<Pike> {
        // Validated with the config; a bad entry here (a config built in code) trusts nobody.
        let trusted = cfg.trusted_nets().unwrap_or_default();
        let pike = Arc::new(Pike { inner, counters: Mutex::new(Counters::new(cfg)), bus, trusted });
        let weak = Arc::downgrade(&pike);
        let every = Duration::from_secs(cfg.remove_latency.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(pike) = weak.upgrade() else { break };
                pike.lock().purge(Instant::now());
            }
        });
        pike
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // The counters stay consistent even if a holder panicked mid-update
        // (each update is a few integer writes), so poisoning is ignored.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 source (a dual-stack socket) is its IPv4 address.
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Addresses blocked right now (MI `pike_list`).
    pub fn blocked(&self) -> Vec<IpAddr> {
        self.lock().blocked()
    }
}

impl InboundHandler for Pike {
    fn on_message(&self, inbound: Inbound) {
        if inbound.msg.is_request() && !self.is_trusted(inbound.src.ip()) {
            let ip = inbound.src.ip();
            let verdict = self.lock().hit(ip, Instant::now());
            match verdict {
                Verdict::Pass => {}
                Verdict::NewlyBlocked => {
                    tracing::warn!(%ip, "pike: request flood, blocking source");
                    let params = Params(vec![(Some("ip".into()), Value::Str(ip.to_string()))]);
                    self.bus.raise(Event { name: "E_PIKE_BLOCKED".into(), params });
                    return;
                }
                Verdict::Blocked => return,
            }
        }
        self.inner.on_message(inbound);
    }

    fn on_malformed(&self, raw: Bytes, err: ParseError, src: SocketAddr, proto: Proto) {
        // Garbage counts against its source too: a flood of it is a flood.
        if !self.is_trusted(src.ip()) && self.lock().hit(src.ip(), Instant::now()) != Verdict::Pass {
            return;
        }
        self.inner.on_malformed(raw, err, src, proto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(limit: u32) -> Counters {
        Counters::new(&PikeConfig {
            enabled: Some(true),
            sampling_time_unit: 2,
            reqs_density_per_unit: limit,
            remove_latency: 10,
            ..PikeConfig::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_above_density_and_unblocks_after_a_quiet_unit() {
        let mut c = counters(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(c.hit(ip, t0), Verdict::Pass);
        }
        assert_eq!(c.hit(ip, t0), Verdict::NewlyBlocked);
        assert_eq!(c.hit(ip, t0), Verdict::Blocked);
        assert_eq!(c.hit(other, t0), Verdict::Pass, "other sources unaffected");
        assert_eq!(c.blocked(), vec![ip]);
        // Next unit: the previous one was over the limit, so still blocked.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(c.hit(ip, t1), Verdict::Blocked);
        // A unit with traffic under the limit ends the block.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(c.hit(ip, t2), Verdict::Pass);
        assert!(c.blocked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_addresses_are_forgotten() {
        let mut c = counters(3);
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        c.hit(ip, t0);
        c.purge(t0 + Duration::from_secs(5));
        assert_eq!(c.by_ip.len(), 1);
        c.purge(t0 + Duration::from_secs(11));
        assert!(c.by_ip.is_empty());
    }

    /// Counts the requests that get through.
    struct Count(std::sync::atomic::AtomicUsize);

    impl InboundHandler for Count {
        fn on_message(&self, _inbound: Inbound) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn on_malformed(&self, _raw: Bytes, _err: ParseError, _src: SocketAddr, _proto: Proto) {}
    }

    fn inbound(src: &str) -> Inbound {
        let msg = crate::sip::Message::parse(Bytes::from_static(
            b"OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=f\r\n\
              To: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("valid");
        let src: SocketAddr = src.parse().expect("addr");
        Inbound { msg, src, proto: Proto::Udp, local: src }
    }

    #[tokio::test]
    async fn trusted_peers_are_never_counted_nor_blocked() {
        let cfg = PikeConfig {
            enabled: Some(true),
            trusted: vec!["192.0.2.0/24".into(), "2001:db8::1".into()],
            reqs_density_per_unit: 5,
            sampling_time_unit: 60,
            ..PikeConfig::default()
        };
        cfg.validate().expect("valid");
        let count = Arc::new(Count(Default::default()));
        let bus = EventBus::new(&crate::events::EventsConfig::default(), crate::events::SinkSchemes::new(), None)
            .expect("bus");
        let pike = Pike::new(&cfg, count.clone(), bus);
        // 199 packets forged with a trusted peer's address (also IPv4-mapped) all pass.
        for src in ["192.0.2.7:5060", "[::ffff:192.0.2.7]:5060", "[2001:db8::1]:5060"] {
            for _ in 0..199 {
                pike.on_message(inbound(src));
            }
        }
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 3 * 199);
        assert!(pike.blocked().is_empty(), "{:?}", pike.blocked());
        // An untrusted source is still blocked after 5.
        for _ in 0..10 {
            pike.on_message(inbound("198.51.100.1:5060"));
        }
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 3 * 199 + 5);
        assert_eq!(pike.blocked(), vec!["198.51.100.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn on_by_default_exactly_when_a_listener_is_not_loopback() {
        let specs = |s: &[&str]| s.iter().map(|s| s.parse::<ListenSpec>().unwrap()).collect::<Vec<_>>();
        let auto = PikeConfig::default();
        assert!(!auto.enabled_for(&specs(&["udp:127.0.0.1:5060", "tcp:[::1]:5060"])));
        assert!(auto.enabled_for(&specs(&["udp:127.0.0.1:5060", "udp:192.0.2.1:5060"])));
        assert!(auto.enabled_for(&specs(&["udp:0.0.0.0:5060"])));
        let off = PikeConfig { enabled: Some(false), ..PikeConfig::default() };
        assert!(!off.enabled_for(&specs(&["udp:0.0.0.0:5060"])));
        let on = PikeConfig { enabled: Some(true), ..PikeConfig::default() };
        assert!(on.enabled_for(&specs(&["udp:127.0.0.1:5060"])));
        let bad = PikeConfig { trusted: vec!["10.0.0.0/33".into()], ..PikeConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("pike.trusted"));
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = PikeConfig { reqs_density_per_unit: 0, ..PikeConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("reqs_density_per_unit"));
    }
}
