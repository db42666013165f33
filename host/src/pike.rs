//! Flood detection by source IP, after OpenSIPS's pike module: requests are
//! counted per source address in sampling units; an address that sends more
//! than `reqs_density_per_unit` requests in one unit is blocked (its requests
//! are dropped unanswered) until a whole unit passes below the limit, and
//! `E_PIKE_BLOCKED` (param `ip`) is raised when it becomes blocked.
//!
//! It sits in front of the proxy core as an [`InboundHandler`] decorator, so
//! a flood is shed before any transaction or route instance is created.
//! Responses are never counted or blocked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use crate::events::{Event, EventBus, Params, Value};
use crate::sip::ParseError;
use crate::transport::{Inbound, InboundHandler, Proto};

/// The `[pike]` table of `sipbox.toml`. Off by default, as in OpenSIPS where
/// the module must be loaded and called.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PikeConfig {
    pub enabled: bool,
    /// Length of one sampling unit, in seconds (OpenSIPS `sampling_time_unit`).
    pub sampling_time_unit: u64,
    /// Requests one IP may send per unit (OpenSIPS `reqs_density_per_unit`).
    pub reqs_density_per_unit: u32,
    /// Seconds an idle address is remembered (OpenSIPS `remove_latency`).
    pub remove_latency: u64,
}

impl Default for PikeConfig {
    fn default() -> Self {
        PikeConfig { enabled: false, sampling_time_unit: 2, reqs_density_per_unit: 30, remove_latency: 120 }
    }
}

impl PikeConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.sampling_time_unit >= 1, "pike.sampling_time_unit must be at least 1");
        anyhow::ensure!(self.reqs_density_per_unit >= 1, "pike.reqs_density_per_unit must be at least 1");
        Ok(())
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
}

impl Pike {
    /// Wraps `inner`; also starts the task that forgets idle addresses.
    pub fn new(cfg: &PikeConfig, inner: Arc<dyn InboundHandler>, bus: EventBus) -> Arc<Pike> {
        let pike = Arc::new(Pike { inner, counters: Mutex::new(Counters::new(cfg)), bus });
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

    /// Addresses blocked right now (MI `pike_list`).
    pub fn blocked(&self) -> Vec<IpAddr> {
        self.lock().blocked()
    }
}

impl InboundHandler for Pike {
    fn on_message(&self, inbound: Inbound) {
        if inbound.msg.is_request() {
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
        if self.lock().hit(src.ip(), Instant::now()) != Verdict::Pass {
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
            enabled: true,
            sampling_time_unit: 2,
            reqs_density_per_unit: limit,
            remove_latency: 10,
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

    #[test]
    fn config_validation_names_the_field() {
        let bad = PikeConfig { reqs_density_per_unit: 0, ..PikeConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("reqs_density_per_unit"));
    }
}
