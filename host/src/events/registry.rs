//! [`EventBus`]: the registry of published events and their subscribers.
//!
//! One `RwLock` guards the table. `raise` takes it shared and only
//! `try_send`s into queues, so raisers never wait on each other or on a
//! destination; writers (publish, subscribe, purge) hold it briefly and
//! never await. Expired subscribers are removed lazily — on the next raise
//! of their event, on a subscribe to it, on a listing — and by a periodic
//! sweep, so a subscription to an event that is never raised also goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::ebr::{Ebr, NotifyHandler};
use super::sink::{SinkContext, SinkSchemes};
use super::subscription::{Counters, Queued, Subscription};
use super::{Event, EventError, EventsConfig, PREDEFINED_EVENTS, check_name};
use crate::shutdown::Shutdown;

/// How often expired subscribers are swept when nothing else purges them.
const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// The event registry: publish, subscribe, raise. Cheap to clone; every
/// clone is the same registry. Subscriber tasks stop when the last clone
/// is dropped.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: EventsConfig,
    ctx: SinkContext,
    table: RwLock<Table>,
    /// Per destination socket; kept after unsubscribe so stats stay monotonic.
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
    raised: AtomicU64,
    /// New subscriptions refused by the destination policy.
    refused_destination: AtomicU64,
    /// New subscriptions refused by `max_subscriptions[_per_destination]`.
    refused_limit: AtomicU64,
    runtime: Option<tokio::runtime::Handle>,
    /// What the subscribers' delivery tasks run under ([`EventBus::shutdown`]).
    deliveries: Shutdown,
    /// Event-based routing waiters and notify subscriptions.
    ebr: Ebr,
    /// Sees every raised event first ([`EventBus::observed`]).
    observer: Option<RaiseObserver>,
}

/// Called with every event raised on a bus, before it is delivered (the
/// sample harness records them this way). Must not block.
pub type RaiseObserver = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
struct Table {
    ids: HashMap<Arc<str>, u32>,
    events: Vec<Slot>,
}

struct Slot {
    name: Arc<str>,
    /// Newest first, as OpenSIPS prepends.
    subs: Vec<Arc<Subscription>>,
}

impl EventBus {
    /// A registry with the predefined events published and `cfg.subscribe`
    /// applied, parsing subscriber sockets with `schemes` (the transports
    /// `sinks::schemes` provides; an empty table for a bus that only
    /// raises), and handing EBR notifications to `notify` (the runtime's
    /// invoker; without one they are dropped and counted). Call it inside a
    /// tokio runtime: subscribers' delivery tasks run there.
    ///
    /// # Errors
    /// The first failing `[[events.subscribe]]` entry, naming the problem.
    pub fn new(
        cfg: &EventsConfig,
        schemes: SinkSchemes,
        notify: Option<Arc<dyn NotifyHandler>>,
    ) -> Result<EventBus, EventError> {
        EventBus::observed(cfg, schemes, notify, None)
    }

    /// As [`new`](Self::new), with `observer` called for every event raised.
    /// An observed bus reports every event as having a subscriber
    /// ([`has_subscribers`](Self::has_subscribers)), so that raisers which
    /// skip unheard events raise them all.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn observed(
        cfg: &EventsConfig,
        schemes: SinkSchemes,
        notify: Option<Arc<dyn NotifyHandler>>,
        observer: Option<RaiseObserver>,
    ) -> Result<EventBus, EventError> {
        super::destinations::Destinations::from_config(cfg)
            .map_err(|e| EventError::DestinationRefused(format!("bad [events] policy: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current().ok();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            // Sinks raise E_FLATSTORE_ROTATION through a weak handle: a
            // subscription's sink must not keep its own bus alive.
            let weak = weak.clone();
            let raiser = Box::new(move |event| {
                if let Some(inner) = weak.upgrade() {
                    EventBus { inner }.raise(event);
                }
            });
            Inner {
                cfg: cfg.clone(),
                ctx: SinkContext::new(cfg, schemes, raiser),
                table: RwLock::new(Table::default()),
                counters: Mutex::new(BTreeMap::new()),
                raised: AtomicU64::new(0),
                refused_destination: AtomicU64::new(0),
                refused_limit: AtomicU64::new(0),
                runtime: runtime.clone(),
                deliveries: Shutdown::new(),
                ebr: Ebr::new(cfg, runtime.clone(), notify),
                observer,
            }
        });
        let bus = EventBus { inner };
        for name in PREDEFINED_EVENTS {
            let _ = bus.publish(name);
        }
        if let Some(rt) = runtime {
            rt.spawn(purge_task(Arc::downgrade(&bus.inner)));
        }
        for s in &cfg.subscribe {
            bus.subscribe(&s.event, &s.socket, s.expire)?;
        }
        Ok(bus)
    }

    /// The EBR half of the registry (see [`super::ebr`]).
    pub(super) fn ebr(&self) -> &Ebr {
        &self.inner.ebr
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.inner.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an event name; idempotent. Returns its id (dense, in
    /// publish order).
    ///
    /// # Errors
    /// [`EventError::BadName`]: empty, longer than 64, or with whitespace.
    pub fn publish(&self, name: &str) -> Result<u32, EventError> {
        if let Some(&id) = self.read().ids.get(name) {
            return Ok(id);
        }
        check_name(name)?;
        let mut table = self.write();
        if let Some(&id) = table.ids.get(name) {
            return Ok(id);
        }
        let id = u32::try_from(table.events.len()).map_err(|_| EventError::BadName(name.to_owned()))?;
        let name: Arc<str> = Arc::from(name);
        table.ids.insert(name.clone(), id);
        table.events.push(Slot { name, subs: Vec::new() });
        Ok(id)
    }

    /// The id of a published event.
    pub fn event_id(&self, name: &str) -> Option<u32> {
        self.read().ids.get(name).copied()
    }

    /// Queues `event` for every live subscriber without waiting: a full
    /// queue drops the event for that subscriber (counted). Publishes the
    /// event if it is new (a custom event springs into existence when first
    /// raised). Returns how many subscribers it was queued for, EBR
    /// waiters and notify subscriptions that matched included.
    pub fn raise(&self, event: Event) -> usize {
        self.inner.raised.fetch_add(1, Ordering::Relaxed);
        if let Some(observe) = &self.inner.observer {
            observe(&event);
        }
        let now = Instant::now();
        // EBR first: a waiter's resume should not wait behind sink queues.
        let ebr = self.inner.ebr.dispatch(&event, now);
        let event = Arc::new(event);
        let (mut reached, mut expired) = (ebr, false);
        {
            let table = self.read();
            let Some(&id) = table.ids.get(&*event.name) else {
                drop(table);
                if let Err(e) = self.publish(&event.name) {
                    tracing::debug!(error = %e, "raise of an event with a bad name");
                }
                return ebr;
            };
            for sub in table.events.get(id as usize).map_or(&[][..], |s| &s.subs[..]) {
                if sub.is_expired(now) {
                    expired = true;
                    continue;
                }
                match sub.offer(&event) {
                    Queued::Yes => reached += 1,
                    Queued::Full => {
                        tracing::debug!(socket = %sub.socket, event = %event.name, "event queue full; dropped")
                    }
                    Queued::Closed => {}
                }
            }
        }
        if expired {
            self.purge(Some(&event.name), now);
        }
        reached
    }

    /// Whether the event has a live subscriber, EVI or EBR (OpenSIPS `evi_probe_event`):
    /// lets raisers skip building parameters nobody will read.
    pub fn has_subscribers(&self, name: &str) -> bool {
        if self.inner.observer.is_some() {
            return true;
        }
        let now = Instant::now();
        let table = self.read();
        table
            .ids
            .get(name)
            .and_then(|&id| table.events.get(id as usize))
            .is_some_and(|slot| slot.subs.iter().any(|s| !s.is_expired(now)))
            || self.inner.ebr.has_subscribers(name, now)
    }

    /// Subscribes `socket` to `event` (publishing the event if unknown).
    /// `expire`: None = never, Some(n) = n seconds (ignored by transports
    /// that never expire: `route:`, `rabbitmq:`), Some(0) = unsubscribe.
    /// The same (event, socket) again refreshes the subscription.
    ///
    /// # Errors
    /// A bad event name, an unknown transport, a malformed socket, a
    /// destination that refuses ([`EventError::Refused`]), no runtime.
    pub fn subscribe(&self, event: &str, socket: &str, expire: Option<u32>) -> Result<(), EventError> {
        check_name(event)?;
        let sink = self.inner.ctx.parse(socket)?;
        let key = sink.match_key();
        let now = Instant::now();
        if expire == Some(0) {
            let mut table = self.write();
            if let Some(&id) = table.ids.get(event)
                && let Some(slot) = table.events.get_mut(id as usize)
            {
                slot.subs.retain(|s| s.key != key);
            }
            return Ok(());
        }
        let id = self.publish(event)?;
        {
            let table = self.read();
            if let Some(existing) = table.events.get(id as usize).and_then(|s| s.subs.iter().find(|s| s.key == key))
                && !existing.is_expired(now)
            {
                existing.refresh(expire, now);
                return Ok(());
            }
        }
        if let Err(e) = sink.check() {
            if matches!(e, EventError::DestinationRefused(_)) {
                self.inner.refused_destination.fetch_add(1, Ordering::Relaxed);
                tracing::info!(event, socket = %sink.socket(), error = %e, "event subscription refused");
            }
            return Err(e);
        }
        let runtime = match &self.inner.runtime {
            Some(rt) => rt.clone(),
            None => tokio::runtime::Handle::try_current().map_err(|_| EventError::NoRuntime)?,
        };
        let counters = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sink.socket().to_owned())
            .or_default()
            .clone();
        let mut table = self.write();
        let Some(slot) = table.events.get_mut(id as usize) else {
            return Err(EventError::NotPublished(event.to_owned()));
        };
        slot.subs.retain(|s| !s.is_expired(now));
        // Subscribed concurrently by someone else meanwhile: refresh theirs.
        if let Some(existing) = slot.subs.iter().find(|s| s.key == key) {
            existing.refresh(expire, now);
            return Ok(());
        }
        self.check_limits(&table, sink.socket(), now)?;
        let Some(slot) = table.events.get_mut(id as usize) else {
            return Err(EventError::NotPublished(event.to_owned()));
        };
        let sub = Subscription::start(
            sink,
            key,
            expire,
            self.inner.cfg.queue_len,
            counters,
            &runtime,
            &self.inner.deliveries,
        );
        slot.subs.insert(0, sub);
        Ok(())
    }

    /// Refuses a new subscription to `socket` past `max_subscriptions` (live
    /// ones, all events) or `max_subscriptions_per_destination`, counting it.
    /// O(subscriptions), under the write lock: bounded by the cap itself.
    fn check_limits(&self, table: &Table, socket: &str, now: Instant) -> Result<(), EventError> {
        let cfg = &self.inner.cfg;
        let live = || table.events.iter().flat_map(|s| s.subs.iter()).filter(|s| !s.is_expired(now));
        let refuse = |why: String| {
            self.inner.refused_limit.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(socket, reason = %why, "event subscription refused");
            Err(EventError::SubscriptionLimit(why))
        };
        let total = live().count();
        if total >= cfg.max_subscriptions {
            return refuse(format!(
                "{total} subscriptions alive (events.max_subscriptions = {})",
                cfg.max_subscriptions
            ));
        }
        let same = live().filter(|s| &*s.socket == socket).count();
        if same >= cfg.max_subscriptions_per_destination {
            return refuse(format!(
                "{socket} already has {same} subscriptions (events.max_subscriptions_per_destination = {})",
                cfg.max_subscriptions_per_destination
            ));
        }
        Ok(())
    }

    /// Every published event with its id, in id order (`events_list`).
    pub fn events(&self) -> Vec<(String, u32)> {
        let table = self.read();
        table.events.iter().zip(0u32..).map(|(s, id)| (s.name.to_string(), id)).collect()
    }

    /// `subscribers_list`: with no event, `{"Events":[{"name","id","Subscribers":[..]}]}`
    /// for the events that have subscribers; with one,
    /// `{"Event":{"name","id","Subscribers":[..]}}`. A subscriber is
    /// `{"socket","expire":N,"ttl":left}` or `{"socket","expire":"never"}`.
    /// Expired subscribers are purged first.
    ///
    /// # Errors
    /// [`EventError::NotPublished`] for an unknown event.
    pub fn subscribers(&self, event: Option<&str>) -> Result<serde_json::Value, EventError> {
        let now = Instant::now();
        self.purge(event, now);
        let table = self.read();
        let render = |id: u32, slot: &Slot| {
            let subs: Vec<_> = slot.subs.iter().map(|s| s.to_json(now)).collect();
            json!({ "name": &*slot.name, "id": id, "Subscribers": subs })
        };
        match event {
            None => {
                let events: Vec<_> = table
                    .events
                    .iter()
                    .zip(0u32..)
                    .filter(|(s, _)| !s.subs.is_empty())
                    .map(|(s, id)| render(id, s))
                    .collect();
                Ok(json!({ "Events": events }))
            }
            Some(name) => {
                let (id, slot) = lookup(&table, name)?;
                Ok(json!({ "Event": render(id, slot) }))
            }
        }
    }

    /// `subscribers_list EVENT SOCKET`: `{"Event":{"name","id","Subscriber":{..}}}`.
    ///
    /// # Errors
    /// [`EventError::NotPublished`], a bad socket, or
    /// [`EventError::NoSuchSubscriber`].
    pub fn subscriber(&self, event: &str, socket: &str) -> Result<serde_json::Value, EventError> {
        let now = Instant::now();
        let key = self.inner.ctx.parse(socket)?.match_key();
        self.purge(Some(event), now);
        let table = self.read();
        let (id, slot) = lookup(&table, event)?;
        let sub =
            slot.subs.iter().find(|s| s.key == key).ok_or_else(|| EventError::NoSuchSubscriber(socket.to_owned()))?;
        Ok(json!({ "Event": { "name": &*slot.name, "id": id, "Subscriber": sub.to_json(now) } }))
    }

    /// Counters, for `get_statistics`: totals `events_raised`,
    /// `events_delivered`, `events_dropped` (queue full), `events_failed`
    /// (failed attempts: a reconnecting `tcp:` sink counts each retry),
    /// then per destination `events_delivered:<socket>`, `events_dropped:<socket>`,
    /// `events_failed:<socket>` (sockets in sorted order).
    pub fn stats(&self) -> Vec<(String, u64)> {
        let counters = self.inner.counters.lock().unwrap_or_else(|p| p.into_inner());
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sum = |f: fn(&Counters) -> &AtomicU64| counters.values().map(|c| get(f(c))).sum::<u64>();
        let mut out = vec![
            ("events_raised".to_owned(), self.inner.raised.load(Ordering::Relaxed)),
            ("events_delivered".to_owned(), sum(|c| &c.delivered)),
            ("events_dropped".to_owned(), sum(|c| &c.dropped)),
            ("events_failed".to_owned(), sum(|c| &c.failed)),
            ("events_subscriptions".to_owned(), self.live_subscriptions() as u64),
            ("events_subscribe_refused_destination".to_owned(), self.inner.refused_destination.load(Ordering::Relaxed)),
            ("events_subscribe_refused_limit".to_owned(), self.inner.refused_limit.load(Ordering::Relaxed)),
            ("events_delivery_refused".to_owned(), self.inner.ctx.destinations().refused_deliveries()),
        ];
        for (socket, c) in counters.iter() {
            out.push((format!("events_delivered:{socket}"), get(&c.delivered)));
            out.push((format!("events_dropped:{socket}"), get(&c.dropped)));
            out.push((format!("events_failed:{socket}"), get(&c.failed)));
        }
        out
    }

    /// Stops every subscriber's delivery task and waits until they have
    /// ended: each lets the delivery in progress finish (briefly), closes its
    /// sink (connections, files) and drops what is still queued. Later raises
    /// reach no external subscriber (they count as failed); EBR is not affected.
    pub async fn shutdown(&self) {
        self.inner.deliveries.stop().await;
    }

    /// Removes expired subscribers of one event, or of all.
    fn purge(&self, event: Option<&str>, now: Instant) {
        let needed = {
            let table = self.read();
            match event {
                Some(name) => table
                    .ids
                    .get(name)
                    .and_then(|&id| table.events.get(id as usize))
                    .is_some_and(|s| s.subs.iter().any(|s| s.is_expired(now))),
                None => table.events.iter().any(|s| s.subs.iter().any(|s| s.is_expired(now))),
            }
        };
        if !needed {
            return;
        }
        let mut table = self.write();
        for slot in table.events.iter_mut() {
            if event.is_none_or(|name| *slot.name == *name) {
                slot.subs.retain(|s| {
                    let keep = !s.is_expired(now);
                    if !keep {
                        tracing::debug!(event = %slot.name, socket = %s.socket, "event subscription expired");
                    }
                    keep
                });
            }
        }
    }

    /// Subscriptions not expired.
    fn live_subscriptions(&self) -> usize {
        let now = Instant::now();
        self.read().events.iter().flat_map(|s| s.subs.iter()).filter(|s| !s.is_expired(now)).count()
    }

    /// Number of live-or-not-yet-purged subscriptions (tests).
    #[cfg(test)]
    pub(crate) fn subscription_count(&self) -> usize {
        self.read().events.iter().map(|s| s.subs.len()).sum()
    }
}

fn lookup<'t>(table: &'t Table, name: &str) -> Result<(u32, &'t Slot), EventError> {
    table
        .ids
        .get(name)
        .and_then(|&id| table.events.get(id as usize).map(|s| (id, s)))
        .ok_or_else(|| EventError::NotPublished(name.to_owned()))
}

/// Sweeps expired subscribers until the bus is gone.
async fn purge_task(bus: Weak<Inner>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = bus.upgrade() else { return };
        let now = Instant::now();
        inner.ebr.purge(now);
        EventBus { inner }.purge(None, now);
    }
}
