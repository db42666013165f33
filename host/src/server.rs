//! Wires the layers into a running server: location service, route runtime,
//! proxy core and transports; then waits for signals (SIGHUP reloads the
//! route module, SIGINT/SIGTERM stop after flushing registrations).

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::events::{EventBus, usrloc};
use crate::location::Location;
use crate::mi::{self, MiContext};
use crate::pike::Pike;
use crate::runtime::{RouteSource, Runtime};
use crate::transaction::Core;
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
    match &config.routes.module {
        Some(path) => RouteSource::File(path.clone()),
        None => RouteSource::Embedded,
    }
}

/// Loads a route module the way `run` would, without opening sockets.
pub async fn check_route(config: &Config, source: RouteSource) -> anyhow::Result<()> {
    let location = Location::open(&crate::location::LocationConfig { db_path: None, ..config.location.clone() })?;
    let limits = config.limits.clone();
    let runtime = tokio::task::spawn_blocking(move || Runtime::new(limits, location, RouteSource::Embedded)).await??;
    runtime.reload(source).await?;
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen_specs()?;
    let location = Location::open(&config.location).context("cannot open the location store")?;
    let source = route_source(&config);
    let limits = config.limits.clone();
    let runtime = {
        let (location, source) = (location.clone(), source.clone());
        tokio::task::spawn_blocking(move || Runtime::new(limits, location, source)).await??
    };
    let route = runtime.current();

    // The event registry: static subscriptions from the config, registrar
    // events, and the runtime (routes raise events; route: sinks run them).
    let bus = EventBus::try_new(&config.events).context("invalid [events] configuration")?;
    runtime.set_event_bus(bus.clone());
    runtime.set_vars(config.routes.vars.clone());
    usrloc::bridge(bus.clone(), &location);

    // The core sends through the transports and handles what they receive:
    // bind the sockets, build the core with the sending side, then start the
    // receive loops with the core (behind pike when enabled) as their handler.
    let (transports, listeners) = Transports::bind(&listen).await.context("cannot open the SIP listeners")?;
    let core = Core::new(transports.clone(), config.timers.clone(), Arc::new(runtime.clone()));
    runtime.set_core(core.clone());
    let handler: Arc<dyn InboundHandler> = if config.pike.enabled {
        Pike::new(&config.pike, Arc::new(core.clone()), bus.clone())
    } else {
        Arc::new(core.clone())
    };
    listeners.start(handler);

    let mi_context = MiContext::new(bus.clone(), location.clone(), source.clone())
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
