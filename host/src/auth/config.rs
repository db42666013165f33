//! `[auth]` table of `sipbox.toml`: digest authentication.

use std::path::PathBuf;

use serde::Deserialize;

use super::digest::Algorithm;

/// Digest authentication settings (the `[auth]` table).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether routes must authenticate REGISTERs and requests from local
    /// users (the default route does, when this is on). Unset: off while
    /// every SIP listener is on loopback, and `sipbox run` refuses to start
    /// an open registrar on any other address until this says `true`, or
    /// `false` explicitly (then logged as a warning at start-up).
    ///
    /// Default: unset.
    pub required: Option<bool>,
    /// The realm of challenges and of the stored hashes (`sipbox user add`
    /// hashes passwords for it; changing it needs the passwords again).
    ///
    /// Default: `"sipbox"`.
    pub realm: String,
    /// Algorithms offered, one challenge header each in this order (RFC 8760:
    /// a UA answers the first it supports): `SHA-512-256`, `SHA-256`, `MD5`.
    /// MD5 first, because many phones and tools (SIPp 3.6, sipvicious) read
    /// only the first challenge and know no other; put `SHA-256` first when
    /// every UA speaks RFC 8760.
    ///
    /// Default: `["MD5", "SHA-256"]`.
    pub algorithms: Vec<Algorithm>,
    /// Seconds a nonce is good for; an older one with the right password is
    /// answered with a fresh challenge marked `stale=true`, which a UA
    /// retries silently. Between 10 and 3600.
    ///
    /// Default: `300`.
    pub nonce_lifetime_s: u32,
    /// The subscriber database file (redb; HA1 hashes only). A relative path
    /// is relative to the working directory; `""` keeps subscribers in memory
    /// (added over the MI, lost on restart).
    ///
    /// Default: `"sipbox-subscribers.redb"`.
    #[serde(deserialize_with = "crate::location::config::empty_path_is_none")]
    pub db_path: Option<PathBuf>,
    /// Failed authentications (wrong password, unknown user, replayed nonce)
    /// from one IP within `failure_window_s` after which that IP is refused
    /// (`403`, no challenge, no hashing) for `block_s`, and `E_AUTH_BLOCKED`
    /// is raised. `0` turns the throttle off.
    ///
    /// Default: `10`.
    pub max_failures: u32,
    /// Default: `60`.
    pub failure_window_s: u32,
    /// Default: `300`.
    pub block_s: u32,
    /// The key nonces are signed with. `""`: a random one each start (nonces
    /// then do not survive a restart: phones get `stale=true` and retry);
    /// set it, the same on every node, for nonces any node accepts.
    ///
    /// Default: `""`.
    pub secret: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: None,
            realm: "sipbox".into(),
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            nonce_lifetime_s: 300,
            db_path: Some(PathBuf::from("sipbox-subscribers.redb")),
            max_failures: 10,
            failure_window_s: 60,
            block_s: 300,
            secret: String::new(),
        }
    }
}

impl AuthConfig {
    /// # Errors
    /// An empty or unquotable realm, no algorithm, a nonce lifetime outside 10..=3600.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.realm.is_empty() && !self.realm.contains(['"', '\\', '\r', '\n', '\0']),
            "auth.realm must be non-empty and hold no quote, backslash or line break"
        );
        anyhow::ensure!(!self.algorithms.is_empty(), "auth.algorithms must name at least one algorithm");
        anyhow::ensure!(
            (10..=3600).contains(&self.nonce_lifetime_s),
            "auth.nonce_lifetime_s must lie within 10..=3600 (got {})",
            self.nonce_lifetime_s
        );
        anyhow::ensure!(
            self.max_failures == 0 || (self.failure_window_s > 0 && self.block_s > 0),
            "auth.failure_window_s and auth.block_s must be above 0 when auth.max_failures is set"
        );
        Ok(())
    }

    /// Whether authentication is on, given where SIP is served.
    ///
    /// # Errors
    /// `required` is unset and a listener is not on loopback: an open
    /// registrar and relay there is for the operator to choose, not a default.
    pub fn resolve_required(&self, non_loopback: &[String]) -> anyhow::Result<bool> {
        match (self.required, non_loopback.is_empty()) {
            (Some(required), _) => Ok(required),
            (None, true) => Ok(false),
            (None, false) => anyhow::bail!(
                "SIP listens on {} (not loopback) and [auth] required is unset: anyone reaching it could \
                 register as any user and take their calls. Set [auth] required = true and add users \
                 (`sipbox user add NAME --password PASS`), or required = false to serve it open",
                non_loopback.join(", ")
            ),
        }
    }
}
