//! `HostState`, the data of a route instance's Store: a composition of one
//! slice of state per WIT interface that keeps any (`host::message`'s
//! [`MessageState`], `host::tm`'s [`TmState`], `host::events`'
//! [`EventsState`]), the [`InvocationState`] every interface shares, the
//! host services, and what belongs to the instance (WASI, resource table,
//! store limits, CPU budget).
//!
//! No interface's host side sees `HostState`: each implements its bindgen
//! `Host` trait on a view borrowing exactly the pieces it needs, which the
//! projections here (`HostState::tm` and the others) build for each call, as
//! wasmtime-wasi's `WasiView::ctx` builds a `WasiCtxView` and Spin's factors
//! project their instance state; `host::add_to_linker` links each interface
//! through its projection.
//!
//! With the default `instance_reuse = 1` a fresh state is made for every
//! invocation and dropped with its Store, so nothing a guest does outlives its
//! invocation except through the host's own services; a reused instance has
//! its per-invocation slices reset by [`HostState::end`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::budget::Budget;
use super::host::auth::{AuthState, AuthView};
use super::host::config::ConfigView;
use super::host::events::{EventsState, EventsView};
use super::host::location::LocationView;
use super::host::log::LogView;
use super::host::message::{MessageState, MessageView};
use super::host::rest::RestView;
use super::host::tm::{TmState, TmView};
use super::replay::Journal;
use crate::events::EventBus;
use crate::location::Location;
use crate::transaction::ServerTx;

/// The state of a route instance: per-invocation slices (reset by `end`),
/// the host services, and per-instance things (WASI, resource table, limits).
pub struct HostState {
    pub(crate) invocation: InvocationState,
    pub(crate) message: MessageState,
    pub(crate) tm: TmState,
    pub(crate) events: EventsState,
    pub(crate) auth: AuthState,
    // The host services the imports reach: process-wide, handed to every
    // Store when it is made.
    /// Runtime-wide services (the proxy core, `[routes.vars]`, HTTP).
    pub(crate) services: Arc<super::Services>,
    pub(crate) location: Location,
    /// The event registry, once the server has started it.
    pub(crate) bus: Option<EventBus>,
    /// Name of the route module, for log lines.
    pub(crate) module: Arc<str>,
    /// Epoch ticks of CPU left for this invocation.
    pub(crate) cpu_ticks_left: u64,
    pub(crate) limits: GuestLimiter,
    // WASI with nothing granted: no files, no sockets, no environment, no
    // inherited stdio. Language runtimes need the interfaces to link. Made on
    // the guest's first WASI call: building one seeds two random generators
    // and boxes a dozen objects, and a Rust route usually never calls WASI
    // (boxed for the same reason: an empty slot costs 8 bytes, not ~300).
    wasi: Option<Box<WasiCtx>>,
    table: ResourceTable,
}

/// What every interface may read of the invocation: its transaction, its
/// journal, the time it spent suspended.
#[derive(Default)]
pub(crate) struct InvocationState {
    /// The request being routed and its server transaction; `None` while a
    /// module is smoke-instantiated on load (no request exists then) and in
    /// event invocations.
    pub(crate) tx: Option<ServerTx>,
    /// With `suspend = "replay"`, the invocation's calls with outside effects
    /// (boxed: `None` otherwise, and every instance's state holds the slot).
    pub(crate) journal: Option<Box<Journal>>,
    /// Time this invocation spent suspended in host calls (ms); extends its
    /// wall-clock limit, which bounds running, not waiting.
    pub(crate) suspended_ms: Arc<AtomicU64>,
    /// What is left of the invocation's counted `[limits]` (set before each
    /// run by `Runtime::run_invocation`, which carries it across replays).
    pub(crate) budget: Budget,
}

impl HostState {
    /// A state with no invocation yet: [`begin`](Self::begin) gives it one.
    pub(crate) fn new(
        location: Location,
        bus: Option<EventBus>,
        services: Arc<super::Services>,
        module: Arc<str>,
        limits: StoreLimits,
        cpu_ticks: u64,
    ) -> HostState {
        HostState {
            invocation: InvocationState::default(),
            message: MessageState::default(),
            tm: TmState::default(),
            events: EventsState::default(),
            auth: AuthState::default(),
            services,
            location,
            bus,
            module,
            cpu_ticks_left: cpu_ticks,
            limits: GuestLimiter { limits, memory_refused: false },
            wasi: None,
            table: ResourceTable::new(),
        }
    }

    /// Readies a state for a new invocation: the CPU budget is refilled and
    /// the transaction set (the counted limits' budget is the invocation's,
    /// which `Runtime::run_invocation` hands to each run). The state is a new one or one a finished
    /// invocation [`end`](Self::end)ed (the only way an instance goes back to
    /// the warm list), so nothing of a previous invocation is left. What
    /// persists is what belongs to the instance: its WASI context and
    /// resource table, its memory limits, the services.
    pub(crate) fn begin(&mut self, tx: Option<ServerTx>, cpu_ticks: u64, bus: Option<&EventBus>) {
        self.invocation.tx = tx;
        self.cpu_ticks_left = cpu_ticks;
        if self.bus.is_none() {
            self.bus = bus.cloned();
        }
    }

    /// Drops what the finished invocation held, so an idle warm instance
    /// keeps no transaction, request or event alive.
    pub(crate) fn end(&mut self) {
        self.invocation.end();
        self.message.end();
        self.tm.end();
        self.events.end();
        self.auth.end();
    }
}

impl InvocationState {
    fn end(&mut self) {
        self.tx = None;
        self.journal = None;
        self.suspended_ms.store(0, Ordering::Relaxed);
    }
}

// The projections: for each interface, the view of this state its host side
// gets for one call (`host::add_to_linker` links them). Building one copies a
// few references.
impl HostState {
    pub(crate) fn message(&mut self) -> MessageView<'_> {
        MessageView {
            tx: self.invocation.tx.as_ref(),
            message: &mut self.message,
            ruri_next_hop: &mut self.tm.ruri_next_hop,
            budget: &mut self.invocation.budget,
            services: &self.services,
        }
    }

    pub(crate) fn tm(&mut self) -> TmView<'_> {
        TmView {
            tx: self.invocation.tx.as_ref(),
            journal: self.invocation.journal.as_deref_mut(),
            edits: &mut self.message.edits,
            tm: &mut self.tm,
            event: self.events.event.as_ref(),
            budget: &mut self.invocation.budget,
            services: &self.services,
        }
    }

    pub(crate) fn location(&mut self) -> LocationView<'_> {
        LocationView {
            tx: self.invocation.tx.as_ref(),
            journal: self.invocation.journal.as_deref_mut(),
            edits: &mut self.message.edits,
            ruri_next_hop: &mut self.tm.ruri_next_hop,
            branches: &mut self.tm.branches,
            location: &self.location,
        }
    }

    pub(crate) fn events(&mut self) -> EventsView<'_> {
        EventsView {
            tx: self.invocation.tx.as_ref(),
            journal: self.invocation.journal.as_deref_mut(),
            suspended_ms: &self.invocation.suspended_ms,
            budget: &mut self.invocation.budget,
            parked: &mut self.events.parked,
            bus: self.bus.as_ref(),
            services: &self.services,
        }
    }

    pub(crate) fn rest(&mut self) -> RestView<'_> {
        RestView {
            journal: self.invocation.journal.as_deref_mut(),
            suspended_ms: &self.invocation.suspended_ms,
            budget: &mut self.invocation.budget,
            services: &self.services,
        }
    }

    pub(crate) fn auth(&mut self) -> AuthView<'_> {
        AuthView {
            tx: self.invocation.tx.as_ref(),
            journal: self.invocation.journal.as_deref_mut(),
            state: &mut self.auth,
            auth: &self.services.auth,
        }
    }

    pub(crate) fn config(&mut self) -> ConfigView<'_> {
        ConfigView { services: &self.services }
    }

    pub(crate) fn log(&mut self) -> LogView<'_> {
        LogView {
            tx: self.invocation.tx.as_ref(),
            journal: self.invocation.journal.as_deref(),
            module: &self.module,
            budget: &mut self.invocation.budget,
            services: &self.services,
        }
    }
}

/// The Store's resource limiter: `[limits] memory_mb` and the table and
/// instance counts ([`StoreLimits`]), noting a refused growth so the trap
/// that follows is counted as the memory limit's (`runtime:memory_exceeded`).
pub(crate) struct GuestLimiter {
    limits: StoreLimits,
    pub(crate) memory_refused: bool,
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        self.memory_refused |= !matches!(allowed, Ok(true));
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum);
        self.memory_refused |= !matches!(allowed, Ok(true));
        allowed
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The invocation's transaction, for an import that needs one; traps the
/// guest when there is none (an event invocation, or a module's start-up).
pub(crate) fn need_tx(tx: Option<&ServerTx>) -> wasmtime::Result<&ServerTx> {
    tx.ok_or_else(|| wasmtime::format_err!("no request in this invocation"))
}

/// Runs `wait`, a host-side wait bounded by `max`, counting it in `counter`
/// (an invocation's [`InvocationState::suspended_ms`]) as suspended time: the
/// whole of `max` is counted while it runs (so the wall-clock limit cannot
/// fire in the middle of a legitimate wait) and the unused part is given back
/// after.
pub(crate) fn suspended<F: std::future::Future>(
    counter: &Arc<AtomicU64>,
    max: std::time::Duration,
    wait: F,
) -> impl std::future::Future<Output = F::Output> + use<F> {
    // Only the counter is held across the wait, not the import's view.
    let counter = counter.clone();
    async move {
        let max_ms = max.as_millis() as u64;
        // tokio's clock, as the wall-clock limit's (a paused clock moves both).
        let started = tokio::time::Instant::now();
        counter.fetch_add(max_ms, Ordering::Relaxed);
        let out = wait.await;
        let used = (started.elapsed().as_millis() as u64).min(max_ms);
        counter.fetch_sub(max_ms - used, Ordering::Relaxed);
        out
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let journal = self.invocation.journal.as_deref();
        WasiCtxView { ctx: self.wasi.get_or_insert_with(|| new_wasi(journal)), table: &mut self.table }
    }
}

/// A WASI context granting nothing. An invocation that may be replayed gets
/// random generators seeded from its journal, so every run of it draws the
/// same numbers (Rust's `HashMap` seeds itself from them, for one), and
/// clocks whose readings the journal records and replays.
fn new_wasi(journal: Option<&Journal>) -> Box<WasiCtx> {
    use rand_wasi::SeedableRng;
    let Some(journal) = journal else { return Box::default() };
    let mut insecure_seed = journal.seed;
    insecure_seed[0] ^= 0x5a;
    let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
    builder
        .secure_random(rand_wasi::rngs::StdRng::from_seed(journal.seed))
        .insecure_random(rand_wasi::rngs::StdRng::from_seed(insecure_seed))
        .insecure_random_seed(u128::from_le_bytes(insecure_seed[..16].try_into().unwrap_or_default()))
        .wall_clock(journal.clocks.wall_clock())
        .monotonic_clock(journal.clocks.monotonic_clock());
    Box::new(builder.build())
}
