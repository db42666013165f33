//! The one wasmtime `Engine` of the process: compilation settings, the pooling
//! allocator, and the epoch ticker that bounds guest CPU time. Every number that
//! sizes the sandbox is set here, each with the reason for its value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How long one epoch tick lasts. CPU deadlines are counted in ticks, so this
/// is also the resolution of `cpu_ms`; 10 ms is Spin's choice and costs one
/// atomic increment per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The guest's own stack (wasmtime `max_wasm_stack`): recursion deeper than
/// this traps (`runtime:stack_overflows`). 512 KiB is wasmtime's default and
/// holds tens of thousands of ordinary frames.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// The `[limits]` table of `sipbox.toml`: what one route invocation may use.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Route instances alive at once (running or, later, suspended). Each holds
    /// a pool slot: a linear memory reservation, a table and a fiber stack.
    /// Requests beyond this are answered 503 at once rather than queued.
    pub max_instances: u32,
    /// Linear memory one instance may grow to, in MiB. A guest that asks for
    /// more sees `memory.grow` fail (Rust guests then abort, i.e. trap).
    pub memory_mb: u32,
    /// CPU time one invocation may spend executing WebAssembly, in ms
    /// (rounded up to whole epoch ticks). Time parked in host calls is not
    /// counted. Past it the guest is interrupted and the request gets a 500.
    pub cpu_ms: u64,
    /// Wall-clock bound on one invocation, in ms, including host calls.
    pub wall_ms: u64,
    /// Invocations one route instance serves before it is replaced. 1 (the
    /// default) gives every invocation a fresh instance: nothing a guest
    /// keeps in memory survives its invocation. Larger values keep an
    /// instance whose invocation returned normally warm for the next one,
    /// which saves the instantiation (about half an invocation's fixed
    /// cost) but lets guest globals and heap carry over, as a Kamailio
    /// worker's script state does. An instance that trapped or timed out is
    /// never reused either way.
    pub instance_reuse: u32,
    /// What a guest waiting in `wait-for-event` holds. `in-place` (the
    /// default): its instance, parked (~54 KiB and a pool slot while it
    /// waits; resumed at once). `replay`: nothing but a journal of its calls;
    /// it gives the instance back and is resumed by running it again in a
    /// new one, with its earlier calls answered from the journal
    /// (`runtime/replay.rs`). Needs `instance_reuse = 1`.
    pub suspend: Suspend,
    /// Raise E_CORE_THRESHOLD when routing one message takes longer than
    /// this many microseconds (OpenSIPS `exec_msg_threshold`); 0 = off.
    pub exec_msg_threshold_us: u64,
    /// Raise E_CORE_SHM_THRESHOLD when this percentage of `max_instances`
    /// is in use (OpenSIPS `event_shm_threshold`, for the instance pool);
    /// 0 = off.
    pub pool_threshold_percent: u32,

    // What one invocation may ask of the host besides CPU and memory: each
    // is counted by the import that spends it (`budget.rs`), refused past
    // the limit with the import's own error (the route can answer 503 and
    // go on), and the refusals are counted in `runtime:` statistics. None
    // is a rate: a loop of calls spends its budget, then its CPU time.
    /// `events.raise-event` calls one invocation may make; past it the call
    /// fails with `unavailable`. Every raise is queued to every subscriber
    /// of the event, so an unbounded loop would crowd out other calls'
    /// events.
    pub max_raises: u32,
    /// `notify-on-event` subscriptions plus `wait-for-event` waits one
    /// invocation may make; past it they fail with `too-many-waiters`
    /// (payload: this limit). `[events] ebr_max_waiters` bounds all of them
    /// together.
    pub max_subscriptions: u32,
    /// Seconds one invocation may spend waiting in `wait-for-event`, all of
    /// its waits together; a wait asking for more is cut to what is left,
    /// and once none is left it returns at once with no event (a timeout).
    pub max_wait_s: u32,
    /// Guests parked in place (`suspend = "in-place"`) in `wait-for-event`
    /// at once, each holding a pool slot; past it a wait fails with
    /// `too-many-waiters`, so waiting calls cannot take the whole pool and
    /// the rest is left to requests being routed. Unset: three quarters of
    /// `max_instances`.
    pub max_parked: Option<u32>,
    /// Log lines one invocation may write; later ones are dropped and
    /// counted (`runtime:log_lines_dropped`).
    pub max_log_lines: u32,
    /// `rest.get` / `rest.post` calls one invocation may make; past it they
    /// fail with `transport`. Each waits up to its own timeout, which the
    /// wall-clock limit does not count, so the number is what bounds them.
    pub max_http_requests: u32,
    /// Bytes one invocation may add to its request (`add-header`,
    /// `set-ruri`) or put in the headers of one reply
    /// (`reply-with-headers`); past it the call fails with `bad-header` /
    /// `bad-uri` / `bad-reply`. The host holds these bytes, outside the
    /// guest's `memory_mb`.
    pub max_edit_bytes: u32,
}

/// How a guest waiting in `wait-for-event` is suspended (`[limits] suspend`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Suspend {
    /// Parked in its instance.
    #[default]
    InPlace,
    /// Its instance dropped; resumed by replaying its calls in a new one.
    Replay,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instances: 1000,
            memory_mb: 16,
            cpu_ms: 100,
            wall_ms: 10_000,
            instance_reuse: 1,
            suspend: Suspend::InPlace,
            exec_msg_threshold_us: 0,
            pool_threshold_percent: 0,
            max_raises: 100,
            max_subscriptions: 16,
            max_wait_s: 3600,
            max_parked: None,
            max_log_lines: 100,
            max_http_requests: 16,
            max_edit_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// The CPU budget in epoch ticks (at least one).
    pub fn cpu_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_millis() as u64;
        self.cpu_ms.div_ceil(tick).max(1)
    }

    /// The wall-clock bound on one invocation (one run of it, with replay).
    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize) << 20
    }

    /// Guests that may be parked in place at once (`max_parked`).
    pub fn max_parked(&self) -> u32 {
        self.max_parked.unwrap_or(self.max_instances / 4 * 3).max(1)
    }

    /// Rejects limits that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_instances >= 1, "limits.max_instances must be at least 1");
        let mappings = max_map_count();
        anyhow::ensure!(
            mappings_needed(self.max_instances) <= mappings,
            "limits.max_instances {} is too large for this host: each route instance slot can use \
             {MAPPINGS_PER_SLOT} memory mappings (fiber stack and guard page, linear memory, \
             tables) and Linux allows {mappings} per process (sysctl vm.max_map_count); lower \
             max_instances to {} or raise vm.max_map_count",
            self.max_instances,
            max_instances_for(mappings),
        );
        anyhow::ensure!((1..=4096).contains(&self.memory_mb), "limits.memory_mb must be between 1 and 4096");
        anyhow::ensure!(self.cpu_ms >= 1, "limits.cpu_ms must be at least 1");
        anyhow::ensure!(self.wall_ms >= self.cpu_ms, "limits.wall_ms must be at least limits.cpu_ms");
        anyhow::ensure!(
            self.instance_reuse >= 1,
            "limits.instance_reuse must be at least 1 (1 = a fresh instance per invocation)"
        );
        anyhow::ensure!(
            self.suspend == Suspend::InPlace || self.instance_reuse == 1,
            "limits.suspend = \"replay\" needs limits.instance_reuse = 1: a replay runs in a fresh \
             instance, so the first run must too, or state kept in a warm instance could make the \
             two runs differ"
        );
        anyhow::ensure!(self.pool_threshold_percent <= 100, "limits.pool_threshold_percent must be between 0 and 100");
        if let Some(parked) = self.max_parked {
            anyhow::ensure!(
                (1..=self.max_instances).contains(&parked),
                "limits.max_parked must be between 1 and limits.max_instances ({})",
                self.max_instances
            );
        }
        anyhow::ensure!(self.max_edit_bytes >= 1024, "limits.max_edit_bytes must be at least 1024");
        Ok(())
    }
}

/// Memory mappings one pool slot can need at full use: the stack and linear
/// memory reservations with their guard pages at start, plus the mappings a
/// live instance splits them into (measured: ~2 per slot idle, ~4 more per
/// live instance). Exceeding vm.max_map_count makes mmap fail mid-call and
/// the process abort, so the configuration is refused instead.
const MAPPINGS_PER_SLOT: u64 = 6;
/// Mappings the rest of the process uses (code, heap, thread stacks), with room.
const MAPPINGS_BASE: u64 = 2048;
/// Pool slots beyond `max_instances` (smoke instantiation on reload).
const SPARE_SLOTS: u32 = 16;

fn mappings_needed(max_instances: u32) -> u64 {
    u64::from(max_instances + SPARE_SLOTS) * MAPPINGS_PER_SLOT + MAPPINGS_BASE
}

fn max_instances_for(mappings: u64) -> u64 {
    (mappings.saturating_sub(MAPPINGS_BASE) / MAPPINGS_PER_SLOT).saturating_sub(u64::from(SPARE_SLOTS))
}

/// The kernel's per-process mapping limit; Linux's default when unreadable.
fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(65_530)
}

/// Builds the engine. Uses the pooling allocator when the address space can
/// be reserved for it, and falls back to on-demand allocation (slower
/// instantiation, same limits) when it cannot, e.g. under a low `ulimit -v`.
pub fn build_engine(limits: &Limits) -> anyhow::Result<Engine> {
    match Engine::new(&config(limits, Some(pooling(limits)))) {
        Ok(engine) => Ok(engine),
        Err(err) => {
            tracing::warn!("pooling allocator unavailable ({err:#}); using on-demand allocation");
            Ok(Engine::new(&config(limits, None))?)
        }
    }
}

fn config(limits: &Limits, pool: Option<PoolingAllocationConfig>) -> Config {
    let mut cfg = Config::new();
    // CPU bounding: cheaper than fuel (no per-instruction counter), checked at
    // loop headers and function entries.
    cfg.epoch_interruption(true);
    // Routes use the synchronous component ABI (suspension happens in async
    // host functions on a fiber), so the Store needs none of the
    // component-model-async bookkeeping, which makes each call ~1 µs dearer.
    cfg.concurrency_support(false);
    // Route modules are small and short-lived: a small reservation lets
    // thousands of slots fit in the address space. Bounds checks become
    // explicit beyond the guard, a few percent slower than 4 GiB reservations.
    cfg.memory_reservation(limits.memory_bytes() as u64);
    cfg.memory_guard_size(64 << 10);
    // Guest stack (512 KiB) inside the fiber stack (1 MiB); the rest is for
    // host functions called from the guest. Stacks are virtual: only touched
    // pages cost memory (measured ~45 KiB RSS per parked Rust guest).
    cfg.max_wasm_stack(MAX_WASM_STACK);
    cfg.async_stack_size(1 << 20);
    if let Some(pool) = pool {
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

fn pooling(limits: &Limits) -> PoolingAllocationConfig {
    // A little headroom over max_instances for the smoke instantiation that
    // validates a module on (re)load while the old one is still serving.
    let slots = limits.max_instances + SPARE_SLOTS;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // Rust and C routes have 1-3 core instances (the module, the WASI
        // adapter shims); interpreters (Python, JavaScript) need many more.
        .total_core_instances(slots * 8)
        .max_core_instances_per_component(64)
        .total_memories(slots * 2)
        .max_memories_per_component(4)
        .total_tables(slots * 4)
        .max_tables_per_component(8)
        // One fiber stack per running or parked invocation.
        .total_stacks(slots)
        .max_memory_size(limits.memory_bytes())
        // When a slot is released, find the pages the guest wrote with
        // Linux's PAGEMAP_SCAN (6.7+; plain memset of the first
        // keep_resident bytes elsewhere) and reset up to 256 KiB of them in
        // place; only the rest is madvised away. A route that writes fewer
        // pages than that (shadow stack near 1 MiB, data, heap) reuses its
        // slot without madvise or page faults. Measured: instantiate + on-event + drop
        // 36 -> 21 us (bench/RESULTS.md); the previous fixed 64 KiB memset
        // missed the stack, which sits at 1 MiB, and a 2 MiB memset costs
        // 100 us.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(16 << 10)
        // Warm slots keep their copy-on-write image mapped for the next
        // instance of the same module.
        .max_unused_warm_slots(256)
        .decommit_batch_size(32);
    pool
}

/// Increments the engine's epoch every [`EPOCH_TICK`] on a plain thread, so a
/// guest that never yields is still interrupted. Dropping the handle stops it.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sipbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread at start-up");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
