//! Event-based routing (OpenSIPS `event_routing`, EBR): a SIP processing
//! subscribes to an event raised by another, unrelated one.
//!
//! - [`EventBus::notify_on_event`]: a multi-shot subscription that lives until
//!   its timeout; every matching raise hands the bus's [`NotifyHandler`] (the
//!   runtime's invoker, given to [`EventBus::new`]: the route's `on-notify`
//!   export in a fresh instance) the route name, the event and the
//!   subscriber's transaction id.
//! - [`EventBus::wait_for_event`]: a one-shot waiter; its future resolves with
//!   the first matching event, or `None` when the host timer fires.
//!
//! # Internals
//! Entries live per event name in one mutex-guarded table, separate from the
//! EVI subscriber table so sinks and EBR never contend. `raise` calls
//! [`Ebr::dispatch`] which, under the lock, only does matching, `oneshot`
//! sends and bookkeeping; notifications are handed to the handler afterwards,
//! each holding a slot of a semaphore until its route has run (over the cap
//! they are dropped and counted). Nothing blocks.
//!
//! Entries whose filters include one without wildcards (`callid=abc`) are
//! indexed by that (key, value), so a raise finds its one waiter among
//! 10,000 with a hash lookup; the others are scanned linearly.
//!
//! Expiry: every wait is bounded by its own `tokio::time::timeout`, and its
//! future removes the waiter when it ends or is dropped (the suspended
//! guest's call was cancelled). Notify subscriptions (and any waiter whose
//! future leaked) are purged lazily on raise and by the registry's periodic
//! sweep — unlike OpenSIPS, where a notify subscription lingers until the
//! next raise. The notify subscriptions of one transaction are also indexed
//! by its id (`by_tid`): they go at once when it ends, and a transaction can
//! have a host timer tell it when its last one expired.

mod by_tid;
mod filter;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tid;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

pub use filter::{Filters, MAX_FILTER_LEN, MAX_FILTERS};

use super::{Event, EventBus, EventError, EventsConfig};

/// Runs notification routes: the runtime's invoker, which queues them for the
/// runtime to call the route component's `on-notify(route, event, tid)` export
/// in a fresh instance.
pub trait NotifyHandler: Send + Sync + 'static {
    /// Starts `notification` without blocking (the caller is `raise`), keeping
    /// its [`slot`](Notification::slot) until the route has run. False when it
    /// could not be started (counted as dropped).
    fn notify(&self, notification: Notification) -> bool;
}

/// One notification route to run: what a matching raise hands the [`NotifyHandler`].
pub struct Notification {
    /// The route the subscription named.
    pub route: Arc<str>,
    /// The event that matched.
    pub event: Event,
    /// The subscriber's transaction id.
    pub tid: u64,
    /// Its slot among the running notifications (`ebr_max_notify_concurrency`):
    /// dropped when the route has run.
    pub slot: NotifySlot,
}

/// A running notification's share of `ebr_max_notify_concurrency`; frees it when dropped.
pub struct NotifySlot(#[allow(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit);

/// Live EBR state and counters, for statistics and the MI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EbrStats {
    /// `wait_for_event` waiters currently suspended.
    pub waiters: usize,
    /// `notify_on_event` subscriptions not yet expired (or not yet purged).
    pub notify_subscriptions: usize,
    /// Waiters resumed with an event.
    pub woken: u64,
    /// Waits that ended at their timeout.
    pub timed_out: u64,
    /// Waits whose future was dropped before an event or the timeout.
    pub cancelled: u64,
    /// Notification routes started.
    pub notified: u64,
    /// Notifications not run: over `ebr_max_notify_concurrency`, no handler,
    /// or the handler's queue full.
    pub notify_dropped: u64,
    /// Subscriptions and waits refused because `ebr_max_waiters` were live.
    pub refused: u64,
}

impl EbrStats {
    /// The counters as `get_statistics` pairs (`ebr_waiters`, ...).
    pub fn to_pairs(&self) -> Vec<(String, u64)> {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        [
            ("ebr_waiters", n(self.waiters)),
            ("ebr_notify_subscriptions", n(self.notify_subscriptions)),
            ("ebr_woken", self.woken),
            ("ebr_timed_out", self.timed_out),
            ("ebr_cancelled", self.cancelled),
            ("ebr_notified", self.notified),
            ("ebr_notify_dropped", self.notify_dropped),
            ("ebr_refused", self.refused),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The EBR half of an [`EventBus`] (one per bus).
pub(crate) struct Ebr {
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<Table>,
    max_entries: usize,
    notify_slots: Arc<Semaphore>,
    handler: Option<Arc<dyn NotifyHandler>>,
    /// Where expiry timers run.
    runtime: Option<tokio::runtime::Handle>,
    woken: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    notified: AtomicU64,
    notify_dropped: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Table {
    by_event: HashMap<Arc<str>, EventSubs>,
    /// Transaction id → its notify subscriptions (see [`by_tid`]).
    by_tid: HashMap<u64, by_tid::TidSubs>,
    /// Expiry hooks that came due under the lock; run once it is released.
    due: Vec<by_tid::ExpiryHook>,
    next_id: u64,
    waiters: usize,
    notifies: usize,
}

/// Why an entry leaves the table: only an expiry runs a transaction's
/// expiry hook.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gone {
    Expired,
    Removed,
}

/// The EBR entries of one event.
#[derive(Default)]
struct EventSubs {
    entries: HashMap<u64, Entry>,
    /// Entries without a wildcard-free filter, in subscription order.
    scan: BTreeSet<u64>,
    /// lower-case key → exact value → entries (see [`Filters::index_key`]).
    index: HashMap<Box<str>, HashMap<Box<str>, Vec<u64>>>,
}

struct Entry {
    filters: Filters,
    expires_at: Instant,
    kind: Kind,
}

enum Kind {
    Notify { route: Arc<str>, tid: u64 },
    Wait { tx: oneshot::Sender<Event> },
}

/// A notification to start once the table lock is released.
struct Job {
    route: Arc<str>,
    tid: u64,
}

impl Ebr {
    pub(crate) fn new(
        cfg: &EventsConfig,
        runtime: Option<tokio::runtime::Handle>,
        handler: Option<Arc<dyn NotifyHandler>>,
    ) -> Ebr {
        Ebr {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                max_entries: cfg.ebr_max_waiters,
                notify_slots: Arc::new(Semaphore::new(cfg.ebr_max_notify_concurrency.clamp(1, Semaphore::MAX_PERMITS))),
                handler,
                runtime,
                woken: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
                notified: AtomicU64::new(0),
                notify_dropped: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Hands `event` to every matching EBR entry: waiters get it and go,
    /// notify subscriptions start their route and stay. Expired entries met
    /// on the way are removed. Returns how many entries matched.
    pub(crate) fn dispatch(&self, event: &Event, now: Instant) -> usize {
        let mut jobs = Vec::new();
        let mut matched = 0;
        {
            let mut guard = self.shared.lock();
            let table = &mut *guard;
            let Some(subs) = table.by_event.get_mut(&*event.name) else { return 0 };
            let (mut hits, mut dead) = (Vec::new(), Vec::new());
            subs.candidates(event, |id, entry| {
                if entry.expires_at <= now {
                    dead.push(id);
                } else if entry.filters.matches(event) {
                    hits.push(id);
                }
            });
            for id in hits {
                match subs.entries.get(&id).map(|e| &e.kind) {
                    Some(Kind::Notify { route, tid }) => {
                        jobs.push(Job { route: route.clone(), tid: *tid });
                        matched += 1;
                    }
                    Some(Kind::Wait { .. }) => {
                        // A waiter fires once. A closed receiver (its future
                        // is being dropped right now) does not count.
                        if let Some(Entry { kind: Kind::Wait { tx }, .. }) = subs.remove(id) {
                            table.waiters -= 1;
                            if tx.send(event.clone()).is_ok() {
                                matched += 1;
                                self.shared.woken.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    None => {}
                }
            }
            for id in dead {
                table.remove(&event.name, id, Gone::Expired);
            }
            table.drop_if_empty(&event.name);
            self.shared.unlock_and_run_due(guard);
        }
        if !jobs.is_empty() {
            self.start_notifications(jobs, event);
        }
        matched
    }

    fn start_notifications(&self, jobs: Vec<Job>, event: &Event) {
        let shared = &self.shared;
        let Some(handler) = &shared.handler else {
            tracing::warn!(event = %event.name, count = jobs.len(), "EBR notification dropped: no handler");
            shared.notify_dropped.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            return;
        };
        for job in jobs {
            let Ok(permit) = shared.notify_slots.clone().try_acquire_owned() else {
                tracing::warn!(event = %event.name, route = %job.route, "EBR notification dropped: too many running");
                shared.notify_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let route = job.route.clone();
            let notification =
                Notification { route: job.route, event: event.clone(), tid: job.tid, slot: NotifySlot(permit) };
            if handler.notify(notification) {
                shared.notified.fetch_add(1, Ordering::Relaxed);
            } else {
                tracing::warn!(event = %event.name, %route, "EBR notification dropped: the runtime's queue is full or closed");
                shared.notify_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether some EBR entry for `name` is still live.
    pub(crate) fn has_subscribers(&self, name: &str, now: Instant) -> bool {
        let table = self.shared.lock();
        table.by_event.get(name).is_some_and(|s| s.entries.values().any(|e| e.expires_at > now))
    }

    /// Removes every expired entry (the registry's periodic sweep).
    pub(crate) fn purge(&self, now: Instant) {
        let mut table = self.shared.lock();
        let mut dead = Vec::new();
        for (name, subs) in &table.by_event {
            for (&id, e) in &subs.entries {
                if e.expires_at <= now {
                    dead.push((name.clone(), id));
                }
            }
        }
        for (name, id) in dead {
            table.remove(&name, id, Gone::Expired);
            table.drop_if_empty(&name);
        }
        self.shared.unlock_and_run_due(table);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Releases the lock, then runs the expiry hooks that came due under it
    /// (a hook reaches into the transaction layer, which must not wait on us).
    fn unlock_and_run_due(&self, mut table: MutexGuard<'_, Table>) {
        let due = std::mem::take(&mut table.due);
        drop(table);
        for hook in due {
            hook();
        }
    }
}

impl Ebr {
    /// Adds an entry, or refuses it when `max_entries` are live (expired
    /// ones are purged first, so a burst of stale entries does not refuse).
    fn insert(&self, event: Arc<str>, entry: Entry, now: Instant) -> Result<u64, EventError> {
        let shared = &self.shared;
        let mut table = shared.lock();
        if table.waiters + table.notifies >= shared.max_entries {
            drop(table);
            self.purge(now);
            table = shared.lock();
            if table.waiters + table.notifies >= shared.max_entries {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(EventError::EbrLimit(shared.max_entries));
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        match entry.kind {
            Kind::Wait { .. } => table.waiters += 1,
            Kind::Notify { tid, .. } => {
                table.notifies += 1;
                table.link_tid(tid, event.clone(), id);
            }
        }
        let subs = table.by_event.entry(event).or_default();
        match entry.filters.index_key() {
            Some((key, value)) => subs.index.entry(key.into()).or_default().entry(value.into()).or_default().push(id),
            None => {
                subs.scan.insert(id);
            }
        }
        subs.entries.insert(id, entry);
        Ok(id)
    }

    fn stats(&self) -> EbrStats {
        let shared = &self.shared;
        let (waiters, notify_subscriptions) = {
            let table = shared.lock();
            (table.waiters, table.notifies)
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EbrStats {
            waiters,
            notify_subscriptions,
            woken: get(&shared.woken),
            timed_out: get(&shared.timed_out),
            cancelled: get(&shared.cancelled),
            notified: get(&shared.notified),
            notify_dropped: get(&shared.notify_dropped),
            refused: get(&shared.refused),
        }
    }
}

impl Table {
    /// Removes one entry (if still there), keeping the counts and the
    /// transaction index right.
    fn remove(&mut self, event: &str, id: u64, gone: Gone) -> Option<Entry> {
        let entry = self.by_event.get_mut(event)?.remove(id)?;
        match entry.kind {
            Kind::Wait { .. } => self.waiters -= 1,
            Kind::Notify { tid, .. } => {
                self.notifies -= 1;
                self.unlink_tid(tid, id, gone);
            }
        }
        Some(entry)
    }

    fn drop_if_empty(&mut self, event: &str) {
        if self.by_event.get(event).is_some_and(|s| s.entries.is_empty()) {
            self.by_event.remove(event);
        }
    }
}

impl EventSubs {
    /// Calls `f` for every entry that may match `event`: those indexed under
    /// one of its (param, value) pairs, then the unindexed ones.
    fn candidates(&self, event: &Event, mut f: impl FnMut(u64, &Entry)) {
        let mut seen: Vec<u64> = Vec::new();
        if !self.index.is_empty() {
            for (name, value) in &event.params.0 {
                let Some(name) = name.as_deref() else { continue };
                for (key, values) in &self.index {
                    if !name.eq_ignore_ascii_case(key) {
                        continue;
                    }
                    let ids =
                        filter::with_text(value, |text| std::str::from_utf8(text).ok().and_then(|t| values.get(t)));
                    seen.extend_from_slice(ids.map_or(&[][..], |ids| &ids[..]));
                }
            }
            // Two params with the same name and value would list an entry twice.
            seen.sort_unstable();
            seen.dedup();
        }
        for id in seen.into_iter().chain(self.scan.iter().copied()) {
            if let Some(entry) = self.entries.get(&id) {
                f(id, entry);
            }
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        match entry.filters.index_key() {
            Some((key, value)) => {
                if let Some(values) = self.index.get_mut(key) {
                    if let Some(ids) = values.get_mut(value) {
                        ids.retain(|&i| i != id);
                        if ids.is_empty() {
                            values.remove(value);
                        }
                    }
                    if values.is_empty() {
                        self.index.remove(key);
                    }
                }
            }
            None => {
                self.scan.remove(&id);
            }
        }
        Some(entry)
    }
}

/// Far enough to mean "never" without overflowing `Instant`.
const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

fn deadline(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

/// Removes a waiter whose future ended without its event or was dropped.
struct WaitGuard {
    shared: Arc<Shared>,
    event: Arc<str>,
    id: u64,
    /// False once the entry is known gone (dispatched, purged, removed).
    live: bool,
}

impl WaitGuard {
    /// The entry is already gone: nothing to remove on drop.
    fn disarm(&mut self) {
        self.live = false;
    }

    /// Removes the entry if still there; true when it was.
    fn remove(&mut self) -> bool {
        if !std::mem::replace(&mut self.live, false) {
            return false;
        }
        let mut table = self.shared.lock();
        let gone = table.remove(&self.event, self.id, Gone::Removed).is_some();
        table.drop_if_empty(&self.event);
        gone
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.remove() {
            self.shared.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl EventBus {
    /// OpenSIPS `notify_on_event`: until `timeout` passes, every raise of
    /// `event` that matches `filters` calls the [`NotifyHandler`] with
    /// `route`, the event and `tid` (zero or several times). Publishes the
    /// event name if unknown.
    ///
    /// # Errors
    /// A bad event name; [`EventError::EbrLimit`] when `ebr_max_waiters`
    /// subscriptions and waiters are live.
    pub fn notify_on_event(
        &self,
        event: &str,
        filters: Filters,
        route: Arc<str>,
        tid: u64,
        timeout: Duration,
    ) -> Result<(), EventError> {
        self.publish(event)?;
        let now = Instant::now();
        let entry = Entry { filters, expires_at: deadline(now, timeout), kind: Kind::Notify { route, tid } };
        self.ebr().insert(Arc::from(event), entry, now).map(drop)
    }

    /// OpenSIPS `wait_for_event`: the returned future resolves with the
    /// first raise of `event` matching `filters`, or `None` once `timeout`
    /// passes (a host timer, whatever the waiting guest does). The waiter is
    /// registered before this returns, so a raise right after is not missed;
    /// dropping the future (the suspended call was cancelled) removes it at
    /// once. Publishes the event name if unknown.
    ///
    /// # Errors
    /// A bad event name; [`EventError::EbrLimit`] when `ebr_max_waiters`
    /// subscriptions and waiters are live.
    pub fn wait_for_event(
        &self,
        event: &str,
        filters: Filters,
        timeout: Duration,
    ) -> Result<impl Future<Output = Option<Event>> + Send + 'static, EventError> {
        self.publish(event)?;
        let now = Instant::now();
        let (tx, rx) = oneshot::channel();
        let name: Arc<str> = Arc::from(event);
        let ebr = self.ebr();
        let entry = Entry { filters, expires_at: deadline(now, timeout), kind: Kind::Wait { tx } };
        let id = ebr.insert(name.clone(), entry, now)?;
        let mut guard = WaitGuard { shared: ebr.shared.clone(), event: name, id, live: true };
        Ok(async move {
            let got = tokio::time::timeout_at(deadline(now, timeout), rx).await;
            match got {
                Ok(Ok(event)) => {
                    // `dispatch` removed the entry when it sent.
                    guard.disarm();
                    Some(event)
                }
                // The sender went without sending: purged as expired.
                Ok(Err(_)) | Err(_) => {
                    guard.remove();
                    guard.shared.timed_out.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        })
    }

    /// Live EBR subscriptions and waiters, and counters.
    pub fn ebr_stats(&self) -> EbrStats {
        self.ebr().stats()
    }
}
