//! `HostState`: everything one route invocation can reach. It lives in the
//! instance's Store: with the default `instance_reuse = 1` a fresh one is made
//! for every invocation and dropped with its Store, so nothing a guest does
//! outlives its invocation except through the host's own services; a reused
//! instance has its per-invocation fields reset by [`HostState::begin`].

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::events::EventBus;
use crate::location::Location;
use crate::sip::{self, Edits};
use crate::transaction::{ServerTx, Target};
use crate::transport::{NextHop, Proto};

use super::replay::{Journal, Parked};

/// The state of a route instance: per-invocation fields (reset by `begin`)
/// and per-instance ones (WASI, resource table, limits).
pub struct HostState {
    /// The request being routed and its server transaction; `None` while a
    /// module is smoke-instantiated on load (no request exists then).
    pub(crate) tx: Option<ServerTx>,
    /// The route relayed the request at least once.
    pub(crate) relayed: bool,
    /// Edits the route made to the request, applied when it is relayed.
    pub(crate) edits: Edits,
    /// Extra targets for the next relay (lookup, append-branch), each with
    /// the address to send it to when it is not the URI's own (NAT).
    pub(crate) branches: Vec<Target>,
    /// Where to send the Request-URI's branch instead of resolving it (set by
    /// `lookup` from a binding's `received`; cleared by `set-ruri`).
    pub(crate) ruri_next_hop: Option<NextHop>,
    /// The event of an `on-event` / `on-notify` invocation.
    pub(crate) event: Option<crate::events::Event>,
    /// Time this invocation spent suspended in host calls (ms); extends its
    /// wall-clock limit, which bounds running, not waiting.
    pub(crate) suspended_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Runtime-wide services the imports use.
    pub(crate) services: Arc<super::Services>,
    pub(crate) record_route: bool,
    pub(crate) on_reply: Option<Arc<str>>,
    pub(crate) on_failure: Option<Arc<str>>,
    /// The reply given to `on-reply` / `on-failure` (boxed: most invocations
    /// have none, and every instance's state holds room for it).
    pub(crate) reply: Option<Box<sip::Message>>,
    /// Where that reply came from, when known.
    pub(crate) reply_source: Option<(Proto, SocketAddr)>,
    pub(crate) location: Location,
    /// The event registry, once the server has started it.
    pub(crate) bus: Option<EventBus>,
    /// Name of the route module, for log lines.
    pub(crate) module: Arc<str>,
    /// Epoch ticks of CPU left for this invocation.
    pub(crate) cpu_ticks_left: u64,
    /// With `suspend = "replay"`, the invocation's calls with outside effects
    /// (boxed: `None` otherwise, and every instance's state holds the slot).
    pub(crate) journal: Option<Box<Journal>>,
    /// Set by a `wait-for-event` that gave the instance up (`suspend =
    /// "replay"`): the invocation ends with a trap and resumes by replay.
    pub(crate) parked: Option<Parked>,
    pub(crate) limits: StoreLimits,
    // WASI with nothing granted: no files, no sockets, no environment, no
    // inherited stdio. Language runtimes need the interfaces to link. Made on
    // the guest's first WASI call: building one seeds two random generators
    // and boxes a dozen objects, and a Rust route usually never calls WASI
    // (boxed for the same reason: an empty slot costs 8 bytes, not ~300).
    wasi: Option<Box<WasiCtx>>,
    table: ResourceTable,
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
            tx: None,
            relayed: false,
            edits: Edits::default(),
            branches: Vec::new(),
            ruri_next_hop: None,
            event: None,
            suspended_ms: Arc::default(),
            record_route: false,
            on_reply: None,
            on_failure: None,
            reply: None,
            reply_source: None,
            location,
            bus,
            services,
            module,
            cpu_ticks_left: cpu_ticks,
            journal: None,
            parked: None,
            limits,
            wasi: None,
            table: ResourceTable::new(),
        }
    }
}

impl HostState {
    /// Readies a state for a new invocation: the CPU budget is refilled and
    /// the transaction set. The state is a new one or one a finished
    /// invocation [`end`](Self::end)ed (the only way an instance goes back to
    /// the warm list), so nothing of a previous invocation is left. What
    /// persists is what belongs to the instance: its WASI context and
    /// resource table, its memory limits, the services.
    pub(crate) fn begin(&mut self, tx: Option<ServerTx>, cpu_ticks: u64, bus: Option<&EventBus>) {
        self.tx = tx;
        self.cpu_ticks_left = cpu_ticks;
        if self.bus.is_none() {
            self.bus = bus.cloned();
        }
    }

    /// Drops what the finished invocation held, so an idle warm instance
    /// keeps no transaction, request or event alive.
    pub(crate) fn end(&mut self) {
        self.tx = None;
        self.relayed = false;
        self.edits = Edits::default();
        self.branches.clear();
        self.ruri_next_hop = None;
        self.event = None;
        self.suspended_ms.store(0, std::sync::atomic::Ordering::Relaxed);
        self.record_route = false;
        self.on_reply = None;
        self.on_failure = None;
        self.reply = None;
        self.reply_source = None;
        self.journal = None;
        self.parked = None;
    }
}

impl HostState {
    /// Runs `wait`, a host-side wait bounded by `max`, counting it as
    /// suspended time: the whole of `max` is counted while it runs (so the
    /// wall-clock limit cannot fire in the middle of a legitimate wait) and
    /// the unused part is given back after.
    pub(crate) fn suspended<F: std::future::Future>(
        &self,
        max: std::time::Duration,
        wait: F,
    ) -> impl std::future::Future<Output = F::Output> + use<F> {
        use std::sync::atomic::Ordering;
        // Only the counter is held across the wait (HostState is not Sync).
        let counter = self.suspended_ms.clone();
        async move {
            let max_ms = max.as_millis() as u64;
            let started = std::time::Instant::now();
            counter.fetch_add(max_ms, Ordering::Relaxed);
            let out = wait.await;
            let used = (started.elapsed().as_millis() as u64).min(max_ms);
            counter.fetch_sub(max_ms - used, Ordering::Relaxed);
            out
        }
    }

    /// The invocation's transaction; traps the guest when there is none.
    pub(crate) fn tx(&self) -> wasmtime::Result<&ServerTx> {
        self.tx.as_ref().ok_or_else(|| wasmtime::format_err!("no request in this invocation"))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let journal = self.journal.as_deref();
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
