//! `[location]` table of `sipbox.toml`: registrar limits and where bindings persist.

use std::path::PathBuf;

use serde::Deserialize;

/// RFC 3261 section 10.3 step 6 only allows `423 Interval Too Brief` for an
/// interval below one hour, so a larger minimum could never be enforced.
const RFC_MAX_MIN_EXPIRES: u32 = 3600;

/// Registrar and location-store settings (the `[location]` table of `sipbox.toml`).
///
/// Every field has a default, so an empty or partial table is valid; unknown
/// keys are rejected so a typo does not silently fall back to a default.
///
/// ```toml
/// [location]
/// db_path = "sipbox-location.redb"
/// min_expires = 60
/// max_expires = 3600
/// default_expires = 3600
/// use_domain = false
/// max_contacts = 10
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LocationConfig {
    /// File of the embedded database (redb) that keeps registrations across a
    /// restart. A relative path is relative to the working directory. `None`
    /// keeps bindings in memory only (lost on restart); TOML has no null, so
    /// there it is written `db_path = ""`.
    ///
    /// Default: `Some("sipbox-location.redb")`.
    #[serde(deserialize_with = "empty_path_is_none")]
    pub db_path: Option<PathBuf>,
    /// Shortest registration interval accepted, in seconds. A contact asking
    /// for less (but not 0, which means "remove") is refused with
    /// `423 Interval Too Brief` and a `Min-Expires` header (RFC 3261 10.3 step 6).
    /// Must not exceed `max_expires`, nor 3600 (the RFC allows 423 only below one hour).
    ///
    /// Default: `60`.
    pub min_expires: u32,
    /// Longest registration interval granted, in seconds. A longer request is
    /// shortened to this value (the 200 OK tells the UA what it got).
    ///
    /// Default: `3600`.
    pub max_expires: u32,
    /// Interval used when a contact has neither an `;expires=` parameter nor
    /// the request an `Expires` header, in seconds. Must lie within
    /// `min_expires..=max_expires`.
    ///
    /// Default: `3600`.
    pub default_expires: u32,
    /// How the address-of-record is keyed. `false`: by the user part of the
    /// To URI only (`alice`), so one user space is shared by every domain.
    /// `true`: by `user@host` (`alice@example.com`, host lowercased, port
    /// dropped), for multi-domain deployments. The user part is compared
    /// case-sensitively either way, as RFC 3261 19.1.4 requires.
    ///
    /// Default: `false`.
    pub use_domain: bool,
    /// Most bindings one address-of-record may hold; a REGISTER that would add
    /// more is refused with `503 Too Many Registered Contacts` (OpenSIPS's
    /// answer). Refreshing or removing existing bindings is always allowed.
    /// Bounded by default: every binding is one more INVITE a call to the
    /// AOR sends, so an unbounded AOR lets whoever can register for it turn
    /// one call into a flood at the contacts. `0` means unlimited.
    ///
    /// Default: `10`.
    pub max_contacts: u32,
}

/// `db_path = ""` selects memory-only mode (TOML cannot say `None`).
pub(crate) fn empty_path_is_none<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::deserialize(de)?;
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

impl Default for LocationConfig {
    fn default() -> Self {
        LocationConfig {
            db_path: Some(PathBuf::from("sipbox-location.redb")),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            use_domain: false,
            max_contacts: 10,
        }
    }
}

impl LocationConfig {
    /// Checks that the limits are consistent with each other.
    ///
    /// # Errors
    /// When `min_expires > max_expires`, `min_expires > 3600`, `max_expires == 0`,
    /// or `default_expires` lies outside `min_expires..=max_expires`.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_expires == 0 {
            anyhow::bail!("location.max_expires must be greater than 0");
        }
        if self.min_expires > self.max_expires {
            anyhow::bail!(
                "location.min_expires ({}) exceeds location.max_expires ({})",
                self.min_expires,
                self.max_expires
            );
        }
        if self.min_expires > RFC_MAX_MIN_EXPIRES {
            anyhow::bail!(
                "location.min_expires ({}) exceeds {RFC_MAX_MIN_EXPIRES}: RFC 3261 10.3 allows 423 only below one hour",
                self.min_expires
            );
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            anyhow::bail!(
                "location.default_expires ({}) must lie within min_expires..=max_expires ({}..={})",
                self.default_expires,
                self.min_expires,
                self.max_expires
            );
        }
        Ok(())
    }
}
