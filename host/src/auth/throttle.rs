//! Failed authentications per source IP, and the sources blocked for
//! failing too often (what fail2ban does to a SIP server's log, in process).
//! Bounded: at most [`MAX_SOURCES`] sources are tracked; when the table is
//! full of live entries a new source is not tracked (and cannot be blocked)
//! rather than evicting one that is blocked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::AuthConfig;

/// Sources tracked at most (~48 bytes each).
pub(crate) const MAX_SOURCES: usize = 100_000;

#[derive(Clone, Copy)]
struct Entry {
    window_start: u64,
    failures: u32,
    blocked_until: u64,
}

pub(crate) struct Throttle {
    max_failures: u32,
    window_s: u64,
    block_s: u64,
    sources: Mutex<HashMap<IpAddr, Entry>>,
}

impl Throttle {
    pub(crate) fn new(cfg: &AuthConfig) -> Throttle {
        Throttle {
            max_failures: cfg.max_failures,
            window_s: cfg.failure_window_s.into(),
            block_s: cfg.block_s.into(),
            sources: Mutex::default(),
        }
    }

    /// Seconds `ip` stays blocked, if it is.
    pub(crate) fn blocked_for(&self, ip: IpAddr, now: u64) -> Option<u32> {
        if self.max_failures == 0 {
            return None;
        }
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let until = sources.get(&ip)?.blocked_until;
        (until > now).then(|| (until - now).min(u32::MAX.into()) as u32)
    }

    /// Counts one failure; returns the failure count when this one blocks `ip`.
    pub(crate) fn record_failure(&self, ip: IpAddr, now: u64) -> Option<u32> {
        if self.max_failures == 0 {
            return None;
        }
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&ip) {
            let window = self.window_s;
            sources.retain(|_, e| e.blocked_until > now || now.saturating_sub(e.window_start) <= window);
            if sources.len() >= MAX_SOURCES {
                return None;
            }
        }
        let entry = sources.entry(ip).or_insert(Entry { window_start: now, failures: 0, blocked_until: 0 });
        if now.saturating_sub(entry.window_start) > self.window_s {
            *entry = Entry { window_start: now, failures: 0, blocked_until: entry.blocked_until };
        }
        entry.failures += 1;
        if entry.failures >= self.max_failures && entry.blocked_until <= now {
            entry.blocked_until = now + self.block_s;
            let failures = entry.failures;
            entry.failures = 0;
            entry.window_start = now;
            return Some(failures);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_blocked_after_max_failures_within_the_window_then_released() {
        let cfg = AuthConfig { max_failures: 3, failure_window_s: 60, block_s: 300, ..AuthConfig::default() };
        let t = Throttle::new(&cfg);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(t.record_failure(ip, 0), None);
        // Outside the window the count starts again.
        assert_eq!(t.record_failure(ip, 100), None);
        assert_eq!(t.record_failure(ip, 101), None);
        assert_eq!(t.blocked_for(ip, 101), None);
        assert_eq!(t.record_failure(ip, 102), Some(3));
        assert_eq!(t.blocked_for(ip, 102), Some(300));
        assert_eq!(t.blocked_for(other, 102), None, "per source");
        assert_eq!(t.blocked_for(ip, 402), None, "released");
        let off = Throttle::new(&AuthConfig { max_failures: 0, ..AuthConfig::default() });
        for now in 0..100 {
            assert_eq!(off.record_failure(ip, now), None);
        }
    }
}
