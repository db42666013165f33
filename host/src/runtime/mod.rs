//! The WebAssembly runtime: one wasmtime `Engine` and `Linker` per process,
//! the current route module (swappable at run time), and one fresh `Store` and
//! instance per invocation.
//!
//! - `engine.rs`: engine settings, pooling allocator, epoch ticker, `[limits]`;
//! - `bindings.rs`: the `bindgen!` for `wit/`;
//! - `state.rs`: `HostState`, what one invocation can reach;
//! - `host/`: the host side of each WIT interface;
//! - `modules.rs`: loading, validating and hot-swapping route modules;
//! - this file: [`Runtime`], which runs invocations for the proxy core.
//!
//! Isolation: a guest gets only its imports (WASI is linked with nothing
//! granted). A trap, a CPU overrun (epoch deadline), memory exhaustion (store
//! limiter) or a wall-clock overrun ends that invocation only; the request it
//! was routing is answered 500.

mod bindings;
mod engine;
mod host;
mod modules;
mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};

pub use engine::{Limits, EPOCH_TICK};
pub use modules::{LoadedRoute, RouteSource};

use crate::location::Location;
use crate::sip::{self, Method};
use crate::transaction::{BoxFut, Router, ServerTx};
use bindings::Route;
use host::message::{REPLY_REP, REQUEST_REP};
use state::HostState;

/// Counters of what the runtime did, for statistics.
#[derive(Default, Debug)]
pub struct RuntimeStats {
    pub invocations: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub reloads: AtomicU64,
}

/// The route runtime. Cheap to clone; implements the proxy core's [`Router`].
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    current: ArcSwap<LoadedRoute>,
    generation: AtomicU64,
    limits: Limits,
    /// One permit per live instance: the pool's capacity, enforced before
    /// instantiation so overload is a 503, not an allocation failure.
    admission: Arc<Semaphore>,
    location: Location,
    stats: RuntimeStats,
    _ticker: engine::EpochTicker,
}

/// What an invocation is for.
enum Invocation {
    Request,
    Reply { hook: Arc<str>, reply: sip::Message },
    Failure { hook: Arc<str>, best: sip::Message },
}

impl Runtime {
    /// Builds the engine and linker and loads the first route module; fails
    /// with the reason when the module is not a valid `sipbox:route` component.
    pub fn new(limits: Limits, location: Location, source: RouteSource) -> anyhow::Result<Runtime> {
        limits.validate()?;
        let engine = engine::build_engine(&limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Route::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
        let ticker = engine::EpochTicker::start(&engine);
        let first = modules::prepare(&engine, &linker, &source, 1)?;
        let runtime = Runtime {
            inner: Arc::new(Inner {
                admission: Arc::new(Semaphore::new(limits.max_instances as usize)),
                engine,
                linker,
                current: ArcSwap::from_pointee(first),
                generation: AtomicU64::new(1),
                limits,
                location,
                stats: RuntimeStats::default(),
                _ticker: ticker,
            }),
        };
        Ok(runtime)
    }

    /// The module serving new invocations.
    pub fn current(&self) -> Arc<LoadedRoute> {
        self.inner.current.load_full()
    }

    /// Make-before-break reload: compiles, type-checks and smoke-instantiates
    /// the new module, then swaps it in. Invocations already running finish on
    /// the module they started with. On error the old module keeps serving.
    pub async fn reload(&self, source: RouteSource) -> anyhow::Result<Arc<LoadedRoute>> {
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let inner = self.inner.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            modules::prepare(&inner.engine, &inner.linker, &source, generation)
        })
        .await??;
        self.smoke_test(&loaded).await?;
        let loaded = Arc::new(loaded);
        self.inner.current.store(loaded.clone());
        self.inner.stats.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(module = %loaded.name, generation, "route module loaded");
        Ok(loaded)
    }

    /// Instantiates a module once without a request, so a module whose
    /// start-up traps is refused before it serves traffic.
    async fn smoke_test(&self, route: &LoadedRoute) -> anyhow::Result<()> {
        let mut store = self.new_store(None, route.name.clone());
        route
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("route module {} failed to instantiate: {e:#}", route.name))?;
        Ok(())
    }

    pub fn stats(&self) -> &RuntimeStats {
        &self.inner.stats
    }

    fn new_store(&self, tx: Option<ServerTx>, module: Arc<str>) -> Store<HostState> {
        let limits = &self.inner.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes())
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState::new(
            tx,
            self.inner.location.clone(),
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

    async fn invoke(&self, tx: ServerTx, what: Invocation) {
        let stats = &self.inner.stats;
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        let is_request = matches!(what, Invocation::Request);
        let Ok(_permit) = self.inner.admission.clone().try_acquire_owned() else {
            stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(tid = tx.id(), "all route instances busy; rejecting with 503");
            if is_request && !is_ack(&tx) {
                let _ = tx.reply(503, "Service Unavailable", &[("Retry-After", "5")], None);
            }
            return;
        };
        let route = self.current();
        let mut store = self.new_store(Some(tx.clone()), route.name.clone());
        let wall = Duration::from_millis(self.inner.limits.wall_ms);
        let run = async {
            let instance = route.pre.instantiate_async(&mut store).await?;
            let request = || Resource::new_borrow(REQUEST_REP);
            match what {
                Invocation::Request => instance.call_on_request(&mut store, request()).await,
                Invocation::Reply { hook, reply } => {
                    store.data_mut().reply = Some(reply);
                    let reply = Resource::new_borrow(REPLY_REP);
                    instance.call_on_reply(&mut store, &hook, request(), reply).await
                }
                Invocation::Failure { hook, best } => {
                    store.data_mut().reply = Some(best);
                    let reply = Resource::new_borrow(REPLY_REP);
                    instance.call_on_failure(&mut store, &hook, request(), reply).await
                }
            }
        };
        let failure = match tokio::time::timeout(wall, run).await {
            Ok(Ok(())) => return,
            Ok(Err(trap)) => {
                stats.traps.fetch_add(1, Ordering::Relaxed);
                format!("route trapped: {trap:?}")
            }
            Err(_) => {
                stats.timeouts.fetch_add(1, Ordering::Relaxed);
                format!("route exceeded its wall-clock limit of {wall:?}")
            }
        };
        let call_id = tx.request().call_id().unwrap_or("-").to_string();
        tracing::error!(module = %route.name, tid = tx.id(), call_id, "{failure}");
        // A failed request invocation that neither answered nor forwarded the
        // request answers it here; after a relay the branches carry on.
        let relayed = store.data().relayed;
        if is_request && !relayed && !tx.is_answered() && !is_ack(&tx) {
            let _ = tx.reply(500, "Server Internal Error", &[], None);
        }
    }
}

fn is_ack(tx: &ServerTx) -> bool {
    tx.request().method() == Some(&Method::Ack)
}

impl Router for Runtime {
    fn on_request(&self, tx: ServerTx) -> BoxFut {
        let rt = self.clone();
        Box::pin(async move { rt.invoke(tx, Invocation::Request).await })
    }

    fn on_reply(&self, tx: ServerTx, hook: Arc<str>, reply: sip::Message) -> BoxFut {
        let rt = self.clone();
        Box::pin(async move { rt.invoke(tx, Invocation::Reply { hook, reply }).await })
    }

    fn on_failure(&self, tx: ServerTx, hook: Arc<str>, best: sip::Message) -> BoxFut {
        let rt = self.clone();
        Box::pin(async move { rt.invoke(tx, Invocation::Failure { hook, best }).await })
    }
}
