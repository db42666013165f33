//! What the event registry asks the runtime to run — `route:NAME` event
//! routes and EBR notifications — through a bounded queue the runtime drains.
//!
//! # Why a queue
//! The runtime's routes need the bus (they raise, subscribe and wait), and the
//! bus needs something to run `route:` deliveries and notifications with; the
//! location store sits between them too (its listener raises on the bus, and
//! routes look it up). Rather than fill one of them in after construction,
//! the [`Invoker`] — the sending half, which needs nothing — is made first and
//! given to the bus (and to the `route:` sink scheme); the runtime, built last,
//! gets the [`Invocations`] and drains them. So every link is made once, at
//! construction, in dependency order: invoker → bus → location → runtime.
//!
//! Cost, compared with the bus calling the runtime directly: a notification is
//! one `try_send` into this queue instead of a boxed future, and the drain task
//! spawns the invocation as the bus spawned it before (one spawn either way; the
//! queue adds one wake-up of the drain task). A `route:` delivery, which its
//! subscription's task awaits, is one send plus a oneshot back when the route
//! has run, so deliveries of one subscription still run one at a time, in
//! order. In-place waits (`wait-for-event`) never come through here.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use super::{Inner, Invocation, Runtime};
use crate::BoxFut;
use crate::events::ebr::{Notification, NotifyHandler};
use crate::events::{Event, EventRouteHandler};

/// Something the bus asked for.
enum Job {
    /// A `route:NAME` delivery; `done` is told once the route has run.
    Event { route: Arc<str>, event: Event, done: oneshot::Sender<()> },
    /// An EBR notification (it holds its slot among the running ones).
    Notify(Notification),
}

/// A queue of `capacity` jobs between the bus and the runtime: give the
/// [`Invoker`] to the bus and the sink schemes, the [`Invocations`] to
/// [`Runtime::new`]. The queue only holds jobs until the drain task spawns
/// them, so it is full only when that task is starved: then a notification is
/// dropped (and counted, as one over `ebr_max_notify_concurrency` is) and a
/// `route:` delivery waits for room. Room for the notification cap plus some
/// deliveries is plenty; an unused slot costs nothing (tokio allocates queue
/// blocks as they fill).
pub fn invocations(capacity: usize) -> (Invoker, Invocations) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Invoker { tx }, Invocations { rx })
}

/// The sending half: the bus's [`NotifyHandler`] and the `route:` scheme's
/// [`EventRouteHandler`]. Cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    tx: mpsc::Sender<Job>,
}

/// The receiving half, drained by the runtime it is given to.
pub struct Invocations {
    rx: mpsc::Receiver<Job>,
}

impl Invoker {
    /// This invoker as the bus's handler of EBR notifications.
    pub fn notify_handler(&self) -> Arc<dyn NotifyHandler> {
        Arc::new(self.clone())
    }

    /// This invoker as the runner of `route:` event routes.
    pub fn route_handler(&self) -> Arc<dyn EventRouteHandler> {
        Arc::new(self.clone())
    }
}

impl EventRouteHandler for Invoker {
    fn run_event_route(&self, route: Arc<str>, event: Event) -> BoxFut {
        let tx = self.tx.clone();
        Box::pin(async move {
            let (done, ran) = oneshot::channel();
            // A closed queue: the runtime is gone (shutting down); nothing runs.
            if tx.send(Job::Event { route, event, done }).await.is_ok() {
                let _ = ran.await;
            }
        })
    }
}

impl NotifyHandler for Invoker {
    fn notify(&self, notification: Notification) -> bool {
        self.tx.try_send(Job::Notify(notification)).is_ok()
    }
}

impl Invocations {
    /// Runs every job as its own task until the queue closes (the bus, which
    /// holds the invokers, is gone). It holds the runtime weakly: the runtime
    /// owns the bus, so a strong handle here would keep both alive forever,
    /// as the bus's own purge task holds the bus weakly for the same reason.
    pub(super) async fn serve(mut self, runtime: Weak<Inner>) {
        while let Some(job) = self.rx.recv().await {
            let Some(inner) = runtime.upgrade() else { return };
            let runtime = Runtime { inner };
            match job {
                Job::Event { route, event, done } => tokio::spawn(async move {
                    runtime.invoke(None, Invocation::Event { route, event }).await;
                    let _ = done.send(());
                }),
                Job::Notify(Notification { route, event, tid, slot }) => tokio::spawn(async move {
                    runtime.invoke(None, Invocation::Notify { route, event, tid }).await;
                    drop(slot);
                }),
            };
        }
    }
}
