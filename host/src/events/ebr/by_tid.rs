//! The notify subscriptions of each transaction, indexed by its id, so that
//! - the transaction's end removes them at once ([`EventBus::cancel_notifications`],
//!   a hash lookup, not a scan of every subscription), and
//! - a host timer per transaction can tell its owner when the last of them
//!   expired ([`EventBus::on_notifications_expired`]; OpenSIPS master's
//!   `EBR_SUBS_EXPIRE_NOTIFY`, which its push-notification code uses to stop
//!   waiting for new branches).

use std::sync::Arc;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{Gone, Shared, Table};
use crate::events::EventBus;

/// Runs once, when a transaction's last notify subscription expired.
pub(super) type ExpiryHook = Box<dyn FnOnce() + Send>;

/// One transaction's notify subscriptions.
#[derive(Default)]
pub(super) struct TidSubs {
    /// (event, entry id); ids are unique across events.
    entries: Vec<(Arc<str>, u64)>,
    on_expiry: Option<ExpiryHook>,
    /// The timer task that watches the entries' deadlines, while a hook is set.
    timer: Option<AbortHandle>,
}

impl Table {
    pub(super) fn link_tid(&mut self, tid: u64, event: Arc<str>, id: u64) {
        self.by_tid.entry(tid).or_default().entries.push((event, id));
    }

    /// Forgets entry `id` of `tid`. When it was the last one, the record goes;
    /// its hook is queued in `due` if the entry expired, dropped otherwise.
    pub(super) fn unlink_tid(&mut self, tid: u64, id: u64, gone: Gone) {
        let Some(subs) = self.by_tid.get_mut(&tid) else { return };
        subs.entries.retain(|(_, i)| *i != id);
        if !subs.entries.is_empty() {
            return;
        }
        if let Some(subs) = self.by_tid.remove(&tid) {
            if let Some(timer) = subs.timer {
                timer.abort();
            }
            if gone == Gone::Expired {
                self.due.extend(subs.on_expiry);
            }
        }
    }

    /// When the last live subscription of `tid` expires (`None`: it has none).
    fn tid_deadline(&self, tid: u64) -> Option<Instant> {
        let subs = self.by_tid.get(&tid)?;
        subs.entries
            .iter()
            .filter_map(|(event, id)| self.by_event.get(event)?.entries.get(id))
            .map(|e| e.expires_at)
            .max()
    }
}

impl Shared {
    /// Removes the expired subscriptions of `tid` (running its hook if that
    /// was the last); returns the next deadline while some are left.
    fn expire_tid(&self, tid: u64, now: Instant) -> Option<Instant> {
        let mut table = self.lock();
        let dead: Vec<(Arc<str>, u64)> = match table.by_tid.get(&tid) {
            None => return None,
            Some(subs) => subs
                .entries
                .iter()
                .filter(|(event, id)| {
                    let entry = table.by_event.get(event).and_then(|s| s.entries.get(id));
                    entry.is_none_or(|e| e.expires_at <= now)
                })
                .cloned()
                .collect(),
        };
        for (event, id) in dead {
            if table.remove(&event, id, Gone::Expired).is_none() {
                // Indexed but not in the table: drop the stale index entry.
                table.unlink_tid(tid, id, Gone::Expired);
            }
            table.drop_if_empty(&event);
        }
        let next = table.tid_deadline(tid);
        self.unlock_and_run_due(table);
        next
    }
}

/// The timer behind an expiry hook: sleeps until the latest deadline of the
/// transaction's subscriptions (later subscriptions push it back). Aborted
/// when the subscriptions are cancelled.
async fn watch(shared: Arc<Shared>, tid: u64) {
    let mut next = shared.lock().tid_deadline(tid);
    while let Some(at) = next {
        tokio::time::sleep_until(at).await;
        next = shared.expire_tid(tid, Instant::now());
    }
}

impl EventBus {
    /// Removes the notify subscriptions transaction `tid` made (call it when
    /// the transaction ends, so a late event does not run a route for a
    /// finished call); their expiry hook is dropped without running. Returns
    /// how many there were.
    pub fn cancel_notifications(&self, tid: u64) -> usize {
        let shared = &self.ebr().shared;
        let mut table = shared.lock();
        let Some(entries) = table.by_tid.get(&tid).map(|s| s.entries.clone()) else { return 0 };
        for (event, id) in &entries {
            table.remove(event, *id, Gone::Removed);
            table.drop_if_empty(event);
        }
        // Normally gone with its last entry; an index entry without a table
        // entry would otherwise keep it.
        if let Some(timer) = table.by_tid.remove(&tid).and_then(|s| s.timer) {
            timer.abort();
        }
        entries.len()
    }

    /// How many notify subscriptions transaction `tid` has (live or expired
    /// but not yet purged).
    pub fn notify_count(&self, tid: u64) -> usize {
        self.ebr().shared.lock().by_tid.get(&tid).map_or(0, |s| s.entries.len())
    }

    /// Runs `hook` once when the last live notify subscription of transaction
    /// `tid` expires: at its deadline, by a host timer, even if no event is
    /// ever raised. Not when they are cancelled. Replaces a hook set before.
    /// Returns false (and drops `hook`) when `tid` has no notify subscription
    /// or there is no tokio runtime to run the timer.
    pub fn on_notifications_expired(&self, tid: u64, hook: impl FnOnce() + Send + 'static) -> bool {
        let shared = &self.ebr().shared;
        let Some(runtime) = shared.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok()) else {
            return false;
        };
        let mut table = shared.lock();
        let Some(subs) = table.by_tid.get_mut(&tid) else { return false };
        subs.on_expiry = Some(Box::new(hook));
        if subs.timer.is_none() {
            subs.timer = Some(runtime.spawn(watch(shared.clone(), tid)).abort_handle());
        }
        true
    }
}
