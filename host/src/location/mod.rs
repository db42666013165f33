//! The registrar and location service: REGISTER processing (RFC 3261 10.3),
//! the address-of-record → contact bindings that routes look up, expiry, the
//! change events (future `E_UL_*`), and persistence across restarts.
//!
//! # Layout
//! - [`config`]: [`LocationConfig`], the `[location]` table of `sipbox.toml`;
//! - `registrar`: [`Location::save`]: a REGISTER [`Message`](crate::sip::Message) → validated update → [`RegisterOutcome`],
//!   plus AOR and Contact canonicalisation;
//! - `store`: the in-memory index and the binding-update rules, on explicit time;
//! - `persist`: write-back to an embedded redb database from one writer thread;
//! - `clock`: unix seconds ↔ tokio instants, and the `Date` header.
//!
//! # Shape
//! [`Location`] is a cheap-clone handle (`Arc<Shared>`, the mini-redis `Db`
//! pattern). The index sits behind a std `Mutex`: every critical section is
//! short, never awaits, and never touches the disk, so an async mutex would
//! only add cost. Inside the lock a change is queued for persistence
//! (non-blocking), so the database sees changes in the order they happened.
//! Right after the lock the change listener gets the changes of that one
//! mutation, in order; two mutations racing on different threads may reach
//! it in either order. One background task purges expired bindings,
//! sleeping until the earliest expiry or until a `Notify` says an earlier one
//! appeared. When the last clone of the handle is dropped, a guard
//! stops that task and the writer thread (after committing what is queued).

pub mod config;

pub(crate) mod clock;
mod persist;
mod registrar;
mod store;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use config::LocationConfig;

use crate::transport::NextHop;

use clock::Clock;
use persist::Persist;
use store::{Change, Store};

/// The synchronous change listener ([`Location::open_with_listener`]).
pub type Listener = Box<dyn Fn(&LocationEvent) + Send + Sync>;

/// One registered contact of an address-of-record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    /// Canonical address-of-record: `user`, or `user@host` with `use_domain`.
    pub aor: String,
    /// The Contact URI as registered, without angle brackets.
    pub contact: String,
    /// The contact's q-value (0.0..=1.0), when the UA sent one.
    pub q: Option<f32>,
    /// When the binding expires, in unix seconds.
    pub expires_at: u64,
    /// Call-ID of the REGISTER that last wrote the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from, when it differs from the Contact's own
    /// address (NAT): requests for the contact go there. Stored as its
    /// canonical text, `"udp:ip:port"` (IPv6 in brackets).
    pub received: Option<NextHop>,
    /// The REGISTER's User-Agent header.
    pub user_agent: Option<String>,
    /// When the binding was last written, in unix seconds.
    pub last_modified: u64,
}

/// A change to the location table, as given to the location's [`Listener`].
///
/// For one REGISTER the order is: `ContactDeleted`s, then `ContactInserted`/
/// `Updated`/`Refreshed` in Contact order; `AorInserted` comes right before
/// the AOR's first `ContactInserted`, `AorDeleted` right after its last
/// `ContactDeleted`.
#[derive(Clone, Debug, PartialEq)]
pub enum LocationEvent {
    /// An AOR got its first binding.
    AorInserted(String),
    /// An AOR lost its last binding.
    AorDeleted(String),
    /// A new binding.
    ContactInserted(Binding),
    /// A binding changed more than its expiry: contact text, q, received,
    /// User-Agent, or Call-ID (the UA restarted its registration).
    ContactUpdated(Binding),
    /// A re-registration that changed only the expiry.
    ContactRefreshed(Binding),
    /// A binding went away: unregistered, removed, or expired.
    ContactDeleted(Binding),
}

/// The answer to a REGISTER, for the caller to send (`ServerTx::reply`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// Status code: 200, or 400 / 423 / 500 / 503 (see [`Location::save`]).
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Extra headers in order: one `Contact` per live binding
    /// (`<uri>;expires=N[;q=Q]`) and `Date` on 200; `Min-Expires` on 423.
    pub headers: Vec<(String, String)>,
}

/// Handle to the location service. Cheap to clone; every clone sees the same
/// bindings. Owns the expiry task and the persistence writer, which stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Location {
    shared: Arc<Shared>,
    /// Dropped with the last handle; stops the background work.
    _guard: Arc<DropGuard>,
}

struct Shared {
    cfg: LocationConfig,
    clock: Clock,
    state: Mutex<State>,
    /// Called with every change, in order, by the task that made it (see
    /// [`Location::open_with_listener`]).
    listener: Option<Listener>,
    /// Wakes the purge task: an earlier expiry appeared, or shutdown.
    purge_wake: Notify,
    persist: Option<Persist>,
}

struct State {
    store: Store,
    shutdown: bool,
}

struct DropGuard {
    shared: Arc<Shared>,
}

impl Location {
    /// Opens the location service: validates `cfg`, loads persisted bindings
    /// (dropping expired ones) and starts the expiry task and, with a
    /// `db_path`, the writer thread. Loading reads the database file on the
    /// calling thread: call it at start-up, not on a busy async worker.
    ///
    /// Nothing is told of the changes (see
    /// [`open_with_listener`](Self::open_with_listener)).
    ///
    /// # Errors
    /// An inconsistent config, a database that cannot be opened (including
    /// one already open in this or another process), or no tokio runtime.
    pub fn open(cfg: &LocationConfig) -> anyhow::Result<Location> {
        Location::start(cfg, None)
    }

    /// As [`open`](Self::open), with the one change listener: it is called
    /// with each change right after the mutation that made it, outside the
    /// lock, by the task that made it, so it cannot fall behind and lose
    /// changes under load (the registrar's E_UL_* events, which resume calls
    /// waiting for a device to register, go this way: `usrloc::listener`).
    /// The changes of one mutation arrive in order; those of concurrent
    /// mutations are not ordered between them. It must not block.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_listener(cfg: &LocationConfig, listener: Listener) -> anyhow::Result<Location> {
        Location::start(cfg, Some(listener))
    }

    fn start(cfg: &LocationConfig, listener: Option<Listener>) -> anyhow::Result<Location> {
        cfg.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("Location::open must be called within a tokio runtime"))?;
        let clock = Clock::new();
        let mut store = Store::default();
        let persisted = match &cfg.db_path {
            Some(path) => {
                let (db, bindings) = persist::open(path, clock.now_unix())?;
                for b in bindings {
                    match registrar::contact_key(&b.contact) {
                        Some(key) => store.insert_loaded(key, b),
                        None => tracing::warn!(contact = %b.contact, "skipping persisted binding with a bad contact"),
                    }
                }
                tracing::info!(path = %path.display(), bindings = store.len(), "location database loaded");
                Some(db)
            }
            None => None,
        };

        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let persist = persisted.and_then(|db| {
                let weak = weak.clone();
                // The resync snapshot reads the index under its lock, with the
                // sequence number of the last op already reflected in it.
                let snapshot: persist::Snapshot = Box::new(move || {
                    let shared = weak.upgrade()?;
                    let state = shared.lock();
                    let seq = shared.persist.as_ref().map_or(0, Persist::seq);
                    Some((state.store.all(0), seq))
                });
                match Persist::start(db, snapshot) {
                    Ok(p) => Some(p),
                    Err(err) => {
                        tracing::error!(error = %format!("{err:#}"), "location persistence disabled");
                        None
                    }
                }
            });
            Shared {
                cfg: cfg.clone(),
                clock,
                state: Mutex::new(State { store, shutdown: false }),
                listener,
                purge_wake: Notify::new(),
                persist,
            }
        });
        if cfg.db_path.is_some() && shared.persist.is_none() {
            anyhow::bail!("could not start the location writer thread");
        }
        runtime.spawn(purge_expired_task(shared.clone()));
        Ok(Location { _guard: Arc::new(DropGuard { shared: shared.clone() }), shared })
    }

    /// Live bindings of an AOR, given as the AOR itself (`alice`, or
    /// `alice@example.com` with `use_domain`) or as a SIP URI
    /// (`sip:alice@example.com`): q descending (no q ranks as 1.0), then newest first.
    pub fn lookup(&self, aor_or_uri: &str) -> Vec<Binding> {
        let Some(aor) = registrar::aor_from_input(&self.shared.cfg, aor_or_uri) else { return Vec::new() };
        let now = self.shared.clock.now_unix();
        self.shared.lock().store.lookup(&aor, now)
    }

    /// Removes the bindings of an AOR (given as in [`lookup`](Self::lookup)):
    /// all of them, or only the one matching `contact` (URI comparison as for
    /// REGISTER). Returns how many were removed.
    pub fn unregister(&self, aor_or_uri: &str, contact: Option<&str>) -> usize {
        let Some(aor) = registrar::aor_from_input(&self.shared.cfg, aor_or_uri) else { return 0 };
        let key = match contact.map(registrar::contact_key) {
            None => None,
            Some(Some(key)) => Some(key),
            Some(None) => return 0,
        };
        self.shared.mutate(|store, _now, changes| store.remove(&aor, key.as_deref(), changes))
    }

    /// Every live binding, AORs in name order.
    pub fn dump(&self) -> Vec<Binding> {
        let now = self.shared.clock.now_unix();
        self.shared.lock().store.all(now)
    }

    /// Completes when every change made so far is committed to the database
    /// (at once without `db_path`), or fails after `within`: the registrar
    /// answers a REGISTER 200 only after this, so an acknowledged binding
    /// survives `kill -9`. Does not block a thread: the writer's group commit
    /// covers every REGISTER queued meanwhile.
    ///
    /// # Errors
    /// Not committed within `within` (the disk is failing or overloaded).
    pub async fn durable(&self, within: std::time::Duration) -> anyhow::Result<()> {
        let Some(p) = &self.shared.persist else { return Ok(()) };
        tokio::time::timeout(within, p.durable())
            .await
            .map_err(|_| anyhow::anyhow!("the location database did not commit within {within:?}"))
    }

    /// Blocks until every change made so far is committed to the database
    /// (a no-op without `db_path`). Blocking: call it at shutdown, from
    /// `spawn_blocking`, or in tests — not on a busy async worker.
    ///
    /// # Errors
    /// The last commit failed (disk full, ...) or the writer has stopped.
    pub fn flush(&self) -> anyhow::Result<()> {
        match &self.shared.persist {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }
}

impl Shared {
    /// The index lock. A panic while holding it cannot leave the index
    /// half-updated in a way later calls would trip on (mutations build the
    /// new list before swapping it in), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a mutation under the lock, queues its persistence ops (in order,
    /// still under the lock), then gives its changes to the listener and wakes
    /// the purge task if the earliest expiry moved earlier.
    fn mutate<R>(&self, f: impl FnOnce(&mut Store, u64, &mut Vec<Change>) -> R) -> R {
        let mut changes = Vec::new();
        let now = self.clock.now_unix();
        let (result, wake, published) = {
            let mut state = self.lock();
            let before = state.store.next_expiry();
            let result = f(&mut state.store, now, &mut changes);
            let published = self.publish(changes);
            let after = state.store.next_expiry();
            let wake = match (before, after) {
                (Some(b), Some(a)) => a < b,
                (None, Some(_)) => true,
                _ => false,
            };
            (result, wake, published)
        };
        // Notify after releasing the lock so the task does not wake into a held mutex.
        if wake {
            self.purge_wake.notify_one();
        }
        self.tell_listener(&published);
        result
    }

    /// Gives published changes to the listener. Call it outside the lock: the
    /// listener may raise events whose handlers look the location up.
    fn tell_listener(&self, published: &[LocationEvent]) {
        if let Some(listener) = &self.listener {
            published.iter().for_each(listener);
        }
    }

    /// Queues `changes` for persistence; returns them as events for the
    /// listener.
    fn publish(&self, changes: Vec<Change>) -> Vec<LocationEvent> {
        let mut published = Vec::with_capacity(changes.len());
        for change in changes {
            let event = match change {
                Change::AorInserted(aor) => LocationEvent::AorInserted(aor),
                Change::AorDeleted(aor) => LocationEvent::AorDeleted(aor),
                Change::Inserted(b) => {
                    self.persist_put(&b);
                    LocationEvent::ContactInserted(b)
                }
                Change::Updated { previous, current } => {
                    if previous.contact != current.contact {
                        self.persist_delete(&previous);
                    }
                    self.persist_put(&current);
                    LocationEvent::ContactUpdated(current)
                }
                Change::Refreshed(b) => {
                    self.persist_put(&b);
                    LocationEvent::ContactRefreshed(b)
                }
                Change::Deleted(b) => {
                    self.persist_delete(&b);
                    LocationEvent::ContactDeleted(b)
                }
            };
            published.push(event);
        }
        published
    }

    fn persist_put(&self, b: &Binding) {
        if let Some(p) = &self.persist {
            p.put(b.clone());
        }
    }

    fn persist_delete(&self, b: &Binding) {
        if let Some(p) = &self.persist {
            p.delete(&b.aor, &b.contact);
        }
    }
}

/// Removes bindings as they expire: sleeps until the earliest expiry, or
/// until woken because an earlier one appeared (or shutdown).
async fn purge_expired_task(shared: Arc<Shared>) {
    loop {
        let (next, published) = {
            let now = shared.clock.now_unix();
            let mut changes = Vec::new();
            let mut state = shared.lock();
            if state.shutdown {
                return;
            }
            state.store.purge_expired(now, &mut changes);
            (state.store.next_expiry(), shared.publish(changes))
        };
        shared.tell_listener(&published);
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(shared.clock.deadline(at)) => {}
                    () = shared.purge_wake.notified() => {}
                }
            }
            None => shared.purge_wake.notified().await,
        }
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.purge_wake.notify_one();
        if let Some(p) = &self.shared.persist {
            p.shutdown();
        }
    }
}
