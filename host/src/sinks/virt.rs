//! `virtual:POLICY sock1 sock2 ...` (OpenSIPS event_virtual): one subscriber
//! fanning out to several sub-sockets, whitespace separated, policy in
//! uppercase. One expire covers the whole set.
//!
//! - `PARALLEL`: every sub-socket gets the event (concurrently here, so a
//!   slow one does not hold the others back); it fails if any failed.
//! - `FAILOVER`: sub-sockets in order until one accepts. A failed one is
//!   skipped for `failover_timeout_s` while another works, but is still
//!   tried last, so every event goes to whichever destination is up.
//! - `ROUND-ROBIN`: one sub-socket per event, rotating; no failover.
//!
//! Sub-sockets are parsed with [`SinkContext::parse`];
//! a nested `virtual:` is refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::events::{CloseFut, DeliverFut, Event, EventError, Sink, SinkContext, SinkError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Parallel,
    Failover,
    RoundRobin,
}

impl Policy {
    fn as_str(self) -> &'static str {
        match self {
            Policy::Parallel => "PARALLEL",
            Policy::Failover => "FAILOVER",
            Policy::RoundRobin => "ROUND-ROBIN",
        }
    }
}

pub(crate) fn parse(rest: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    let mut words = rest.split_whitespace();
    let policy = match words.next() {
        Some("PARALLEL") => Policy::Parallel,
        Some("FAILOVER") => Policy::Failover,
        Some("ROUND-ROBIN") => Policy::RoundRobin,
        Some(other) => {
            return Err(EventError::BadSocket(format!(
                "virtual: unknown policy '{other}' (PARALLEL, FAILOVER or ROUND-ROBIN, uppercase)"
            )));
        }
        None => return Err(EventError::BadSocket("virtual: needs a policy and destinations".into())),
    };
    let mut subs = Vec::new();
    for word in words {
        if word.starts_with("virtual:") {
            return Err(EventError::BadSocket(format!("virtual: nested virtual socket '{word}'")));
        }
        subs.push(ctx.parse(word)?);
    }
    if subs.is_empty() {
        return Err(EventError::BadSocket(format!("virtual:{}: no destinations", policy.as_str())));
    }
    let mut socket = format!("virtual:{}", policy.as_str());
    for s in &subs {
        socket.push(' ');
        socket.push_str(s.socket());
    }
    // PARALLEL delivers to a set: the same sockets in another order are the
    // same subscriber (OpenSIPS matches PARALLEL lists in any order).
    let mut keys: Vec<String> = subs.iter().map(|s| s.match_key()).collect();
    if policy == Policy::Parallel {
        keys.sort();
    }
    let key = format!("virtual:{} {}", policy.as_str(), keys.join(" "));
    Ok(Arc::new(VirtualSink {
        socket,
        key,
        policy,
        last_failed: Mutex::new(vec![None; subs.len()]),
        subs,
        next: AtomicUsize::new(0),
        failover_timeout: Duration::from_secs(ctx.config().failover_timeout_s),
    }))
}

struct VirtualSink {
    socket: String,
    key: String,
    policy: Policy,
    subs: Vec<Arc<dyn Sink>>,
    /// FAILOVER: when each sub-socket last failed.
    last_failed: Mutex<Vec<Option<Instant>>>,
    /// ROUND-ROBIN: the next sub-socket.
    next: AtomicUsize,
    failover_timeout: Duration,
}

impl VirtualSink {
    async fn parallel(&self, event: &Event) -> Result<(), SinkError> {
        let futs = self.subs.iter().map(|s| s.deliver(event)).collect();
        let results = join_all(futs).await;
        let errors: Vec<String> = results
            .into_iter()
            .zip(&self.subs)
            .filter_map(|(r, s)| r.err().map(|e| format!("{}: {e}", s.socket())))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Other(format!("{} of {} failed: {}", errors.len(), self.subs.len(), errors.join("; "))))
        }
    }

    async fn failover(&self, event: &Event) -> Result<(), SinkError> {
        let now = Instant::now();
        // Healthy (or cooled-down) destinations first in configured order,
        // then the recently failed ones as a last resort.
        let (mut order, cooling): (Vec<usize>, Vec<usize>) = {
            let failed = self.last_failed.lock().unwrap_or_else(|p| p.into_inner());
            (0..self.subs.len()).partition(|&i| failed[i].is_none_or(|t| now >= t + self.failover_timeout))
        };
        order.extend(cooling);
        let mut errors = Vec::new();
        for i in order {
            let Some(sub) = self.subs.get(i) else { continue };
            let result = sub.deliver(event).await;
            let mut failed = self.last_failed.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => {
                    failed[i] = None;
                    return Ok(());
                }
                Err(e) => {
                    failed[i] = Some(Instant::now());
                    errors.push(format!("{}: {e}", sub.socket()));
                }
            }
        }
        Err(SinkError::Other(format!("every destination failed: {}", errors.join("; "))))
    }

    async fn round_robin(&self, event: &Event) -> Result<(), SinkError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.subs.len();
        match self.subs.get(i) {
            Some(sub) => sub.deliver(event).await,
            None => Err(SinkError::Other("no destinations".into())),
        }
    }
}

impl Sink for VirtualSink {
    fn socket(&self) -> &str {
        &self.socket
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        match self.policy {
            Policy::Parallel => Box::pin(self.parallel(event)),
            Policy::Failover => Box::pin(self.failover(event)),
            Policy::RoundRobin => Box::pin(self.round_robin(event)),
        }
    }

    fn match_key(&self) -> String {
        self.key.clone()
    }

    fn check(&self) -> Result<(), EventError> {
        self.subs.iter().try_for_each(|s| s.check())
    }

    fn close(&self) -> CloseFut<'_> {
        Box::pin(async {
            for sub in &self.subs {
                sub.close().await;
            }
        })
    }
}

/// Polls every future until all are done; results in input order.
async fn join_all(futs: Vec<DeliverFut<'_>>) -> Vec<Result<(), SinkError>> {
    let mut slots: Vec<Option<DeliverFut<'_>>> = futs.into_iter().map(Some).collect();
    let mut results: Vec<Option<Result<(), SinkError>>> = slots.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in slots.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        *result = Some(r);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(SinkError::Other("not run".into())))).collect()
}
