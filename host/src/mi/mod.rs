//! The management interface (MI): OpenSIPS-compatible JSON-RPC 2.0 over
//! HTTP (`POST /mi`, as `mi_http`) and over UDP datagrams (as
//! `mi_datagram`), so opensips-cli, call-api and other OpenSIPS tooling
//! work unchanged; plus the `sipbox mi` command-line client.
//!
//! # Layout
//! - this file: [`MiConfig`] (the `[mi]` table), [`MiContext`] (the handles
//!   commands use), [`serve`] and [`MiServer`] (the bound addresses);
//! - `jsonrpc`: request validation, errors, responses, param binding;
//! - `commands/`: the command table, one file per group (events, usrloc,
//!   core, stats, routes);
//! - `http`, `udp`: the two listeners; [`client`]: the CLI client.
//!
//! # Limits
//! A request is at most [`MAX_REQUEST_BYTES`]; at most [`MAX_HTTP_CONNECTIONS`]
//! HTTP connections and [`MAX_UDP_IN_FLIGHT`] datagram requests are served at
//! once (further ones wait: the accept/receive loop takes a permit first).
//! The MI has no authentication, like OpenSIPS's: bind it to loopback.
//!
//! # Shutdown
//! The listeners run under the [`Shutdown`] given to [`serve`]: on its signal
//! they stop accepting, drop open connections and requests in progress, and
//! close their sockets; [`Shutdown::stop`] returns once they have.

pub mod client;

mod commands;
mod guard;

pub use commands::subscribers::check_username;
mod http;
mod jsonrpc;
mod udp;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_events;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use serde::Deserialize;

use crate::auth::Auth;
use crate::events::EventBus;
use crate::location::Location;
use crate::runtime::{Reloader, RouteSource, Runtime};
use crate::shutdown::Shutdown;
use crate::sinks::Flatstore;
use crate::transaction::Core;
use crate::transport::Transports;

/// Runs one JSON-RPC request (or batch) in process, as the listeners would
/// for its bytes, and returns the response (`None` for notifications only):
/// for the sample harness's MI steps and for embedding.
pub async fn call(ctx: &MiContext, request: &serde_json::Value) -> Option<serde_json::Value> {
    let payload = request.to_string();
    jsonrpc::handle_payload(ctx, payload.as_bytes()).await
}

/// Largest request (HTTP body or datagram) accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// HTTP connections served at once.
pub const MAX_HTTP_CONNECTIONS: usize = 64;
/// Datagram requests processed at once.
pub const MAX_UDP_IN_FLIGHT: usize = 64;

/// `[mi]`: where the management interface listens.
///
/// ```toml
/// [mi]
/// http = "127.0.0.1:8888"   # JSON-RPC over HTTP: POST /mi ("" disables)
/// udp = "127.0.0.1:8080"    # JSON-RPC over UDP datagrams ("" disables)
/// token = ""                # HTTP bearer token; required off loopback
/// allow = ["127.0.0.0/8", "::1/128"]
/// hosts = []
/// max_requests_per_s = 500
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MiConfig {
    /// `IP:PORT` of the HTTP listener (opensips-cli `url = http://IP:PORT/mi`);
    /// empty disables it.
    ///
    /// Default: `"127.0.0.1:8888"`.
    pub http: String,
    /// `IP:PORT` of the datagram listener (opensips-cli `datagram_ip`/
    /// `datagram_port`, call-api `mi.url`); empty disables it.
    ///
    /// Default: `"127.0.0.1:8080"`.
    pub udp: String,
    /// The bearer token HTTP requests must carry (`Authorization: Bearer
    /// TOKEN`); `""` = none, which is allowed only with `http` on loopback.
    ///
    /// Default: `""`.
    pub token: String,
    /// Source addresses or CIDR networks either listener answers; others
    /// get 403 (HTTP) or no answer (UDP).
    ///
    /// Default: `["127.0.0.0/8", "::1/128"]`.
    pub allow: Vec<String>,
    /// Host names the HTTP MI answers to besides IP addresses and
    /// `localhost` (any other `Host` is refused: DNS rebinding).
    ///
    /// Default: `[]`.
    pub hosts: Vec<String>,
    /// MI requests per second over both listeners (a token bucket with as
    /// many in reserve); beyond it HTTP gets 429 and UDP a JSON-RPC error.
    /// `0` = unbounded.
    ///
    /// Default: `500`.
    pub max_requests_per_s: u32,
}

impl Default for MiConfig {
    fn default() -> Self {
        MiConfig {
            http: "127.0.0.1:8888".into(),
            udp: "127.0.0.1:8080".into(),
            token: String::new(),
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            hosts: Vec::new(),
            max_requests_per_s: 500,
        }
    }
}

impl MiConfig {
    /// The HTTP listen address, `None` when disabled.
    pub fn http_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        parse_addr("mi.http", &self.http)
    }

    /// The datagram listen address, `None` when disabled.
    pub fn udp_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        parse_addr("mi.udp", &self.udp)
    }

    /// Checks both addresses, the allow list, and that nothing answers off
    /// loopback unauthenticated: HTTP there needs a `token`; the datagram MI
    /// cannot carry one (and its sources can be forged), so it stays on loopback.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.http_addr()? {
            anyhow::ensure!(
                addr.ip().is_loopback() || !self.token.is_empty(),
                "mi.http {addr} is not loopback: set mi.token (clients send Authorization: Bearer TOKEN)"
            );
        }
        if let Some(addr) = self.udp_addr()? {
            anyhow::ensure!(
                addr.ip().is_loopback(),
                "mi.udp {addr} is not loopback: the datagram MI has no authentication; bind it to 127.0.0.1 \
                 and use the HTTP MI with a token from elsewhere"
            );
        }
        anyhow::ensure!(
            !self.token.contains(|c: char| c.is_whitespace() || c.is_control()),
            "mi.token must hold no whitespace or control characters"
        );
        guard::Guard::new(self)?;
        Ok(())
    }
}

fn parse_addr(key: &str, s: &str) -> anyhow::Result<Option<SocketAddr>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let addr = s
        .parse::<SocketAddr>()
        .map_err(|_| anyhow::anyhow!("{key} {s:?}: expected IP:PORT (IPv6 as [::1]:PORT) or \"\" to disable"))?;
    Ok(Some(addr))
}

/// What MI commands reach. Build it with [`MiContext::new`] and the `with_*`
/// methods; the optional handles exist once the server has started them
/// (commands that need a missing one say so, statistics leave its group out).
pub struct MiContext {
    /// The event registry (subscribe, raise, listings).
    pub bus: EventBus,
    /// The bus's flatstore files (`evi_flat_rotate`).
    pub flatstore: Option<Flatstore>,
    /// Registrations (`ul_*` commands, usrloc statistics).
    pub location: Location,
    /// The route runtime (runtime and routes statistics).
    pub runtime: Option<Runtime>,
    /// The subscriber store and authentication statistics (`subscriber_*`).
    pub auth: Option<Auth>,
    /// How `reload_routes` reloads: re-reading `[routes]` (the server's).
    /// Without one it reloads the main module from `route_source`.
    pub reloader: Option<Reloader>,
    /// The proxy core (transaction statistics).
    pub core: Option<Core>,
    /// The SIP transports (`ps`, transport statistics).
    pub transports: Option<Transports>,
    /// Where `reload_routes` loads the main module from when there is no
    /// [`reloader`](Self::reloader).
    pub route_source: RouteSource,
    /// Wall-clock start time (`uptime`).
    pub started: SystemTime,
    /// Monotonic start time (uptime seconds).
    pub started_at: Instant,
}

impl MiContext {
    /// A context started now, without runtime, core or transports.
    pub fn new(bus: EventBus, location: Location, route_source: RouteSource) -> MiContext {
        MiContext {
            bus,
            flatstore: None,
            location,
            runtime: None,
            auth: None,
            reloader: None,
            core: None,
            transports: None,
            route_source,
            started: SystemTime::now(),
            started_at: Instant::now(),
        }
    }

    /// Adds the flatstore files of the bus's `flatstore:` subscribers.
    pub fn with_flatstore(mut self, flatstore: Flatstore) -> MiContext {
        self.flatstore = Some(flatstore);
        self
    }

    /// Adds the route runtime.
    pub fn with_runtime(mut self, runtime: Runtime) -> MiContext {
        self.runtime = Some(runtime);
        self
    }

    /// Adds the authenticator (`subscriber_*`, `auth:` statistics).
    pub fn with_auth(mut self, auth: Auth) -> MiContext {
        self.auth = Some(auth);
        self
    }

    /// Adds the reloader `reload_routes` goes through.
    pub fn with_reloader(mut self, reloader: Reloader) -> MiContext {
        self.reloader = Some(reloader);
        self
    }

    /// Adds the proxy core.
    pub fn with_core(mut self, core: Core) -> MiContext {
        self.core = Some(core);
        self
    }

    /// Adds the transports.
    pub fn with_transports(mut self, transports: Transports) -> MiContext {
        self.transports = Some(transports);
        self
    }
}

/// The running MI listeners' addresses. They stop on the [`Shutdown`] they
/// were served with.
pub struct MiServer {
    http: Option<SocketAddr>,
    udp: Option<SocketAddr>,
}

impl MiServer {
    /// The bound HTTP address (port 0 resolved), if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The bound datagram address (port 0 resolved), if enabled.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp
    }
}

/// Binds the configured listeners and serves MI requests, spawned under
/// `shutdown`, until its signal. Fails if an address is invalid or cannot be
/// bound.
pub async fn serve(cfg: &MiConfig, ctx: Arc<MiContext>, shutdown: &Shutdown) -> anyhow::Result<MiServer> {
    let mut server = MiServer { http: None, udp: None };
    let guard = Arc::new(guard::Guard::new(cfg)?);
    if let Some(addr) = cfg.http_addr()? {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the MI HTTP listener on {addr}"))?;
        let local = listener.local_addr()?;
        server.http = Some(local);
        shutdown.spawn(http::serve(listener, ctx.clone(), guard.clone(), shutdown.clone()));
        tracing::info!(listen = %local, "MI: JSON-RPC over HTTP at http://{local}/mi");
    }
    if let Some(addr) = cfg.udp_addr()? {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind the MI datagram listener on {addr}"))?;
        let local = socket.local_addr()?;
        server.udp = Some(local);
        shutdown.spawn(udp::serve(socket, ctx.clone(), guard, shutdown.clone()));
        tracing::info!(listen = %local, "MI: JSON-RPC over UDP datagrams");
    }
    Ok(server)
}
