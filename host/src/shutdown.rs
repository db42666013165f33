//! [`Shutdown`]: a stop signal that long-lived loops wait on, and a way to wait until every
//! task spawned under it has ended (mini-redis's `Shutdown` plus its "shutdown complete"
//! channel, in one handle).
//!
//! [`server::run`](crate::server::run) keeps one per stage of its shutdown (the SIP receive
//! loops, the management interface) and stops them in order; the event bus keeps one for its
//! subscribers' delivery tasks ([`EventBus::shutdown`](crate::events::EventBus::shutdown)).
//! A service is handed the `Shutdown` it runs under instead of looking one up, so a test can
//! stop it the same way the server does.
//!
//! Dropping handles signals nothing: only [`signal`](Shutdown::signal) or
//! [`stop`](Shutdown::stop) do, so a loop never ends because its caller let go of a handle.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A stop signal and the tasks that honour it. Cheap to clone; every clone is the same signal.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// True once the signal is given; never goes back.
    signalled: watch::Sender<bool>,
    /// Tasks spawned through [`Shutdown::spawn`] that have not ended yet.
    live_tasks: watch::Sender<usize>,
}

impl Shutdown {
    /// A signal not given yet, with no tasks.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Gives the signal (idempotent) without waiting for anything.
    pub fn signal(&self) {
        self.inner.signalled.send_replace(true);
    }

    /// Whether the signal has been given.
    pub fn is_signalled(&self) -> bool {
        *self.inner.signalled.borrow()
    }

    /// Completes once the signal is given (at once if it already was). The future owns what it
    /// needs, so a loop can pin one and poll it on every turn.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            // Cannot fail: `inner` keeps the sender alive.
            let _ = inner.signalled.subscribe().wait_for(|given| *given).await;
        }
    }

    /// Runs `work` unless the signal comes first: `Some(output)`, or `None` once signalled
    /// (then `work` is dropped). A signal given before the call wins.
    pub async fn unless_signalled<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.signalled() => None,
            output = work => Some(output),
        }
    }

    /// Spawns `task` on the current runtime; [`stop`](Self::stop) waits for it to end. The task
    /// itself decides when to stop (it should wait on [`signalled`](Self::signalled)).
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(self.track(task))
    }

    /// [`spawn`](Self::spawn) on a given runtime.
    pub fn spawn_on<F>(&self, task: F, runtime: &tokio::runtime::Handle) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        runtime.spawn(self.track(task))
    }

    /// Gives the signal and waits until every task spawned through this handle has ended
    /// (finished, aborted, or dropped with its runtime).
    pub async fn stop(&self) {
        self.signal();
        // Cannot fail: `self` keeps the sender alive.
        let _ = self.inner.live_tasks.subscribe().wait_for(|live| *live == 0).await;
    }

    /// Counts `task` as live from now until it is dropped (done, aborted or never polled).
    fn track<F: Future>(&self, task: F) -> impl Future<Output = F::Output> + use<F> {
        let guard = LiveTask::new(self.inner.clone());
        async move {
            let _guard = guard;
            task.await
        }
    }
}

/// Held by a tracked task; its drop is the task's end.
struct LiveTask(Arc<Inner>);

impl LiveTask {
    fn new(inner: Arc<Inner>) -> LiveTask {
        inner.live_tasks.send_modify(|live| *live += 1);
        LiveTask(inner)
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        self.0.live_tasks.send_modify(|live| *live -= 1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn stop_waits_for_every_task_to_end() {
        let shutdown = Shutdown::new();
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let (signal, ended_tx) = (shutdown.signalled(), ended_tx.clone());
            shutdown.spawn(async move {
                signal.await;
                // Yield once more, so stop has to wait for the task, not just for the signal.
                tokio::task::yield_now().await;
                let _ = ended_tx.send(i);
            });
        }
        drop(ended_tx);
        assert!(!shutdown.is_signalled());
        tokio::time::timeout(WAIT, shutdown.stop()).await.expect("stopped in time");
        assert!(shutdown.is_signalled());
        let mut seen = Vec::new();
        while let Ok(i) = ended.try_recv() {
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2], "stop returned before every task ended");
    }

    #[tokio::test]
    async fn aborted_and_finished_tasks_count_as_ended() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>()).abort();
        let done = shutdown.spawn(async {});
        done.await.expect("ran");
        tokio::time::timeout(WAIT, shutdown.stop()).await.expect("nothing left to wait for");
    }

    #[tokio::test]
    async fn unless_signalled_runs_work_until_the_signal() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.unless_signalled(async { 7 }).await, Some(7));
        let (tx, rx) = oneshot::channel::<()>();
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.unless_signalled(rx).await }
        });
        shutdown.signal();
        let outcome = tokio::time::timeout(WAIT, waiting).await.expect("in time").expect("joined");
        assert!(outcome.is_none(), "the signal ends the wait");
        drop(tx);
        // Once signalled, even ready work is not run.
        assert_eq!(shutdown.unless_signalled(async { 7 }).await, None);
    }

    #[tokio::test]
    async fn dropping_handles_is_no_signal() {
        let shutdown = Shutdown::new();
        let mut signal = std::pin::pin!(shutdown.signalled());
        drop(shutdown);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(signal.as_mut().poll(&mut cx).is_pending());
    }
}
