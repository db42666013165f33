//! What one invocation may still ask of the host, for the `[limits]` the
//! imports count themselves (the engine counts CPU and memory): events raised,
//! EBR subscriptions and waits, time waited, log lines, HTTP requests and
//! bytes of message edits; and the process-wide counters of what each limit
//! refused, which `get_statistics runtime:` shows.
//!
//! A budget belongs to the invocation, not to a run of it: a guest resumed by
//! replay carries on with what its first run left (`Runtime::run_invocation`
//! hands it over), and the calls a replay answers from the journal spend
//! nothing, since they spent it when they were made.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::engine::Limits;

/// What is left of one invocation's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    raises: u32,
    subscriptions: u32,
    wait: Duration,
    log_lines: u32,
    http_requests: u32,
    edit_bytes: usize,
    /// `max_edit_bytes` itself: the bound on one reply's headers.
    reply_bytes: usize,
    /// `max_subscriptions` itself, which its refusal names.
    max_subscriptions: u32,
    /// A log line was dropped already (the first drop is itself logged).
    log_dropped: bool,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Budget {
        Budget {
            raises: limits.max_raises,
            subscriptions: limits.max_subscriptions,
            wait: Duration::from_secs(limits.max_wait_s.into()),
            log_lines: limits.max_log_lines,
            http_requests: limits.max_http_requests,
            edit_bytes: limits.max_edit_bytes as usize,
            reply_bytes: limits.max_edit_bytes as usize,
            max_subscriptions: limits.max_subscriptions,
            log_dropped: false,
        }
    }

    /// Spends one of a counted budget; false (and counted in `refused`) when
    /// none is left.
    fn spend(left: &mut u32, refused: &AtomicU64) -> bool {
        match left.checked_sub(1) {
            Some(rest) => {
                *left = rest;
                true
            }
            None => {
                refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub(crate) fn raise(&mut self, stats: &LimitStats) -> bool {
        Budget::spend(&mut self.raises, &stats.raises_refused)
    }

    pub(crate) fn subscription(&mut self, stats: &LimitStats) -> bool {
        Budget::spend(&mut self.subscriptions, &stats.subscriptions_refused)
    }

    /// The limit a refused subscription names (`too-many-waiters`).
    pub(crate) fn max_subscriptions(&self) -> u32 {
        self.max_subscriptions
    }

    pub(crate) fn log_line(&mut self, stats: &LimitStats) -> LogLine {
        if Budget::spend(&mut self.log_lines, &stats.log_lines_dropped) {
            LogLine::Write
        } else if !std::mem::replace(&mut self.log_dropped, true) {
            LogLine::FirstDropped
        } else {
            LogLine::Dropped
        }
    }

    pub(crate) fn http_request(&mut self, stats: &LimitStats) -> bool {
        Budget::spend(&mut self.http_requests, &stats.http_refused)
    }

    /// Spends `bytes` of the edit budget; false (and counted) when that is
    /// more than is left, in which case nothing is spent.
    pub(crate) fn edit(&mut self, bytes: usize, stats: &LimitStats) -> bool {
        match self.edit_bytes.checked_sub(bytes) {
            Some(rest) => {
                self.edit_bytes = rest;
                true
            }
            None => {
                stats.edits_refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether one value of `bytes` fits that replaces or is sent rather
    /// than queued (a reply's headers, a new Request-URI): nothing is spent.
    pub(crate) fn fits_one(&self, bytes: usize, stats: &LimitStats) -> bool {
        let fits = bytes <= self.reply_bytes;
        if !fits {
            stats.edits_refused.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// How long a wait asking for `asked` may last: what is left of the
    /// wait budget, at most. Counted in `waits_cut` when it is less.
    pub(crate) fn wait_for(&self, asked: Duration, stats: &LimitStats) -> Duration {
        if asked > self.wait {
            stats.waits_cut.fetch_add(1, Ordering::Relaxed);
        }
        asked.min(self.wait)
    }

    /// Spends the time a wait took.
    pub(crate) fn waited(&mut self, took: Duration) {
        self.wait = self.wait.saturating_sub(took);
    }
}

/// What becomes of a guest's log line under `max_log_lines`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogLine {
    Write,
    /// The first one past the limit: the host says so, once.
    FirstDropped,
    Dropped,
}

impl Default for Budget {
    /// The default limits' budget (a state not yet given its invocation's).
    fn default() -> Budget {
        Budget::new(&Limits::default())
    }
}

/// Refusals of the counted limits since start, and the guests parked in
/// place now (shared by every instance through `Services`).
#[derive(Debug, Default)]
pub struct LimitStats {
    /// `raise-event` calls past `max_raises`.
    pub raises_refused: AtomicU64,
    /// `notify-on-event` / `wait-for-event` calls past `max_subscriptions`.
    pub subscriptions_refused: AtomicU64,
    /// Waits cut short by `max_wait_s` (including those that returned at once).
    pub waits_cut: AtomicU64,
    /// In-place waits refused because `max_parked` guests were parked.
    pub parked_refused: AtomicU64,
    /// Log lines dropped past `max_log_lines`.
    pub log_lines_dropped: AtomicU64,
    /// HTTP requests refused past `max_http_requests`.
    pub http_refused: AtomicU64,
    /// Edits and replies refused past `max_edit_bytes`.
    pub edits_refused: AtomicU64,
    /// Guests parked in place in `wait-for-event` now.
    pub parked: AtomicU32,
}

impl LimitStats {
    /// Takes a parked slot when fewer than `max` are taken; the guard gives
    /// it back. None (counted in `parked_refused`) when all are taken.
    pub(crate) fn park(&self, max: u32) -> Option<ParkedSlot<'_>> {
        let taken = self.parked.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        match taken {
            Ok(_) => Some(ParkedSlot(self)),
            Err(_) => {
                self.parked_refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// One guest parked in place; dropping it (the wait ended, or the
/// invocation was dropped while waiting) frees the slot.
pub(crate) struct ParkedSlot<'a>(&'a LimitStats);

impl Drop for ParkedSlot<'_> {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limits: Limits) -> (Budget, LimitStats) {
        (Budget::new(&limits), LimitStats::default())
    }

    #[test]
    fn a_counted_budget_refuses_past_its_limit_and_counts_the_refusals() {
        let (mut b, stats) = budget(Limits { max_raises: 2, ..Limits::default() });
        assert!(b.raise(&stats) && b.raise(&stats));
        assert!(!b.raise(&stats) && !b.raise(&stats));
        assert_eq!(stats.raises_refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_edit_larger_than_what_is_left_spends_nothing() {
        let (mut b, stats) = budget(Limits { max_edit_bytes: 1024, ..Limits::default() });
        assert!(b.edit(1000, &stats));
        assert!(!b.edit(25, &stats), "1025 bytes of 1024");
        assert!(b.edit(24, &stats), "the refused edit spent nothing");
        assert_eq!(stats.edits_refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn waits_are_cut_to_what_is_left_of_the_wait_budget() {
        let (mut b, stats) = budget(Limits { max_wait_s: 10, ..Limits::default() });
        assert_eq!(b.wait_for(Duration::from_secs(4), &stats), Duration::from_secs(4));
        b.waited(Duration::from_secs(4));
        assert_eq!(b.wait_for(Duration::from_secs(60), &stats), Duration::from_secs(6));
        b.waited(Duration::from_secs(6));
        assert_eq!(b.wait_for(Duration::from_secs(1), &stats), Duration::ZERO);
        assert_eq!(stats.waits_cut.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn parked_slots_are_bounded_and_given_back() {
        let stats = LimitStats::default();
        let a = stats.park(2).expect("first");
        let _b = stats.park(2).expect("second");
        assert!(stats.park(2).is_none(), "third of two");
        drop(a);
        assert!(stats.park(2).is_some(), "a slot came back");
        assert_eq!(stats.parked_refused.load(Ordering::Relaxed), 1);
        assert_eq!(stats.parked.load(Ordering::Relaxed), 1, "the last guard was dropped at once");
    }
}
