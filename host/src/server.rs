//! Wires the layers into a running server, building each service once, in
//! dependency order, with everything it needs (nothing is filled in later):
//! the runtime's invocation queue, the event bus (sink schemes, the queue's
//! invoker), the location service (its E_UL_* listener on the bus), the
//! transaction table, the route runtime (location, bus, table, vars, queue),
//! then transports, proxy core (the runtime as its router, the table) and the
//! management interface; then waits for signals (SIGHUP reloads the route
//! module, SIGINT/SIGTERM stop after flushing registrations).

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::events::{EventBus, usrloc};
use crate::location::Location;
use crate::mi::{self, MiContext};
use crate::pike::Pike;
use crate::runtime::{self, INVOCATION_BACKLOG, RouteServices, RouteSource, Runtime};
use crate::sinks::{self, Flatstore};
use crate::transaction::{Core, Transactions};
use crate::transport::{DeferredHandler, Transports};

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
    match &config.routes.module {
        Some(path) => RouteSource::File(path.clone()),
        None => RouteSource::Embedded,
    }
}

/// Loads a route module the way `run` would, without opening sockets.
pub async fn check_route(config: &Config, source: RouteSource) -> anyhow::Result<()> {
    config.location.validate()?;
    let limits = config.limits.clone();
    let runtime = tokio::task::spawn_blocking(move || Runtime::standalone(limits, RouteSource::Embedded)).await??;
    runtime.reload(source).await?;
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen_specs()?;
    let source = route_source(&config);

    // The runtime's invoker first: the event registry hands it `route:`
    // deliveries and EBR notifications, which the runtime, built last, runs.
    let (invoker, invocations) = runtime::invocations(config.events.ebr_max_notify_concurrency + INVOCATION_BACKLOG);
    // The event registry: static subscriptions from the config, registrar
    // events, and routes (they raise events; route: sinks run them).
    let flatstore = Flatstore::default();
    let schemes = sinks::schemes(Some(invoker.route_handler()), &flatstore);
    let bus = EventBus::new(&config.events, schemes, Some(invoker.notify_handler()))
        .context("invalid [events] configuration")?;
    // The location's changes become E_UL_* events, raised as they are made.
    let location = Location::open_with_listener(&config.location, usrloc::listener(bus.clone()))
        .context("cannot open the location store")?;
    // The core registers its transactions where the runtime finds them
    // (tm.inject-branches), so the runtime needs no handle on the core.
    let transactions = Transactions::default();
    let runtime = {
        let services = RouteServices {
            location: location.clone(),
            bus: bus.clone(),
            transactions: transactions.clone(),
            vars: config.routes.vars.clone(),
        };
        let (limits, source) = (config.limits.clone(), source.clone());
        tokio::task::spawn_blocking(move || Runtime::new(limits, source, services, invocations)).await??
    };
    let route = runtime.current();

    // The transports need the core to hand messages to, and the core needs
    // the transports to send: bind with a deferred handler, then point it at
    // the core before any message can be processed.
    let deferred = DeferredHandler::new();
    let transports = Transports::bind(&listen, deferred.clone()).await.context("cannot open the SIP listeners")?;
    let router = Arc::new(runtime.clone());
    let core = Core::with_transactions(transports.clone(), config.timers.clone(), router, transactions);
    if config.pike.enabled {
        deferred.set(Pike::new(&config.pike, Arc::new(core.clone()), bus.clone()));
    } else {
        deferred.set(Arc::new(core.clone()));
    }

    let mi_context = MiContext::new(bus.clone(), location.clone(), source.clone())
        .with_flatstore(flatstore)
        .with_runtime(runtime.clone())
        .with_core(core.clone())
        .with_transports(transports.clone());
    let mi_server =
        mi::serve(&config.mi, Arc::new(mi_context)).await.context("cannot start the management interface")?;
    tracing::info!(
        listen = ?config.server.listen,
        mi_http = ?mi_server.http_addr(),
        mi_udp = ?mi_server.udp_addr(),
        module = %route.name,
        "sipbox {} serving", env!("CARGO_PKG_VERSION")
    );

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                let source = route_source(&config);
                if let Err(err) = runtime.reload(source).await {
                    tracing::error!("route reload refused, the old module keeps serving: {err:#}");
                }
            }
        }
    }
    tracing::info!("shutting down");
    mi_server.shutdown().await;
    drop(core);
    location.flush().context("flushing registrations at shutdown")?;
    Ok(())
}
