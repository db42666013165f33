//! One subscriber: its sink, bounded queue, delivery task, expiry and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{DeliverFut, Event, Sink, SinkError};
use crate::shutdown::Shutdown;

/// First and longest pause between retries of a failed delivery (sinks
/// that reconnect, see [`Sink::retry_on_error`]).
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// At shutdown, how long the delivery in progress may take to finish (so an
/// event is not cut off mid-write), and then how long the sink may take to
/// close. Retries and queued events are given up.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Delivery counters of one destination (shared by every subscription to
/// the same socket; they outlive the subscriptions).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events the sink accepted.
    pub delivered: AtomicU64,
    /// Events not queued because the subscriber's queue was full.
    pub dropped: AtomicU64,
    /// Failed delivery attempts: events given up, plus each failed try of a
    /// sink that retries (so an outage of a `tcp:` destination shows here).
    pub failed: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One (event, socket) subscriber.
pub(crate) struct Subscription {
    pub socket: Arc<str>,
    pub key: String,
    tx: mpsc::Sender<Arc<Event>>,
    timing: Mutex<Timing>,
    pub counters: Arc<Counters>,
    supports_expire: bool,
    /// The delivery task, stopped when the subscription goes (unsubscribed,
    /// expired, bus dropped) even if its sink is stuck mid-delivery.
    task: tokio::task::AbortHandle,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy)]
struct Timing {
    since: Instant,
    /// Seconds after `since`; None = never.
    expire: Option<u32>,
}

/// What `try_send` did with an event.
pub(crate) enum Queued {
    Yes,
    Full,
    Closed,
}

impl Subscription {
    /// Starts a subscriber: its queue and the task draining it into `sink`,
    /// spawned under `shutdown` (see [`drain`]).
    pub fn start(
        sink: Arc<dyn Sink>,
        key: String,
        expire: Option<u32>,
        queue_len: usize,
        counters: Arc<Counters>,
        runtime: &tokio::runtime::Handle,
        shutdown: &Shutdown,
    ) -> Arc<Subscription> {
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        let supports_expire = sink.supports_expire();
        let socket = Arc::from(sink.socket());
        let task = shutdown.spawn_on(drain(rx, sink, counters.clone(), shutdown.clone()), runtime).abort_handle();
        Arc::new(Subscription {
            socket,
            key,
            tx,
            timing: Mutex::new(Timing { since: Instant::now(), expire: expire.filter(|_| supports_expire) }),
            counters,
            supports_expire,
            task,
        })
    }

    fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// OpenSIPS: expired once `subscription_time + expire < now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        let t = self.timing();
        t.expire.is_some_and(|e| t.since + Duration::from_secs(u64::from(e)) < now)
    }

    /// A re-subscribe: restart the lifetime (with the new expire, when the
    /// transport honours expiry at all).
    pub fn refresh(&self, expire: Option<u32>, now: Instant) {
        let mut t = self.timing.lock().unwrap_or_else(|p| p.into_inner());
        t.since = now;
        t.expire = expire.filter(|_| self.supports_expire);
    }

    /// `(expire, seconds left)`, None when it never expires.
    pub fn ttl(&self, now: Instant) -> Option<(u32, u64)> {
        let t = self.timing();
        t.expire.map(|e| {
            let end = t.since + Duration::from_secs(u64::from(e));
            (e, end.saturating_duration_since(now).as_secs())
        })
    }

    /// Queues an event without waiting.
    pub fn offer(&self, event: &Arc<Event>) -> Queued {
        match self.tx.try_send(event.clone()) {
            Ok(()) => Queued::Yes,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Counters::bump(&self.counters.dropped);
                Queued::Full
            }
            // The delivery task is gone (it panicked in a sink): count as failed.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Counters::bump(&self.counters.failed);
                Queued::Closed
            }
        }
    }

    /// The subscriber's JSON for `subscribers_list`.
    pub fn to_json(&self, now: Instant) -> serde_json::Value {
        match self.ttl(now) {
            Some((expire, ttl)) => serde_json::json!({ "socket": &*self.socket, "expire": expire, "ttl": ttl }),
            None => serde_json::json!({ "socket": &*self.socket, "expire": "never" }),
        }
    }
}

/// The subscriber's task: one event at a time into the sink, until the
/// subscription is dropped (which aborts it; events still queued for a
/// subscriber that is gone are discarded) or the shutdown signal. On the
/// signal it lets the delivery in progress finish (for [`STOP_GRACE`]),
/// gives up retries and queued events, and closes the sink.
async fn drain(mut rx: mpsc::Receiver<Arc<Event>>, sink: Arc<dyn Sink>, counters: Arc<Counters>, shutdown: Shutdown) {
    let retry = sink.retry_on_error();
    let mut failing = false;
    'events: while let Some(Some(event)) = shutdown.unless_signalled(rx.recv()).await {
        let mut pause = RETRY_MIN;
        loop {
            let Some(delivered) = deliver_unless_stopped(sink.deliver(&event), &shutdown).await else {
                break 'events;
            };
            match delivered {
                Ok(()) => {
                    Counters::bump(&counters.delivered);
                    if failing {
                        tracing::info!(socket = %sink.socket(), "event delivery recovered");
                        failing = false;
                    }
                    break;
                }
                Err(err) => {
                    if failing {
                        tracing::debug!(socket = %sink.socket(), event = %event.name, error = %err, "event delivery failed");
                    } else {
                        tracing::warn!(socket = %sink.socket(), event = %event.name, error = %err, "event delivery failed");
                        failing = true;
                    }
                    Counters::bump(&counters.failed);
                    if !retry || rx.is_closed() {
                        break;
                    }
                    if shutdown.unless_signalled(tokio::time::sleep(pause)).await.is_none() {
                        break 'events;
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
    if tokio::time::timeout(STOP_GRACE, sink.close()).await.is_err() {
        tracing::debug!(socket = %sink.socket(), "event sink did not close in time");
    }
}

/// The delivery's outcome; `None` when the shutdown signal came and the
/// delivery did not finish within [`STOP_GRACE`] after it.
async fn deliver_unless_stopped(mut delivery: DeliverFut<'_>, shutdown: &Shutdown) -> Option<Result<(), SinkError>> {
    match shutdown.unless_signalled(&mut delivery).await {
        Some(outcome) => Some(outcome),
        None => tokio::time::timeout(STOP_GRACE, delivery).await.ok(),
    }
}
