//! Where event subscribers may point: the destination policy of `[events]`
//! (`allow_destinations`, `deny_destinations`, `unix_socket_dirs`,
//! `flatstore_dirs`), which every transport consults through its
//! [`SinkContext`](super::SinkContext).
//!
//! Why: `event_subscribe` is a remote-controlled "send data there" (or
//! "append lines to that file"). Without a policy an MI caller could aim
//! events at a cloud metadata service (`http://169.254.169.254/...`), a
//! systemd notify socket, or append lines to `~/.ssh/authorized_keys`.
//!
//! - IP destinations: refused when the address is in `deny_destinations`
//!   (default: link-local 169.254.0.0/16 and fe80::/10, and the IPv6 EC2
//!   metadata address fd00:ec2::254), or when `allow_destinations` is not
//!   empty and the address is in none of its networks. IPv4-mapped IPv6
//!   addresses (`::ffff:a.b.c.d`) are checked as the IPv4 address. IP literals
//!   are checked when subscribing; host names after every resolution, at
//!   delivery (so a name that later resolves to a refused address — DNS
//!   rebinding — is refused then, and the delivery counted as failed and in
//!   `events_delivery_refused`).
//! - `unix:` sockets and `flatstore:` files: only under one of the configured
//!   directories (default: none, so both are refused until configured).
//!   Paths must be absolute, without `..`; the parent directory is
//!   canonicalised (symlinks resolved) before the comparison, and a final
//!   component that is a symlink is refused.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

use super::EventsConfig;

/// The default `deny_destinations`: link-local (where the AWS, GCP and Azure
/// metadata services answer) and the EC2 IPv6 metadata address.
pub const DEFAULT_DENY: &[&str] = &["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

/// The parsed policy. Built from [`EventsConfig`]; a config that does not
/// parse gives a policy that refuses everything (fail closed) with the reason.
#[derive(Debug, Default)]
pub struct Destinations {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    unix_dirs: Vec<PathBuf>,
    flatstore_dirs: Vec<PathBuf>,
    /// Set when the config was invalid: everything is refused with this.
    broken: Option<String>,
    /// Deliveries refused because a name resolved to a refused address.
    refused_deliveries: AtomicU64,
}

fn parse_dirs(key: &str, dirs: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    dirs.iter()
        .map(|d| {
            let p = PathBuf::from(d);
            anyhow::ensure!(p.is_absolute(), "events.{key}: {d:?} must be an absolute directory");
            anyhow::ensure!(
                !p.components().any(|c| c == Component::ParentDir),
                "events.{key}: {d:?} must not contain '..'"
            );
            Ok(p)
        })
        .collect()
}

impl Destinations {
    /// The policy of `cfg`.
    ///
    /// # Errors
    /// A CIDR that does not parse, a relative directory.
    pub fn from_config(cfg: &EventsConfig) -> anyhow::Result<Destinations> {
        Ok(Destinations {
            allow: crate::config::parse_nets("events.allow_destinations", &cfg.allow_destinations)?,
            deny: crate::config::parse_nets("events.deny_destinations", &cfg.deny_destinations)?,
            unix_dirs: parse_dirs("unix_socket_dirs", &cfg.unix_socket_dirs)?,
            flatstore_dirs: parse_dirs("flatstore_dirs", &cfg.flatstore_dirs)?,
            broken: None,
            refused_deliveries: AtomicU64::new(0),
        })
    }

    /// The policy of `cfg`, or one refusing everything when `cfg` is invalid.
    pub fn from_config_or_refuse_all(cfg: &EventsConfig) -> Destinations {
        Destinations::from_config(cfg).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "invalid [events] destination policy; refusing every destination");
            Destinations { broken: Some(e.to_string()), ..Destinations::default() }
        })
    }

    /// Whether events may be sent to `ip`. The error names the address and the setting.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        // An IPv4-mapped IPv6 address is checked as the IPv4 it is.
        let ip = ip.to_canonical();
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Err(format!("{ip} is in events.deny_destinations ({net})"));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(format!("{ip} is not in events.allow_destinations"));
        }
        Ok(())
    }

    /// As [`check_ip`](Self::check_ip) for an address a name resolved to at
    /// delivery time; a refusal is counted (`events_delivery_refused`).
    pub fn check_resolved(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        self.check_ip(ip).map_err(|e| {
            self.refused_deliveries.fetch_add(1, Ordering::Relaxed);
            format!("{host} resolved to a refused address: {e}")
        })
    }

    /// Deliveries refused after resolution so far.
    pub fn refused_deliveries(&self) -> u64 {
        self.refused_deliveries.load(Ordering::Relaxed)
    }

    /// Whether a `unix:` socket may be written to; the canonical path.
    pub fn check_unix(&self, path: &Path) -> Result<PathBuf, String> {
        self.check_under(path, &self.unix_dirs, "unix_socket_dirs", "unix:")
    }

    /// Whether a `flatstore:` file may be written; the canonical path.
    pub fn check_flatstore(&self, path: &Path) -> Result<PathBuf, String> {
        self.check_under(path, &self.flatstore_dirs, "flatstore_dirs", "flatstore:")
    }

    /// `path` made canonical (parent resolved), if it lies under one of `dirs`
    /// (canonicalised too) and is not itself a symlink.
    fn check_under(&self, path: &Path, dirs: &[PathBuf], key: &str, scheme: &str) -> Result<PathBuf, String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        if dirs.is_empty() {
            return Err(format!("{scheme} destinations are disabled: no directory in events.{key}"));
        }
        if !path.is_absolute() {
            return Err(format!("{} must be an absolute path", path.display()));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!("{} must not contain '..'", path.display()));
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(format!("{} names no file", path.display()));
        };
        let parent = std::fs::canonicalize(parent).map_err(|e| format!("no directory {}: {e}", parent.display()))?;
        let allowed = dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).any(|d| parent.starts_with(&d));
        if !allowed {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(format!("{} is not under events.{key} ({})", path.display(), list.join(", ")));
        }
        let full = parent.join(name);
        if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!("{} is a symbolic link", path.display()));
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> Destinations {
        let cfg = EventsConfig {
            allow_destinations: allow.iter().map(|s| s.to_string()).collect(),
            deny_destinations: deny.iter().map(|s| s.to_string()).collect(),
            ..EventsConfig::default()
        };
        Destinations::from_config(&cfg).expect("policy")
    }

    #[test]
    fn default_denies_link_local_and_metadata() {
        let p = Destinations::from_config(&EventsConfig::default()).expect("defaults");
        for ip in ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            let e = p.check_ip(ip.parse().unwrap()).expect_err(ip);
            assert!(e.contains("deny_destinations"), "{ip}: {e}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "::1", "fd00:ec2::253", "169.253.255.255"] {
            p.check_ip(ip.parse().unwrap()).unwrap_or_else(|e| panic!("{ip}: {e}"));
        }
    }

    #[test]
    fn allow_list_restricts_and_deny_wins() {
        let p = policy(&["127.0.0.0/8", "::1"], &["127.0.0.9"]);
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_ip("::1".parse().unwrap()).is_ok());
        assert!(p.check_ip("10.0.0.1".parse().unwrap()).expect_err("10/8").contains("allow_destinations"));
        assert!(p.check_ip("127.0.0.9".parse().unwrap()).expect_err("denied").contains("deny_destinations"));
        let e = p.check_resolved("evil.example", "10.0.0.1".parse().unwrap()).expect_err("resolved");
        assert!(e.contains("evil.example resolved to"), "{e}");
        assert_eq!(p.refused_deliveries(), 1);
    }

    #[test]
    fn bad_config_is_an_error_and_fails_closed() {
        let cfg = EventsConfig { deny_destinations: vec!["10.0.0.0/33".into()], ..EventsConfig::default() };
        assert!(Destinations::from_config(&cfg).expect_err("bad cidr").to_string().contains("deny_destinations"));
        let p = Destinations::from_config_or_refuse_all(&cfg);
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_err());
        let rel = EventsConfig { flatstore_dirs: vec!["logs".into()], ..EventsConfig::default() };
        assert!(Destinations::from_config(&rel).expect_err("relative").to_string().contains("absolute"));
    }

    #[test]
    fn directories_are_canonicalised() {
        let root = tempfile::tempdir().expect("tmp");
        let allowed = root.path().join("ok");
        let other = root.path().join("other");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, allowed.join("escape")).unwrap();
        std::os::unix::fs::symlink(other.join("f"), allowed.join("link.log")).unwrap();
        let cfg = EventsConfig { flatstore_dirs: vec![allowed.display().to_string()], ..EventsConfig::default() };
        let p = Destinations::from_config(&cfg).unwrap();
        assert!(p.check_flatstore(&allowed.join("a.log")).is_ok());
        let e = |path: PathBuf| p.check_flatstore(&path).expect_err(&path.display().to_string());
        assert!(e(allowed.join("escape/a.log")).contains("not under events.flatstore_dirs"));
        assert!(e(allowed.join("../other/a.log")).contains(".."));
        assert!(e(allowed.join("link.log")).contains("symbolic link"));
        assert!(e(PathBuf::from("rel.log")).contains("absolute"));
        assert!(e(other.join("a.log")).contains("not under"));
        let none = Destinations::from_config(&EventsConfig::default()).unwrap();
        assert!(none.check_flatstore(&allowed.join("a.log")).expect_err("off").contains("events.flatstore_dirs"));
        assert!(none.check_unix(&allowed.join("s.sock")).expect_err("off").contains("events.unix_socket_dirs"));
    }
}
