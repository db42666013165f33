//! Tests of the per-transaction index: the expiry hook (runs once, at the
//! last deadline, by a host timer, also when a raise or the sweep purges
//! first; never after a cancel) and `cancel_notifications`.
//! Timers run on paused tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::ebr::{Filters, Notification, NotifyHandler};
use crate::events::{Event, EventBus, EventsConfig, Params, SinkSchemes};

fn bus() -> EventBus {
    EventBus::new(&EventsConfig::default(), SinkSchemes::new(), None).expect("bus")
}

fn any() -> Filters {
    Filters::parse(&[]).expect("no filters")
}

/// Counts the hook's runs.
fn hook(bus: &EventBus, tid: u64) -> Arc<AtomicUsize> {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    assert!(bus.on_notifications_expired(tid, move || {
        r.fetch_add(1, Ordering::SeqCst);
    }));
    runs
}

struct Tids(mpsc::UnboundedSender<u64>);

impl NotifyHandler for Tids {
    fn notify(&self, n: Notification) -> bool {
        let _ = self.0.send(n.tid);
        true
    }
}

fn subscribe(bus: &EventBus, event: &str, tid: u64, secs: u64) {
    bus.notify_on_event(event, any(), "r".into(), tid, Duration::from_secs(secs)).expect("subscribe");
}

#[tokio::test(start_paused = true)]
async fn hook_runs_once_when_the_last_subscription_expires() {
    let bus = bus();
    subscribe(&bus, "E_A", 7, 5);
    subscribe(&bus, "E_B", 7, 10);
    subscribe(&bus, "E_A", 8, 60);
    let runs = hook(&bus, 7);
    let other = hook(&bus, 8);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // One of two expired: the transaction still has a live subscription.
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(bus.notify_count(7), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(bus.notify_count(7), 0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "ran more than once");
    assert_eq!(other.load(Ordering::SeqCst), 0, "another transaction's hook ran");
    assert_eq!(bus.ebr_stats().notify_subscriptions, 1);
}

#[tokio::test(start_paused = true)]
async fn a_later_subscription_pushes_the_expiry_back() {
    let bus = bus();
    subscribe(&bus, "E", 3, 5);
    let runs = hook(&bus, 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    subscribe(&bus, "E", 3, 10);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_raise_that_purges_the_expired_subscription_runs_the_hook() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bus = EventBus::new(&EventsConfig::default(), SinkSchemes::new(), Some(Arc::new(Tids(tx)))).expect("bus");
    subscribe(&bus, "E", 4, 5);
    let runs = hook(&bus, 4);
    // Jump the clock without letting the timer task run, then raise: the
    // raise meets the expired entry first and removes it.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(bus.raise(Event::new("E", Params::new())), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(rx.try_recv().is_err(), "an expired subscription was notified");
}

#[tokio::test(start_paused = true)]
async fn cancelled_subscriptions_do_not_run_the_hook_nor_notify() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bus = EventBus::new(&EventsConfig::default(), SinkSchemes::new(), Some(Arc::new(Tids(tx)))).expect("bus");
    subscribe(&bus, "E", 5, 30);
    subscribe(&bus, "E", 5, 60);
    subscribe(&bus, "E", 6, 60);
    let runs = hook(&bus, 5);
    assert_eq!(bus.cancel_notifications(5), 2);
    assert_eq!(bus.cancel_notifications(5), 0);
    assert_eq!(bus.raise(Event::new("E", Params::new())), 1);
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.expect("notified").expect("open"), 6);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(rx.try_recv().is_err());
    // Without subscriptions there is nothing to hook.
    assert!(!bus.on_notifications_expired(5, || {}));
}
