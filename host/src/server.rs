//! Wires the layers into a running server, building each service once, in
//! dependency order, with everything it needs (nothing is filled in later):
//! the runtime's invocation queue, the event bus (sink schemes, the queue's
//! invoker), the location service (its E_UL_* listener on the bus), the
//! transaction table, the route runtime (location, bus, table, vars, queue),
//! then the transports' sockets, the proxy core (the runtime as its router,
//! the table), the receive loops (the core as their handler) and the
//! management interface. Then it serves until the shutdown future it was
//! given completes (the binary passes one for SIGINT/SIGTERM, a test its
//! own), reloading the route modules meanwhile on SIGHUP, on MI
//! `reload_routes` and when a module file changes (`[routes] watch`): each
//! reload re-reads `[routes]` from the config file the server was started
//! with ([`Config::source_path`]) through one [`Reloader`].
//!
//! Shutdown runs in order: the SIP receive loops stop and close
//! their sockets (no new messages), then the step where live transactions
//! will be finished (`finish_live_transactions`, empty today), then the
//! management interface, then the event subscribers' deliveries (closing
//! their sinks), and last the registrations are flushed to disk. Each stage's
//! tasks run under their own [`Shutdown`], and each stage has ended before
//! the next begins.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::auth::Auth;
use crate::config::Config;
use crate::events::RaiseObserver;
use crate::events::{Event, EventBus, Params, Value, usrloc};
use crate::location::Location;
use crate::mi::{self, MiContext};
use crate::pike::Pike;
use crate::runtime::{
    self, HttpClient, INVOCATION_BACKLOG, ReadRoutes, Reloader, RouteServices, RouteSource, RoutesUpdate, Runtime,
};
use crate::shutdown::Shutdown;
use crate::sinks::{self, Flatstore};
use crate::transaction::{Core, Transactions};
use crate::transport::{InboundHandler, Transports};

/// The documented defaults (the repository's `sipbox.toml`).
pub const DEFAULTS_TOML: &str = include_str!("../../sipbox.toml");

/// Logs to stderr; `RUST_LOG` overrides the configured filter.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn route_source(config: &Config) -> RouteSource {
    config.routes.route_set().main
}

/// How a reload re-reads `[routes]`: from the config file when the server
/// was started from one (the whole file is parsed and validated, so a file
/// broken since start-up is refused with the reason; only `[routes]` is
/// applied, the other tables need a restart; [`Config::module_override`]
/// still replaces the main module), else the start-up table again.
fn reread_routes(config: &Config) -> ReadRoutes {
    match config.source_path.clone() {
        Some(path) => {
            let module = config.module_override.clone();
            Box::new(move || {
                let mut routes = Config::load(&path)?.routes;
                routes.apply_override(module.as_ref());
                Ok(routes.update())
            })
        }
        None => {
            let routes = config.routes.update();
            Box::new(move || Ok(routes.clone()))
        }
    }
}

/// Loads a route module the way `run` would, under `config`'s `[limits]`,
/// without opening sockets.
pub async fn check_route(config: &Config, source: RouteSource) -> anyhow::Result<()> {
    config.location.validate()?;
    let limits = config.limits.clone();
    // The module itself is the runtime's first, compiled under these limits
    // (a module that cannot fit them is refused here, with the reason), then
    // instantiated once as a reload would.
    let runtime = tokio::task::spawn_blocking(move || Runtime::standalone(limits, source)).await??;
    runtime.check_current().await?;
    Ok(())
}

/// Where a stack reaches the world besides its sockets: the server's are the
/// network's; the sample harness gives recorders.
pub struct Seams {
    /// What routes' `rest` calls go through.
    pub http: HttpClient,
    /// Sees every event raised (the harness records them).
    pub observer: Option<RaiseObserver>,
}

impl Seams {
    /// The network's HTTP client, no observer.
    pub fn production() -> anyhow::Result<Seams> {
        Ok(Seams { http: HttpClient::network()?, observer: None })
    }
}

/// The services of a server (its stack), built once, in dependency order, before any
/// socket: the server ([`run`]) and the sample harness
/// ([`crate::harness`]) build the same stack, the one with sockets and the
/// other over an in-memory wire.
pub struct Stack {
    /// The `flatstore:` sink's open files (MI `evi_flat_rotate`).
    pub flatstore: Flatstore,
    /// The event registry.
    pub bus: EventBus,
    /// Registrations.
    pub location: Location,
    /// The live transactions, shared by the core and the runtime.
    pub transactions: Transactions,
    /// Digest authentication and the subscriber store.
    pub auth: Auth,
    /// The route runtime.
    pub runtime: Runtime,
}

impl Stack {
    /// Builds the runtime's invocation queue, the event bus, the location
    /// service and the runtime with its route modules, from `config`.
    ///
    /// # Errors
    /// A bad `[events]` table, a location store that cannot be opened, a
    /// route module that does not load.
    pub async fn build(config: &Config, seams: Seams) -> anyhow::Result<Stack> {
        // The runtime's invoker first: the event registry hands it `route:`
        // deliveries and EBR notifications, which the runtime, built last, runs.
        let (invoker, invocations) =
            runtime::invocations(config.events.ebr_max_notify_concurrency + INVOCATION_BACKLOG);
        // The event registry: static subscriptions from the config, registrar
        // events, and routes (they raise events; route: sinks run them).
        let flatstore = Flatstore::default();
        let schemes = sinks::schemes(Some(invoker.route_handler()), &flatstore);
        let bus = EventBus::observed(&config.events, schemes, Some(invoker.notify_handler()), seams.observer)
            .context("invalid [events] configuration")?;
        // The location's changes become E_UL_* events, raised as they are made.
        let location = Location::open_with_listener(&config.location, usrloc::listener(bus.clone()))
            .context("cannot open the location store")?;
        // The core registers its transactions where the runtime finds them
        // (tm.inject-branches), so the runtime needs no handle on the core.
        let transactions = Transactions::default();
        let auth = open_auth(config, &bus)?;
        let runtime = {
            let services = RouteServices {
                location: location.clone(),
                bus: bus.clone(),
                transactions: transactions.clone(),
                vars: config.routes.vars.clone(),
                http: seams.http,
                auth: auth.clone(),
            };
            let (limits, routes, cache) =
                (config.limits.clone(), config.routes.route_set(), config.routes.compile_cache());
            tokio::task::spawn_blocking(move || Runtime::with_routes(limits, &routes, cache, services, invocations))
                .await??
        };
        Ok(Stack { flatstore, bus, location, transactions, auth, runtime })
    }

    /// The proxy core sending through `transports`, routing with the runtime.
    pub fn core(&self, config: &Config, transports: Transports) -> Core {
        let router = Arc::new(self.runtime.clone());
        let core = Core::with_transactions(transports, config.timers.clone(), router, self.transactions.clone());
        core.set_limits(config.server.max_transactions, config.server.overload_retry_after_s);
        core.set_max_branches(config.server.max_branches);
        core
    }

    /// What receives the transports' messages: the core, behind pike when
    /// `[pike]` enables it.
    pub fn inbound_handler(&self, config: &Config, core: &Core) -> Arc<dyn InboundHandler> {
        if config.pike.enabled_for(&config.listen_specs().unwrap_or_default()) {
            Pike::new(&config.pike, Arc::new(core.clone()), self.bus.clone())
        } else {
            Arc::new(core.clone())
        }
    }
}

/// The subscriber store and authenticator of `[auth]`, with `required`
/// resolved against the SIP listeners (an open registrar on a public address
/// is refused unless the config asks for it), raising `E_AUTH_BLOCKED` on
/// `bus` when a source is throttled.
fn open_auth(config: &Config, bus: &EventBus) -> anyhow::Result<Auth> {
    let exposed: Vec<String> = config
        .listen_specs()?
        .iter()
        .filter(|spec| !spec.addr.ip().is_loopback())
        .map(|spec| spec.to_string())
        .collect();
    let required = config.auth.resolve_required(&exposed)?;
    if !required && !exposed.is_empty() {
        tracing::warn!(
            listeners = %exposed.join(", "),
            "[auth] required = false on a listener that is not loopback: anyone reaching it may register as any user"
        );
    }
    let bus = bus.clone();
    let auth = Auth::open(&config.auth, required).context("cannot open the subscriber store")?;
    Ok(auth.with_block_listener(Box::new(move |ip, failures, block_s| {
        let params = Params(vec![
            (Some("ip".into()), Value::Str(ip.to_string())),
            (Some("failures".into()), Value::Int(failures.into())),
            (Some("block_s".into()), Value::Int(block_s.into())),
        ]);
        bus.raise(Event { name: E_AUTH_BLOCKED.into(), params });
    })))
}

/// Raised when a source is refused for failing authentication too often
/// (`[auth] max_failures`): `ip`, `failures`, `block_s`.
pub const E_AUTH_BLOCKED: &str = "E_AUTH_BLOCKED";

/// Runs the server until `shutdown` completes, then stops it in order (see
/// the module docs) and returns. SIGHUP, MI `reload_routes` and changes to
/// the module files reload the route modules meanwhile.
///
/// # Errors
/// A service that cannot start (bad configuration, a port that cannot be
/// bound, a route module that does not load), or registrations that cannot
/// be flushed at the end.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listen = config.listen_specs()?;
    let source = route_source(&config);
    let stack = Stack::build(&config, Seams::production()?).await?;
    let route = stack.runtime.current();
    let applied: RoutesUpdate = config.routes.update();
    let reloader = Reloader::new(stack.runtime.clone(), applied, reread_routes(&config));

    // The core sends through the transports and handles what they receive:
    // bind the sockets, build the core with the sending side, then start the
    // receive loops with the core (behind pike when enabled) as their handler.
    let (transports, listeners) =
        Transports::bind_with(&listen, &config.tcp).await.context("cannot open the SIP listeners")?;
    let transports = transports.with_aliases(&config.server.domains);
    let core = stack.core(&config, transports.clone());
    let receiving = Shutdown::new();
    listeners.start(stack.inbound_handler(&config, &core), &receiving);
    let Stack { flatstore, bus, location, runtime, auth, .. } = stack;

    let mi_context = MiContext::new(bus.clone(), location.clone(), source.clone())
        .with_flatstore(flatstore)
        .with_runtime(runtime.clone())
        .with_auth(auth.clone())
        .with_reloader(reloader.clone())
        .with_core(core.clone())
        .with_transports(transports.clone());
    let mi_serving = Shutdown::new();
    let mi_server = mi::serve(&config.mi, Arc::new(mi_context), &mi_serving)
        .await
        .context("cannot start the management interface")?;
    tracing::info!(
        listen = ?config.server.listen,
        mi_http = ?mi_server.http_addr(),
        mi_udp = ?mi_server.udp_addr(),
        module = %route.name,
        "sipbox {} serving", env!("CARGO_PKG_VERSION")
    );

    let watching = Shutdown::new();
    runtime::watch_modules(reloader.clone(), &watching);

    reload_on_hangup_until(shutdown, &reloader).await?;

    // Shutdown, in order: each step has ended before the next begins.
    tracing::info!("shutting down");
    watching.stop().await;
    // New calls are turned away (503) while the live ones finish: the
    // sockets still receive their responses, ACKs, CANCELs and BYEs.
    drain(&core, Duration::from_secs(config.server.drain_s.into())).await;
    // No new messages: the receive loops end and close the SIP sockets.
    receiving.stop().await;
    mi_serving.stop().await;
    // Event subscribers: the delivery in progress finishes, the sinks close.
    bus.shutdown().await;
    location.flush().context("flushing registrations at shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves until `shutdown` completes, reloading every route module on each
/// SIGHUP.
async fn reload_on_hangup_until(shutdown: impl Future<Output = ()>, reloader: &Reloader) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            Some(()) = hangup.recv() => {
                // The outcome is logged and counted by the reloader.
                let _ = reloader.reload(None, "SIGHUP").await;
            }
        }
    }
}

/// How long a drain waits with nothing unanswered before it ends: twice
/// T1, time for an answered call's ACK and an immediate BYE to arrive.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// The graceful drain: new requests outside a dialog get 503 with
/// Retry-After ([`Core::drain`]) while the transactions still unanswered
/// (ringing calls, guests parked in `wait-for-event`, requests in a route)
/// finish, up to `deadline` (`[server] drain_s`); what is left then is cut
/// off with the process. It ends once nothing was unanswered for
/// [`DRAIN_QUIET`], so the ACK and BYE a caller sends right after its 200
/// still pass. Polled: a drain happens once per process.
async fn drain(core: &Core, deadline: Duration) {
    core.drain();
    let started = tokio::time::Instant::now();
    let mut left = core.unanswered();
    tracing::info!(unanswered = left, deadline_s = deadline.as_secs(), "draining: new calls get 503");
    let mut quiet_since = started;
    while started.elapsed() < deadline {
        if left > 0 {
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= DRAIN_QUIET.min(deadline) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = core.unanswered();
    }
    if left > 0 {
        tracing::warn!(unanswered = left, "drain deadline passed: cutting the rest off");
    } else {
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, "drained");
    }
}

#[cfg(test)]
mod tests;
