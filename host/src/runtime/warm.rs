//! Warm route instances (`[limits] instance_reuse`): an instance whose
//! invocation returned normally can serve the next invocation of the same
//! module instead of being dropped, saving the instantiation and the pool
//! slot's reset (most of an invocation's fixed cost: bench/RESULTS.md).
//!
//! What reuse gives up is per-invocation isolation *between invocations of
//! the same route*: globals and heap the guest keeps survive into its next
//! invocation (as a Kamailio worker's script state does). Failure isolation
//! is kept: an instance that trapped, ran out of CPU or wall-clock time, or
//! was cancelled mid-call is never reused, and every instance is replaced
//! after `instance_reuse` invocations, which bounds what a leaking guest can
//! accumulate.

use std::sync::Mutex;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::exports::RouteExports;
use super::state::HostState;

/// Idle warm instances kept per route module. Invocations run on the tokio
/// workers (one per core) and suspended ones hold their own instance, so a
/// handful covers the steady state; each idle one holds a pool slot and an
/// admission permit.
const MAX_IDLE: usize = 16;

/// A route instance with its Store and its pool-admission permit.
pub(crate) struct RouteInstance {
    pub(crate) store: Store<HostState>,
    /// The instantiated exports; `None` until the first invocation
    /// instantiates the module in `store`.
    pub(crate) exports: Option<RouteExports>,
    /// Invocations this instance has run.
    pub(crate) uses: u32,
    /// Held as long as the instance lives: it occupies a pool slot.
    pub(crate) _permit: OwnedSemaphorePermit,
}

/// The idle warm instances of one loaded route module.
#[derive(Default)]
pub(crate) struct WarmInstances {
    idle: Mutex<Vec<RouteInstance>>,
}

impl WarmInstances {
    /// An idle instance, most recently used first (its pages are the most
    /// likely to be in cache).
    pub(crate) fn take(&self) -> Option<RouteInstance> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Keeps `instance` for a later invocation, or drops it when enough are
    /// idle. Dropping happens outside the lock (a Store's drop releases its
    /// pool slot, which takes microseconds).
    pub(crate) fn put(&self, instance: RouteInstance) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(instance);
            return;
        }
        drop(idle);
        drop(instance);
    }

    /// Drops every idle instance (the module was replaced).
    pub(crate) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        drop(idle);
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
