//! `sipbox.toml`: the server's configuration. Every table has embedded
//! defaults (`Config::default()`, documented in the repository's
//! `sipbox.toml`), so `sipbox run` needs no file. Unknown keys are errors, so
//! a typo is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::events::EventsConfig;
use crate::location::LocationConfig;
use crate::mi::MiConfig;
use crate::pike::PikeConfig;
use crate::runtime::Limits;
use crate::transaction::Timers;
use crate::transport::ListenSpec;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub routes: RoutesConfig,
    pub location: LocationConfig,
    pub timers: Timers,
    pub limits: Limits,
    pub events: EventsConfig,
    pub mi: MiConfig,
    pub pike: PikeConfig,
}

/// `[server]`: sockets and logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// SIP listeners, "udp:IP:PORT" or "tcp:IP:PORT" (IPv6 as "[::1]").
    pub listen: Vec<String>,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()], log: "info".into() }
    }
}

/// `[routes]`: which route module runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// A `.wasm` component exporting the `sipbox:route` world; relative paths
    /// are relative to the config file. None = the embedded default route.
    pub module: Option<PathBuf>,
    /// Settings routes read with `config.get(name)` (e.g. a push URL).
    pub vars: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        if let (Some(module), Some(dir)) = (&config.routes.module, path.parent())
            && module.is_relative()
        {
            config.routes.module = Some(dir.join(module));
        }
        Ok(config)
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
        self.listen_specs()?;
        self.limits.validate()?;
        self.location.validate()?;
        self.mi.validate()?;
        self.pike.validate()?;
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
