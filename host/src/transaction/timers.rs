//! Transaction timer values (RFC 3261 Appendix A, Table 4; RFC 6026 Timers L and M) and
//! the small per-transaction timer set the drivers sleep on.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// Timer configuration, the `[timers]` table of `sipbox.toml`. Every field is optional;
/// the defaults are the RFC 3261 values. Derived timers: A = E = G = T1 (doubling);
/// B = F = H = J = L = M = 64·T1; I = K = T4 on UDP; D = `timer_d_ms` on UDP; I, J, K and D
/// are zero on TCP (RFC 3261 sections 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timers {
    /// T1, the round-trip time estimate, in milliseconds (default 500).
    pub t1_ms: u64,
    /// T2, the cap on non-INVITE request and INVITE response retransmit intervals, in
    /// milliseconds (default 4000).
    pub t2_ms: u64,
    /// T4, the longest a message stays in the network, in milliseconds (default 5000).
    pub t4_ms: u64,
    /// Timer C, the proxy's INVITE timeout (RFC 3261 section 16.6 step 11; "> 3 min"),
    /// restarted by every provisional response, in seconds (default 180).
    pub timer_c_s: u64,
    /// Timer D, how long an INVITE client transaction absorbs final-response
    /// retransmissions on UDP, in milliseconds (default 32000; "> 32 s").
    pub timer_d_ms: u64,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers { t1_ms: 500, t2_ms: 4000, t4_ms: 5000, timer_c_s: 180, timer_d_ms: 32_000 }
    }
}

impl Timers {
    /// T1.
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms.max(1))
    }
    /// T2.
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms.max(1))
    }
    /// T4.
    pub fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
    /// 64·T1: Timers B, F, H, J (UDP), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1() * 64
    }
    /// Timer C.
    pub fn c(&self) -> Duration {
        Duration::from_secs(self.timer_c_s.max(1))
    }
    /// Timer D on an unreliable transport.
    pub fn d(&self) -> Duration {
        Duration::from_millis(self.timer_d_ms)
    }
}

/// The RFC 3261 / RFC 6026 timers by letter (C belongs to the proxy core, not to a transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit (client, UDP).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Response retransmit absorption (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit (client, UDP).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE final response retransmit (server, UDP).
    G,
    /// Wait for ACK (INVITE server, Completed).
    H,
    /// ACK retransmit absorption (INVITE server, Confirmed).
    I,
    /// Request retransmit absorption (non-INVITE server, Completed).
    J,
    /// Response retransmit absorption (non-INVITE client, Completed).
    K,
    /// RFC 6026: INVITE server Accepted (absorbs INVITE retransmissions after a 2xx).
    L,
    /// RFC 6026: INVITE client Accepted (forwards 2xx retransmissions).
    M,
}

impl Timer {
    const ALL: [Timer; 12] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    fn index(self) -> usize {
        Timer::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// What a state machine asks its driver to do with a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerOp {
    /// (Re)arm the timer to fire after the duration.
    Start(Timer, Duration),
    /// Disarm it.
    Stop(Timer),
}

/// The armed timers of one transaction (a dozen optional deadlines; no allocation).
#[derive(Debug, Default)]
pub(crate) struct TimerSet {
    deadlines: [Option<Instant>; 12],
}

impl TimerSet {
    pub(crate) fn apply(&mut self, op: TimerOp) {
        match op {
            TimerOp::Start(t, d) => self.deadlines[t.index()] = Some(Instant::now() + d),
            TimerOp::Stop(t) => self.deadlines[t.index()] = None,
        }
    }

    /// The earliest armed timer.
    pub(crate) fn next(&self) -> Option<(Instant, Timer)> {
        self.deadlines.iter().zip(Timer::ALL).filter_map(|(d, t)| d.map(|d| (d, t))).min_by_key(|(d, _)| *d)
    }

    /// Disarms `t` (it fired).
    pub(crate) fn clear(&mut self, t: Timer) {
        self.deadlines[t.index()] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc_values() {
        let t = Timers::default();
        assert_eq!(t.t1(), Duration::from_millis(500));
        assert_eq!(t.t2(), Duration::from_secs(4));
        assert_eq!(t.t4(), Duration::from_secs(5));
        assert_eq!(t.t1x64(), Duration::from_secs(32));
        assert_eq!(t.c(), Duration::from_secs(180));
        assert_eq!(t.d(), Duration::from_secs(32));
    }

    #[test]
    fn toml_partial_and_unknown_fields() {
        let t: Timers = toml::from_str("t1_ms = 100\ntimer_c_s = 60").expect("valid");
        assert_eq!(t.t1_ms, 100);
        assert_eq!(t.t2_ms, 4000);
        assert_eq!(t.t1x64(), Duration::from_millis(6400));
        let err = toml::from_str::<Timers>("t3_ms = 1").expect_err("unknown field");
        assert!(err.to_string().contains("t3_ms"), "{err}");
    }

    #[test]
    fn timer_set_orders_deadlines() {
        let mut s = TimerSet::default();
        assert!(s.next().is_none());
        s.apply(TimerOp::Start(Timer::B, Duration::from_secs(32)));
        s.apply(TimerOp::Start(Timer::A, Duration::from_millis(500)));
        assert_eq!(s.next().map(|(_, t)| t), Some(Timer::A));
        s.apply(TimerOp::Stop(Timer::A));
        assert_eq!(s.next().map(|(_, t)| t), Some(Timer::B));
        s.clear(Timer::B);
        assert!(s.next().is_none());
    }
}
