//! `sipbox.toml`: the server's configuration. Every table has embedded
//! defaults (`Config::default()`, documented in the repository's
//! `sipbox.toml`), so `sipbox run` needs no file. Unknown keys are errors, so
//! a typo is reported instead of silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::auth::AuthConfig;
use crate::events::EventsConfig;
use crate::location::LocationConfig;
use crate::mi::MiConfig;
use crate::pike::PikeConfig;
use crate::runtime::{CompileCache, Limits, RouteSet, RouteSource, RoutesUpdate};
use crate::transaction::Timers;
use crate::transport::{ListenSpec, TcpConfig};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The file this was read from (`None`: the embedded defaults or text):
    /// a reload re-reads `[routes]` from it.
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
    /// The main module whatever `[routes] module` says, also when a reload
    /// re-reads the file (`sipbox run` in a route project serves the build's
    /// output this way): see [`Config::serving_module`].
    #[serde(skip)]
    pub module_override: Option<PathBuf>,
    pub server: ServerConfig,
    pub routes: RoutesConfig,
    pub location: LocationConfig,
    pub timers: Timers,
    pub limits: Limits,
    pub events: EventsConfig,
    pub mi: MiConfig,
    pub pike: PikeConfig,
    pub auth: AuthConfig,
    pub tcp: TcpConfig,
}

/// `[server]`: sockets and logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// SIP listeners, "udp:IP:PORT" or "tcp:IP:PORT" (IPv6 as "[::1]").
    pub listen: Vec<String>,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log: String,
    /// DNS names of this proxy (OpenSIPS `alias`): a URI naming one of them
    /// on a listener's port is this proxy (`tm.is-myself`, loose routing,
    /// the default route's local users), like its addresses.
    pub domains: Vec<String>,
    /// Most live server transactions; a new request beyond it is answered 503 with
    /// Retry-After, without a transaction (0 = no limit).
    pub max_transactions: usize,
    /// The Retry-After of that 503, seconds.
    pub overload_retry_after_s: u32,
    /// Most branches one transaction forks over its life, every serial stage
    /// and injected branch included (Kamailio's and OpenSIPS's
    /// `max_branches`, 12); a relay or injection past it fails with
    /// `bad-target` and sends nothing, and is counted in
    /// `tm:branches_refused`.
    pub max_branches: usize,
    /// On SIGTERM/SIGINT, seconds the server keeps serving the transactions
    /// still unanswered (ringing calls, parked guests) while new requests
    /// outside a dialog get 503 with Retry-After; then it stops. 0 = stop at once.
    pub drain_s: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            log: "info".into(),
            domains: Vec::new(),
            max_transactions: crate::transaction::DEFAULT_MAX_TRANSACTIONS,
            overload_retry_after_s: 5,
            max_branches: crate::transaction::DEFAULT_MAX_BRANCHES,
            drain_s: 30,
        }
    }
}

/// `[routes]`: which route modules run, their settings, how they reload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// The main route module: a `.wasm` component exporting the
    /// `sipbox:route` world; relative paths are relative to the config file.
    /// None = the embedded default route.
    pub module: Option<PathBuf>,
    /// Event-route modules by name: a `route:NAME` event runs `on-event` in
    /// module NAME when one is configured, else in the main module.
    pub modules: BTreeMap<String, PathBuf>,
    /// Reload a module when its file changes (debounced; its directory is
    /// watched, so replace-by-rename is seen). Only files are watched.
    pub watch: bool,
    /// Keep compiled modules on disk, keyed by content hash, so a restart or
    /// a reload of an unchanged module does not compile again.
    pub cache: bool,
    /// Where; None = `$XDG_CACHE_HOME/sipbox`, else `~/.cache/sipbox`.
    pub cache_dir: Option<PathBuf>,
    /// Settings routes read with `config.get(name)` (e.g. a push URL).
    pub vars: BTreeMap<String, String>,
}

impl Default for RoutesConfig {
    fn default() -> Self {
        RoutesConfig {
            module: None,
            modules: BTreeMap::new(),
            watch: true,
            cache: true,
            cache_dir: None,
            vars: BTreeMap::new(),
        }
    }
}

impl RoutesConfig {
    /// The module table this describes.
    pub fn route_set(&self) -> RouteSet {
        let file = |path: &PathBuf| RouteSource::File(path.clone());
        RouteSet {
            main: self.module.as_ref().map_or(RouteSource::Embedded, file),
            named: self.modules.iter().map(|(name, path)| (name.clone(), file(path))).collect(),
        }
    }

    /// `module`, when given, replaces the main module, and is watched.
    pub fn apply_override(&mut self, module: Option<&PathBuf>) {
        if let Some(module) = module {
            self.module = Some(module.clone());
            self.watch = true;
        }
    }

    /// What a reload applies from this table.
    pub fn update(&self) -> RoutesUpdate {
        RoutesUpdate { routes: self.route_set(), vars: self.vars.clone(), watch: self.watch }
    }

    /// The compile cache to use: `None` when `cache = false`, or when the
    /// directory cannot be used (logged: the server then compiles every
    /// load, as it would without a cache).
    pub fn compile_cache(&self) -> Option<CompileCache> {
        if !self.cache {
            return None;
        }
        let Some(dir) = self.cache_dir.clone().or_else(CompileCache::default_dir) else {
            tracing::warn!("no compile cache: set routes.cache_dir (neither XDG_CACHE_HOME nor HOME is set)");
            return None;
        };
        match CompileCache::open(&dir) {
            Ok(cache) => Some(cache),
            Err(err) => {
                tracing::warn!("no compile cache: {err:#}");
                None
            }
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        if let Some(dir) = path.parent() {
            let routes = &mut config.routes;
            let paths = routes.module.iter_mut().chain(routes.modules.values_mut()).chain(routes.cache_dir.iter_mut());
            for relative in paths.filter(|p| p.is_relative()) {
                *relative = dir.join(&*relative);
            }
        }
        config.source_path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Serves `module` as the main route, watched, from now on and after
    /// every reload (which re-reads the rest of `[routes]` from the file).
    pub fn serving_module(mut self, module: PathBuf) -> Config {
        self.routes.apply_override(Some(&module));
        self.module_override = Some(module);
        self
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: listen addresses and limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.server.listen.is_empty(), "server.listen must name at least one socket");
        anyhow::ensure!(
            (1..=1000).contains(&self.server.max_branches),
            "server.max_branches must be between 1 and 1000"
        );
        self.listen_specs()?;
        self.limits.validate()?;
        self.location.validate()?;
        self.mi.validate()?;
        self.pike.validate()?;
        self.auth.validate()?;
        self.tcp.validate()?;
        self.routes.route_set().validate()?;
        Ok(())
    }

    pub fn listen_specs(&self) -> anyhow::Result<Vec<ListenSpec>> {
        self.server
            .listen
            .iter()
            .map(|s| s.parse::<ListenSpec>().map_err(|e| anyhow::anyhow!("server.listen {s:?}: {e}")))
            .collect()
    }
}

/// A list of CIDR networks in a setting (`[mi] allow`, `[pike] trusted`,
/// `[events] deny_destinations`, ...): a bare address is a network of one.
/// `key` names the setting in the error.
pub(crate) fn parse_nets(key: &str, list: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| anyhow::anyhow!("{key} {s:?} is not an IP address or CIDR network (e.g. \"10.0.0.0/8\")"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_are_the_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sipbox.toml");
        let text = std::fs::read_to_string(path).expect("repository sipbox.toml");
        let documented = Config::parse(&text).expect("sipbox.toml parses");
        assert_eq!(format!("{documented:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("").expect("empty config");
        assert_eq!(config.server.listen.len(), 2);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = format!("{:#}", Config::parse("[server]\nlisten = [\"sctp:1.2.3.4:5060\"]").unwrap_err());
        assert!(err.contains("sctp"), "{err}");
        let err = format!("{:#}", Config::parse("[server]\nlistne = []").unwrap_err());
        assert!(err.contains("listne"), "{err}");
        let err = format!("{:#}", Config::parse("[limits]\nmemory_mb = 0").unwrap_err());
        assert!(err.contains("memory_mb"), "{err}");
        let err = format!("{:#}", Config::parse("[limits]\ncpu_ms = \"fast\"").unwrap_err());
        assert!(err.contains("cpu_ms"), "{err}");
    }
}
