//! The WebAssembly runtime: one wasmtime `Engine` and `Linker` per process,
//! the table of route modules (the main route and event-route modules by
//! name, each swappable at run time on its own), and a `Store` and instance
//! per invocation: a fresh one, or with `[limits] instance_reuse` a warm one
//! an earlier invocation of the same module returned normally from.
//!
//! - `engine.rs`: engine settings, pooling allocator, epoch ticker, `[limits]`;
//! - `cache.rs`: compiled modules on disk, keyed by content hash;
//! - `reload.rs`: what a reload does (re-read `[routes]`, swap, count) for
//!   SIGHUP, the MI and `watch.rs`, which watches the module files;
//! - `bindings.rs`: the `bindgen!` for `wit/`;
//! - `state.rs`: `HostState`, a route instance's state: one slice per WIT
//!   interface that keeps any, the invocation, the services, and the
//!   projections that give each interface its view of them;
//! - `host/`: the host side of each WIT interface, each with its view, its
//!   slice of state and its `add_to_linker` (`host::add_to_linker` links
//!   them all, WASI included);
//! - `modules.rs`: route sources, the module table's entries, loading and
//!   validating a module;
//! - `warm.rs`: idle instances kept for reuse;
//! - `invocations.rs`: the queue through which the event bus starts `route:`
//!   event routes and EBR notifications ([`invocations`]);
//! - `replay.rs`: the journal that lets a waiting guest give its instance
//!   back (`[limits] suspend = "replay"`), keyed by the enum of imports;
//! - this file: [`Runtime`], which holds the module table and runs
//!   invocations for the proxy core.
//!
//! # Reloading
//! A reload is make-before-break: every module it loads is compiled (or
//! taken from the cache), type-checked and instantiated once before any is
//! swapped in, so a bad one leaves the whole table as it was. An invocation
//! holds the module it started on until it ends: a guest parked in
//! `wait-for-event` finishes on its version, whether it kept its instance
//! (`in-place`) or is resumed by replay, which replays it on that version.
//!
//! # Construction
//! Everything the runtime reaches is built before it and handed to
//! [`Runtime::new`] in [`RouteServices`]: the location store, the event bus,
//! the [`Transactions`] table the proxy core registers in (give the same one
//! to [`Core::with_transactions`](crate::transaction::Core::with_transactions))
//! and `[routes.vars]`; nothing is filled in afterwards. The two links that
//! point back at the runtime need no late wiring either: the core, built after
//! it, takes it as its `Router`; the bus, built before it, got the
//! [`Invoker`] of the [`invocations`] queue the runtime drains. The runtime
//! needs no handle on the core at all: `tm.inject-branches` finds the other
//! request's transaction in the shared table.
//!
//! Isolation: a guest gets only its imports (WASI is linked with nothing
//! granted). A trap, a CPU overrun (epoch deadline), memory exhaustion (store
//! limiter) or a wall-clock overrun ends that invocation only; the request it
//! was routing is answered 500. A handler that returns `Err` (the route's
//! own failure, `exports.rs`) is logged and counted, and a request it left
//! unanswered is answered 500 too, but its instance is sound and may serve
//! again.

pub mod bench_hooks;
mod bindings;
mod budget;
mod cache;
mod engine;
mod exports;
mod host;
mod http;
mod invocations;
mod modules;
mod reload;
mod replay;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reload;
mod warm;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Linker, Resource};
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};

pub use budget::LimitStats;
pub use cache::{CompileCache, Compiled};
pub use engine::{EPOCH_TICK, Limits, Suspend};
pub use http::{HttpClient, HttpError, HttpExchange, HttpFuture, HttpRequest, HttpResponse};
pub use invocations::{Invocations, Invoker, invocations};
pub use modules::{LoadedRoute, MAIN, RouteSet, RouteSource, WIT_VERSION};
pub use reload::{ReadRoutes, Reloader, RoutesUpdate};
pub use watch::watch_modules;

use crate::auth::Auth;
use crate::events::{E_CORE_SHM_THRESHOLD, E_CORE_THRESHOLD, Event, EventBus, EventsConfig, Params, SinkSchemes};
use crate::location::Location;
use crate::sip::{self, Method};
use crate::transaction::{BoxFut, Router, ServerTx, Transactions};
use budget::Budget;
use exports::ReplyExport;
use host::message::{REPLY_REP, REQUEST_REP};
use replay::Journal;
use state::HostState;
use warm::RouteInstance;

/// Counters of what the runtime did, for statistics.
#[derive(Default, Debug)]
pub struct RuntimeStats {
    pub invocations: AtomicU64,
    /// Instances created (one per invocation unless `instance_reuse` > 1).
    pub instantiations: AtomicU64,
    /// Invocations ended by a trap, whatever its cause; of them, those that
    /// ran out of CPU (`cpu_ms`), stack, or memory (`memory_mb`):
    pub traps: AtomicU64,
    pub cpu_exceeded: AtomicU64,
    pub stack_overflows: AtomicU64,
    pub memory_exceeded: AtomicU64,
    /// Invocations past their wall-clock limit (`wall_ms`).
    pub timeouts: AtomicU64,
    pub rejected_busy: AtomicU64,
    /// Guests resumed by replay after a wait (`suspend = "replay"`).
    pub replays: AtomicU64,
    /// Reloads that swapped modules in (SIGHUP, MI, file watch).
    pub reloads: AtomicU64,
    /// Reloads refused (a bad module or config file); the old table serves.
    pub reload_failures: AtomicU64,
    /// Handlers that returned `Err` (`routes:errors`): the route's own
    /// failures, as opposed to traps.
    pub route_errors: AtomicU64,
}

/// Process-wide services the WIT imports reach through their views of `HostState`.
pub(crate) struct Services {
    /// The live transactions, for `tm.inject-branches` into another one.
    pub(crate) transactions: Transactions,
    /// `[routes.vars]`, for `config.get`; a reload swaps in the new table.
    pub(crate) vars: ArcSwap<BTreeMap<String, String>>,
    /// What every route's `rest` calls go through (one connection pool).
    pub(crate) http: HttpClient,
    /// Digest authentication and the subscribers (`auth`).
    pub(crate) auth: Auth,
    /// What the counted `[limits]` refused, and the guests parked in place.
    pub(crate) limit_stats: LimitStats,
    /// `[limits] max_parked`, resolved.
    pub(crate) max_parked: u32,
}

/// What routes reach outside their instance, built before the runtime.
pub struct RouteServices {
    /// Registrations (`location.lookup`, `save`).
    pub location: Location,
    /// The event registry: routes raise, subscribe and wait; the runtime
    /// raises E_CORE_THRESHOLD and E_CORE_SHM_THRESHOLD.
    pub bus: EventBus,
    /// The live transactions the proxy core registers (give the same to
    /// [`Core::with_transactions`](crate::transaction::Core::with_transactions)):
    /// `tm.inject-branches` finds other requests' transactions there.
    pub transactions: Transactions,
    /// `[routes.vars]`, what routes read with `config.get`.
    pub vars: BTreeMap<String, String>,
    /// Where `rest` requests go: [`HttpClient::network`] in the server.
    pub http: HttpClient,
    /// What `auth.authorize` checks credentials against.
    pub auth: Auth,
}

/// The route runtime. Cheap to clone; implements the proxy core's [`Router`],
/// and runs what the event bus queues on its [`Invoker`].
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    /// The main module: requests, replies, failures, notifications, and
    /// event routes no named module is loaded for.
    current: ArcSwap<LoadedRoute>,
    /// Event-route modules by name.
    named: ArcSwap<BTreeMap<Arc<str>, Arc<LoadedRoute>>>,
    /// The last generation each module name was given (kept when a module
    /// is dropped from the table, so a name's generations never repeat).
    generations: Mutex<BTreeMap<Arc<str>, u64>>,
    /// Held for a whole reload: reloads run one at a time, so two cannot
    /// compile the same module at once or hand out the same generation.
    reloading: tokio::sync::Mutex<()>,
    cache: Option<cache::CompileCache>,
    limits: Limits,
    /// One permit per live instance: the pool's capacity, enforced before
    /// instantiation so overload is a 503, not an allocation failure.
    admission: Arc<Semaphore>,
    location: Location,
    bus: EventBus,
    /// Pool pressure was reported and has not dropped below the threshold.
    pool_pressure: AtomicBool,
    services: Arc<Services>,
    stats: RuntimeStats,
    _ticker: engine::EpochTicker,
}

/// Room in the invocation queue besides the EBR notification cap: `route:`
/// deliveries waiting to be spawned (they wait for room rather than drop).
pub const INVOCATION_BACKLOG: usize = 1024;

/// What an invocation is for.
enum Invocation {
    Request,
    // Boxed, as is everything large here: this enum and the invocation's
    // future live for as long as a guest is parked in `wait-for-event`.
    // The message is handed to the instance's state for the call (and taken
    // back when a replayed guest parks), hence the `Option`.
    Reply {
        hook: Arc<str>,
        reply: Option<Box<sip::Message>>,
    },
    Failure {
        hook: Arc<str>,
        best: Option<Box<sip::Message>>,
    },
    /// An event for an event route (`route:NAME` subscription).
    Event {
        route: Arc<str>,
        event: Event,
    },
    /// An EBR notification for the subscription `route` of transaction `tid`.
    Notify {
        route: Arc<str>,
        event: Event,
        tid: u64,
    },
}

impl Runtime {
    /// Builds the engine and linker, loads the main route module and starts
    /// running what the bus queues on `invocations` (whose [`Invoker`] the
    /// bus in `services` was given); fails with the reason when the module is
    /// not a valid `sipbox:route` component. No compile cache. Blocking (it
    /// compiles the module): call it from `spawn_blocking`, inside a tokio
    /// runtime.
    pub fn new(
        limits: Limits,
        source: RouteSource,
        services: RouteServices,
        invocations: Invocations,
    ) -> anyhow::Result<Runtime> {
        Runtime::with_routes(limits, &RouteSet::main(source), None, services, invocations)
    }

    /// As [`new`](Self::new), with every module of `routes` (the main one
    /// and the event-route modules), compiled through `cache` when given.
    /// Fails naming the first module that does not load.
    pub fn with_routes(
        limits: Limits,
        routes: &RouteSet,
        cache: Option<CompileCache>,
        services: RouteServices,
        invocations: Invocations,
    ) -> anyhow::Result<Runtime> {
        let RouteServices { location, bus, transactions, vars, http, auth } = services;
        limits.validate()?;
        let max_parked = limits.max_parked();
        routes.validate()?;
        let engine = engine::build_engine(&limits)?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker)?;
        let ticker = engine::EpochTicker::start(&engine);
        let mut loaded = Vec::new();
        for (name, source) in routes.iter() {
            let mut module = modules::prepare(&engine, &linker, name, source, cache.as_ref())?;
            module.generation = 1;
            tracing::info!(module = name, source = %module.name, compiled = ?module.compiled, "route module loaded");
            loaded.push(Arc::new(module));
        }
        let mut loaded = loaded.into_iter();
        let main = loaded.next().ok_or_else(|| anyhow::anyhow!("no main route module"))?;
        let named: BTreeMap<Arc<str>, Arc<LoadedRoute>> = loaded.map(|m| (m.module.clone(), m)).collect();
        let generations = std::iter::once(main.module.clone()).chain(named.keys().cloned()).map(|n| (n, 1)).collect();
        let queue = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("Runtime::new must be called within a tokio runtime"))?;
        let runtime = Runtime {
            inner: Arc::new(Inner {
                admission: Arc::new(Semaphore::new(limits.max_instances as usize)),
                engine,
                linker,
                current: ArcSwap::new(main),
                named: ArcSwap::from_pointee(named),
                generations: Mutex::new(generations),
                reloading: tokio::sync::Mutex::new(()),
                cache,
                limits,
                location,
                bus,
                pool_pressure: AtomicBool::new(false),
                services: Arc::new(Services {
                    transactions,
                    vars: ArcSwap::from_pointee(vars),
                    http,
                    auth,
                    limit_stats: LimitStats::default(),
                    max_parked,
                }),
                stats: RuntimeStats::default(),
                _ticker: ticker,
            }),
        };
        queue.spawn(invocations.serve(Arc::downgrade(&runtime.inner)));
        Ok(runtime)
    }

    /// A runtime with its own bus that only raises (no sink schemes; its
    /// notifications run here) and a memory-only location store: for loading
    /// a module on its own (`check_route`) and for tests. Blocking, as
    /// [`new`](Self::new).
    pub fn standalone(limits: Limits, source: RouteSource) -> anyhow::Result<Runtime> {
        Runtime::standalone_with(limits, &RouteSet::main(source), None)
    }

    /// As [`standalone`](Self::standalone), with every module of `routes`
    /// and the compile cache `cache`.
    pub fn standalone_with(limits: Limits, routes: &RouteSet, cache: Option<CompileCache>) -> anyhow::Result<Runtime> {
        let cfg = EventsConfig::default();
        let (invoker, invocations) = invocations(cfg.ebr_max_notify_concurrency + INVOCATION_BACKLOG);
        let bus = EventBus::new(&cfg, SinkSchemes::new(), Some(invoker.notify_handler()))?;
        let location = Location::open(&crate::location::LocationConfig { db_path: None, ..Default::default() })?;
        let services = RouteServices {
            location,
            bus,
            transactions: Transactions::default(),
            vars: BTreeMap::new(),
            http: HttpClient::network()?,
            auth: Auth::in_memory(false),
        };
        Runtime::with_routes(limits, routes, cache, services, invocations)
    }

    /// The event registry routes use.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The location store routes use.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// Runs `on-event` for a `route:NAME` delivery, in place (what the
    /// bus's queued deliveries come to).
    pub async fn run_event_route(&self, route: Arc<str>, event: Event) {
        self.invoke(None, Invocation::Event { route, event }).await
    }

    /// Instantiates the module serving now once, without a request: what
    /// [`reload`](Self::reload) checks before swapping a module in, for a
    /// module loaded by [`new`](Self::new) (`check-route`).
    pub async fn check_current(&self) -> anyhow::Result<()> {
        self.smoke_test(&self.current()).await
    }

    /// Instantiates a module once without a request, so a module whose
    /// start-up traps is refused before it serves traffic.
    async fn smoke_test(&self, route: &LoadedRoute) -> anyhow::Result<()> {
        let mut store = self.new_store(route.name.clone());
        route
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("route module {} failed to instantiate: {e:#}", route.name))?;
        Ok(())
    }

    /// Route instances alive now, and the pool's capacity.
    pub fn instances(&self) -> (usize, usize) {
        let size = self.inner.limits.max_instances as usize;
        (size - self.inner.admission.available_permits(), size)
    }

    pub fn stats(&self) -> &RuntimeStats {
        &self.inner.stats
    }

    fn new_store(&self, module: Arc<str>) -> Store<HostState> {
        let limits = &self.inner.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes())
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState::new(
            self.inner.location.clone(),
            Some(self.inner.bus.clone()),
            self.inner.services.clone(),
            module,
            store_limits,
            limits.cpu_ticks(),
        );
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limits);
        // Each time the deadline is reached one tick of CPU budget is spent
        // and the guest yields to the executor, so a busy guest cannot hog a
        // worker thread; when the budget is gone the guest is interrupted.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.cpu_ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.cpu_ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    async fn invoke(&self, tx: Option<ServerTx>, what: Invocation) {
        let stats = &self.inner.stats;
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        let route = match &what {
            Invocation::Event { route, .. } => self.event_module(route),
            _ => self.current(),
        };
        let instance = match route.warm.take() {
            Some(warm) => warm,
            None => {
                let Ok(permit) = self.inner.admission.clone().try_acquire_owned() else {
                    stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("all route instances busy; rejecting the invocation");
                    let is_request = matches!(what, Invocation::Request);
                    if let Some(tx) = tx.as_ref().filter(|tx| is_request && !is_ack(tx)) {
                        let _ = tx.reply(503, "Service Unavailable", &[("Retry-After", "5")], None);
                    }
                    return;
                };
                self.new_instance(&route, permit)
            }
        };
        if let Some(mut instance) = self.run_invocation(&route, instance, tx, what).await {
            instance.store.data_mut().end();
            // Kept warm only while its module is the current one: a reload
            // clears the old module's idle instances, and this check keeps
            // one finishing after the reload from joining them.
            if self.is_serving(&route) && instance.uses < self.inner.limits.instance_reuse {
                route.warm.put(instance);
            }
        }
        // Usage seen without this invocation: re-arms the pressure event once
        // the pool has room again.
        self.check_pool_pressure();
    }

    /// A new, not yet instantiated, instance holding `permit`'s pool slot.
    fn new_instance(&self, route: &LoadedRoute, permit: OwnedSemaphorePermit) -> RouteInstance {
        self.check_pool_pressure();
        RouteInstance { store: self.new_store(route.name.clone()), exports: None, uses: 0, _permit: permit }
    }

    /// Runs one invocation in `instance`, instantiating the module first if
    /// the instance is new. Returns the instance when its invocation
    /// returned normally, so it may be reused; an instance that trapped, ran
    /// out of time or was interrupted is dropped here.
    ///
    /// With `suspend = "replay"` a guest that waits for an event ends its run
    /// with its instance dropped; once the wait is over the invocation runs
    /// again in a new instance, its journal answering the calls it made
    /// before (`replay.rs`).
    async fn run_invocation(
        &self,
        route: &LoadedRoute,
        mut instance: RouteInstance,
        tx: Option<ServerTx>,
        mut what: Invocation,
    ) -> Option<RouteInstance> {
        let stats = &self.inner.stats;
        let is_request = matches!(what, Invocation::Request);
        let mut journal = (self.inner.limits.suspend == Suspend::Replay).then(|| Box::new(Journal::new()));
        // The invocation's, whichever run spends it (a replay carries on).
        let mut budget = Budget::new(&self.inner.limits);
        let wall = self.inner.limits.wall();
        // Whether the request went on without the route (relayed, or left to
        // injected branches), as of the last run.
        let mut relayed;
        let failure = loop {
            let started = Instant::now();
            instance.store.data_mut().invocation.budget = budget;
            let outcome = self.run_once(route, &mut instance, tx.clone(), &mut what, journal.take(), started).await;
            self.check_threshold(started, tx.as_ref());
            let state = instance.store.data_mut();
            relayed = state.tm.relayed;
            budget = state.invocation.budget;
            match outcome {
                Ok(Ok(guest)) => {
                    if let Err(reason) = guest {
                        self.handler_failed(route, tx.as_ref(), &what, relayed, &reason);
                    }
                    return Some(instance);
                }
                Ok(Err(trap)) => match (state.events.parked.take(), state.invocation.journal.take()) {
                    (Some(parked), Some(parked_journal)) => {
                        if let Invocation::Reply { reply, .. } | Invocation::Failure { best: reply, .. } = &mut what {
                            *reply = state.message.reply.take();
                        }
                        drop(instance);
                        match self.resume_by_replay(route, parked, parked_journal, &mut budget).await {
                            Ok((fresh, resumed)) => (instance, journal) = (fresh, Some(resumed)),
                            Err(failure) => break failure,
                        }
                    }
                    _ => {
                        stats.traps.fetch_add(1, Ordering::Relaxed);
                        break self.trap_reason(&trap, state.limits.memory_refused);
                    }
                },
                Err(()) => {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    break format!("route exceeded its wall-clock limit of {wall:?}");
                }
            }
        };
        let Some(tx) = tx else {
            tracing::error!(module = %route.name, "{failure}");
            return None;
        };
        let call_id = tx.request().call_id().unwrap_or("-").to_string();
        tracing::error!(module = %route.name, tid = tx.id(), call_id, "{failure}");
        // A failed request invocation that neither answered nor forwarded the
        // request answers it here; after a relay the branches carry on.
        if is_request && !relayed && !tx.is_answered() && !is_ack(&tx) {
            let _ = tx.reply(500, "Server Internal Error", &[], None);
        }
        None
    }

    /// Waits out a guest parked by replay (its instance already dropped),
    /// records what the wait returned as the journal's last entry, and gets
    /// a new instance to replay the invocation in. The wait is bounded by the
    /// EBR waiter's own timeout; the wait for a pool slot like a run, since
    /// the pool is full only of running invocations, each bounded.
    async fn resume_by_replay(
        &self,
        route: &LoadedRoute,
        parked: replay::Parked,
        mut journal: Box<Journal>,
        budget: &mut Budget,
    ) -> Result<(RouteInstance, Box<Journal>), String> {
        let waiting = tokio::time::Instant::now();
        let got = parked.wait.await.map(|event| host::events::event_to_guest(&event));
        budget.waited(waiting.elapsed());
        journal.record(replay::Import::WaitForEvent, parked.args, host::events::WaitResult::Ok(got));
        journal.rewind();
        self.inner.stats.replays.fetch_add(1, Ordering::Relaxed);
        let wall = self.inner.limits.wall();
        match tokio::time::timeout(wall, self.inner.admission.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok((self.new_instance(route, permit), journal)),
            _ => {
                self.inner.stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
                Err(format!("no route instance became free within {wall:?} to resume the guest"))
            }
        }
    }

    /// One run of an invocation in `instance`: the whole of it, or with
    /// `suspend = "replay"` the part up to a wait or from a wait on.
    /// `Err(())` when it overran its wall-clock limit, counted from `started`.
    async fn run_once(
        &self,
        route: &LoadedRoute,
        instance: &mut RouteInstance,
        tx: Option<ServerTx>,
        what: &mut Invocation,
        journal: Option<Box<Journal>>,
        started: Instant,
    ) -> Result<wasmtime::Result<exports::GuestResult>, ()> {
        let stats = &self.inner.stats;
        let store = &mut instance.store;
        store.data_mut().begin(tx, self.inner.limits.cpu_ticks(), Some(&self.inner.bus));
        store.data_mut().invocation.journal = journal;
        store.set_epoch_deadline(1);
        instance.uses += 1;
        let wall = self.inner.limits.wall();
        let suspended = store.data().invocation.suspended_ms.clone();
        if let Invocation::Event { event, .. } | Invocation::Notify { event, .. } = &*what {
            store.data_mut().events.event = Some(event.clone());
        }
        let exports = instance.exports.take();
        let outcome = {
            let run = std::pin::pin!(async {
                let exports = match exports {
                    Some(exports) => exports,
                    None => {
                        stats.instantiations.fetch_add(1, Ordering::Relaxed);
                        // Boxed: instantiation's future is large and lives only
                        // until the call starts, while a parked guest holds this
                        // future for as long as it waits.
                        Box::pin(route.pre.instantiate(&mut *store)).await?
                    }
                };
                let request = || Resource::new_borrow(REQUEST_REP);
                match what {
                    Invocation::Request => exports.call_on_request(&mut *store, request()).await,
                    Invocation::Reply { hook, reply } => {
                        store.data_mut().message.reply = reply.take();
                        let reply = Resource::new_borrow(REPLY_REP);
                        exports.call_with_reply(&mut *store, ReplyExport::OnReply, hook, request(), reply).await
                    }
                    Invocation::Failure { hook, best } => {
                        store.data_mut().message.reply = best.take();
                        let reply = Resource::new_borrow(REPLY_REP);
                        exports.call_with_reply(&mut *store, ReplyExport::OnFailure, hook, request(), reply).await
                    }
                    Invocation::Event { route, event } => {
                        let event = host::events::event_to_guest(event);
                        exports.call_on_event(&mut *store, route, &event).await
                    }
                    Invocation::Notify { route, event, tid } => {
                        let event = host::events::event_to_guest(event);
                        exports.call_on_notify(&mut *store, route, &event, *tid).await
                    }
                }
                .map(|guest| (exports, guest))
            });
            within_wall_clock(run, started, wall, &suspended).await
        };
        Ok(outcome?.map(|(exports, guest)| {
            instance.exports = Some(exports);
            guest
        }))
    }

    /// Why a trap ended an invocation, counted by cause: the CPU deadline
    /// (an epoch interrupt), a stack overflow, a memory or table growth the
    /// limiter refused (`memory_refused`), or the guest's own trap.
    fn trap_reason(&self, trap: &wasmtime::Error, memory_refused: bool) -> String {
        let (stats, limits) = (&self.inner.stats, &self.inner.limits);
        match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => {
                stats.cpu_exceeded.fetch_add(1, Ordering::Relaxed);
                format!("route trapped: it ran past its CPU limit of {} ms ([limits] cpu_ms)", limits.cpu_ms)
            }
            Some(wasmtime::Trap::StackOverflow) => {
                stats.stack_overflows.fetch_add(1, Ordering::Relaxed);
                format!("route trapped: it overflowed its {} KiB stack", engine::MAX_WASM_STACK >> 10)
            }
            _ if memory_refused => {
                stats.memory_exceeded.fetch_add(1, Ordering::Relaxed);
                format!(
                    "route trapped: it asked for more than its {} MiB of memory ([limits] memory_mb): {trap:?}",
                    limits.memory_mb
                )
            }
            _ => format!("route trapped: {trap:?}"),
        }
    }

    /// The counted `[limits]`' refusals and the guests parked in place.
    pub fn limit_stats(&self) -> &LimitStats {
        &self.inner.services.limit_stats
    }

    /// A handler returned `Err`: logged (with the module, the export, the
    /// hook's route name and the Call-ID) and counted in `routes:errors`. A
    /// request `on-request` neither answered nor relayed is answered 500;
    /// after the other exports the transaction goes on as after a trap (the
    /// best response follows a failed `on-failure`).
    fn handler_failed(
        &self,
        route: &LoadedRoute,
        tx: Option<&ServerTx>,
        what: &Invocation,
        relayed: bool,
        reason: &str,
    ) {
        self.inner.stats.route_errors.fetch_add(1, Ordering::Relaxed);
        // As a guest's log line: a reason cannot flood the log.
        let reason = match reason.char_indices().nth(host::log::MAX_LOG_LINE) {
            Some((cut, _)) => &reason[..cut],
            None => reason,
        };
        let (export, hook) = match what {
            Invocation::Request => ("on-request", "-"),
            Invocation::Reply { hook, .. } => ("on-reply", &**hook),
            Invocation::Failure { hook, .. } => ("on-failure", &**hook),
            Invocation::Event { route, .. } => ("on-event", &**route),
            Invocation::Notify { route, .. } => ("on-notify", &**route),
        };
        // A notification has no request; the subscriber's, while it lives.
        let subscriber = match what {
            Invocation::Notify { tid, .. } => self.inner.services.transactions.find(*tid),
            _ => None,
        };
        let Some(tx) = tx.or(subscriber.as_ref()) else {
            tracing::warn!(module = %route.name, export, hook, "route failed: {reason}");
            return;
        };
        let call_id = tx.request().call_id().unwrap_or("-");
        tracing::warn!(module = %route.name, export, hook, tid = tx.id(), call_id, "route failed: {reason}");
        if matches!(what, Invocation::Request) && !relayed && !tx.is_answered() && !is_ack(tx) {
            // Fails only when the transaction ended meanwhile: nothing to answer.
            let _ = tx.reply(500, "Server Internal Error", &[], None);
        }
    }

    /// E_CORE_THRESHOLD (OpenSIPS `exec_msg_threshold`): a message whose
    /// routing took longer than the configured time.
    fn check_threshold(&self, started: Instant, tx: Option<&ServerTx>) {
        let threshold = self.inner.limits.exec_msg_threshold_us;
        let bus = &self.inner.bus;
        let took = started.elapsed().as_micros() as u64;
        if threshold == 0 || took <= threshold || !bus.has_subscribers(E_CORE_THRESHOLD) {
            return;
        }
        let extra = match tx {
            Some(tx) => {
                let msg = tx.request();
                let method = msg.method().map(|m| m.as_str()).unwrap_or("-");
                format!("{method} {}", msg.call_id().unwrap_or("-"))
            }
            None => "event route".to_string(),
        };
        let params = Params::new().with("source", "msg processing").with("time", took as i64).with("extra", extra);
        bus.raise(Event::new(E_CORE_THRESHOLD, params));
    }

    /// E_CORE_SHM_THRESHOLD for the instance pool (OpenSIPS raises it for
    /// shared memory): raised when usage crosses the configured percentage,
    /// re-armed once it falls below.
    fn check_pool_pressure(&self) {
        let threshold = self.inner.limits.pool_threshold_percent as usize;
        let bus = &self.inner.bus;
        if threshold == 0 {
            return;
        }
        let (used, size) = self.instances();
        let usage = used * 100 / size.max(1);
        let above = usage >= threshold;
        if above == self.inner.pool_pressure.swap(above, Ordering::Relaxed) || !above {
            return;
        }
        tracing::warn!(used, size, "route instance pool above {threshold}%");
        let params = Params::new()
            .with("usage", usage as i64)
            .with("threshold", threshold as i64)
            .with("used", used as i64)
            .with("size", size as i64);
        bus.raise(Event::new(E_CORE_SHM_THRESHOLD, params));
    }
}

/// Runs `run` with a wall-clock limit that bounds the time the guest spends
/// running, not the time it is suspended waiting for an event or an HTTP
/// reply (those waits have their own host-side timeouts): the deadline moves
/// by the suspended time the imports report. `Err(())` when it passes.
///
/// `run` is pinned by the caller rather than moved in: a moved future would
/// take room twice in the caller's own future.
async fn within_wall_clock<F: std::future::Future>(
    mut run: std::pin::Pin<&mut F>,
    started: Instant,
    wall: Duration,
    suspended_ms: &AtomicU64,
) -> Result<F::Output, ()> {
    // On tokio's clock, which a paused test clock (the harness) moves: what
    // has run since `started` is subtracted from its now, not converted
    // from the process clock, which a paused clock does not follow.
    let start = tokio::time::Instant::now().checked_sub(started.elapsed()).unwrap_or_else(tokio::time::Instant::now);
    let sleep = tokio::time::sleep_until(start + wall);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            out = &mut run => return Ok(out),
            _ = &mut sleep => {
                let deadline = start + wall + Duration::from_millis(suspended_ms.load(Ordering::Relaxed));
                if tokio::time::Instant::now() >= deadline {
                    return Err(());
                }
                sleep.as_mut().reset(deadline);
            }
        }
    }
}

fn is_ack(tx: &ServerTx) -> bool {
    tx.request().method() == Some(&Method::Ack)
}

impl Router for Runtime {
    fn on_request(&self, tx: ServerTx) -> BoxFut {
        let rt = self.clone();
        Box::pin(async move { rt.invoke(Some(tx), Invocation::Request).await })
    }

    fn on_reply(&self, tx: ServerTx, hook: Arc<str>, reply: sip::Message) -> BoxFut {
        let rt = self.clone();
        Box::pin(async move { rt.invoke(Some(tx), Invocation::Reply { hook, reply: Some(Box::new(reply)) }).await })
    }

    fn on_failure(&self, tx: ServerTx, hook: Arc<str>, best: sip::Message) -> BoxFut {
        let rt = self.clone();
        Box::pin(async move { rt.invoke(Some(tx), Invocation::Failure { hook, best: Some(Box::new(best)) }).await })
    }
}
