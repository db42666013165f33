//! Digest authentication (RFC 3261 section 22, RFC 8760, RFC 7616 semantics)
//! as OpenSIPS's auth and auth_db modules provide it: [`Auth::authorize`]
//! checks a request's credentials against the subscriber store,
//! [`Auth::challenge`] builds the 401/407 that asks for them. Routes reach
//! both through the WIT `auth` interface (`runtime/host/auth.rs`); the
//! operator manages subscribers with `sipbox user` and the MI.
//!
//! What an attacker learns is bounded on purpose: an unknown user and a wrong
//! password get the same answer after the same work (a response is computed
//! against a secret-derived HA1 for users that do not exist), so extensions
//! cannot be enumerated; nonces are stateless HMACs ([`nonce`]), so
//! challenging a scanner costs no memory; `nc` replay is refused; and a
//! source that fails [`AuthConfig::max_failures`] times is refused outright
//! for a while (the `throttle`), with `E_AUTH_BLOCKED` raised.

pub mod cli;
pub mod config;
pub mod digest;
mod nonce;
pub mod store;
mod throttle;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use subtle::ConstantTimeEq;

pub use config::AuthConfig;
pub use digest::Algorithm;
pub use store::{RedbSubscribers, Subscriber, SubscriberStore};

use crate::location::clock::Clock;
use crate::sip::{Message, Method};
use digest::Credentials;
use nonce::{CountCheck, NonceCheck, NonceCounts, Nonces};
use throttle::Throttle;

/// Who a request authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub realm: String,
}

/// Why a request is not authorized (the WIT `auth-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials for our realm (or a nonce we did not mint): challenge.
    NoCredentials,
    /// Right credentials on an expired nonce: challenge with `stale=true`.
    Stale,
    /// Unknown user or wrong password (one case: no enumeration).
    Invalid,
    /// A nonce count used before.
    Replayed,
    /// Credentials that do not parse or do not fit the request (why).
    Malformed(String),
    /// The source failed too often; seconds until it may try again.
    Throttled(u32),
}

/// A challenge to send: status, reason and the `*-Authenticate` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(String, String)>,
}

/// Counters for `get_statistics auth:`.
#[derive(Default)]
pub struct AuthStats {
    pub authorized: AtomicU64,
    pub challenged: AtomicU64,
    pub failed: AtomicU64,
    pub stale: AtomicU64,
    pub replayed: AtomicU64,
    pub throttled: AtomicU64,
    pub blocked_sources: AtomicU64,
}

/// Called once when a source gets blocked: (ip, failures, seconds blocked).
pub type BlockListener = Box<dyn Fn(IpAddr, u32, u32) + Send + Sync>;

/// The authentication service. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AuthConfig,
    required: bool,
    store: Arc<dyn SubscriberStore>,
    nonces: Nonces,
    counts: NonceCounts,
    throttle: Throttle,
    clock: Clock,
    stats: AuthStats,
    on_block: Option<BlockListener>,
    /// Keys the stand-in HA1 of users that do not exist.
    decoy_key: Vec<u8>,
}

impl Auth {
    /// Opens the subscriber store of `cfg` (`db_path`, or memory).
    /// Blocking (reads the file): at start-up.
    ///
    /// # Errors
    /// An invalid config, or a database that cannot be opened.
    pub fn open(cfg: &AuthConfig, required: bool) -> anyhow::Result<Auth> {
        let store: Arc<dyn SubscriberStore> = match &cfg.db_path {
            Some(path) => Arc::new(RedbSubscribers::open(path)?),
            None => Arc::new(RedbSubscribers::in_memory()),
        };
        Auth::with_store(cfg, required, store)
    }

    /// The defaults with an empty in-memory store: for tools and tests that
    /// run routes without a server (`check-route`, benchmarks).
    pub fn in_memory(required: bool) -> Auth {
        let cfg = AuthConfig { db_path: None, ..AuthConfig::default() };
        Auth::with_store(&cfg, required, Arc::new(RedbSubscribers::in_memory()))
            .unwrap_or_else(|_| unreachable!("the default [auth] is valid"))
    }

    /// As [`open`](Self::open) over a given store.
    ///
    /// # Errors
    /// An invalid config.
    pub fn with_store(cfg: &AuthConfig, required: bool, store: Arc<dyn SubscriberStore>) -> anyhow::Result<Auth> {
        cfg.validate()?;
        let secret = if cfg.secret.is_empty() {
            let mut key = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut key);
            key.to_vec()
        } else {
            cfg.secret.as_bytes().to_vec()
        };
        let mut decoy_key = secret.clone();
        decoy_key.extend_from_slice(b"/decoy-ha1");
        let lifetime = u64::from(cfg.nonce_lifetime_s);
        Ok(Auth {
            inner: Arc::new(Inner {
                required,
                store,
                nonces: Nonces::new(secret, lifetime),
                counts: NonceCounts::new(lifetime, nonce::MAX_TRACKED_NONCES),
                throttle: Throttle::new(cfg),
                clock: Clock::new(),
                stats: AuthStats::default(),
                on_block: None,
                decoy_key,
                cfg: cfg.clone(),
            }),
        })
    }

    /// Tells `listener` of every source the throttle blocks (the server
    /// raises `E_AUTH_BLOCKED` with it). Call before cloning.
    pub fn with_block_listener(mut self, listener: BlockListener) -> Auth {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.on_block = Some(listener);
        }
        self
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.cfg
    }

    /// `[auth] required` as resolved at start-up.
    pub fn required(&self) -> bool {
        self.inner.required
    }

    pub fn store(&self) -> &dyn SubscriberStore {
        &*self.inner.store
    }

    pub fn stats(&self) -> &AuthStats {
        &self.inner.stats
    }

    /// The header a request carries its credentials in, and the one its
    /// challenge goes in: `Authorization`/`WWW-Authenticate` (401) for a
    /// REGISTER, which the registrar answers as a UAS, the `Proxy-` pair
    /// (407) for everything a proxy forwards (RFC 3261 22.3).
    fn is_registrar(req: &Message) -> bool {
        req.method() == Some(&Method::Register)
    }

    /// Checks `req`'s credentials (from `src`).
    ///
    /// # Errors
    /// Why the request is not authorized ([`AuthFailure`]).
    pub fn authorize(&self, req: &Message, src: IpAddr) -> Result<Identity, AuthFailure> {
        let inner = &*self.inner;
        let now = inner.clock.now_unix();
        if let Some(left) = inner.throttle.blocked_for(src, now) {
            inner.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(AuthFailure::Throttled(left));
        }
        let header = if Auth::is_registrar(req) { "Authorization" } else { "Proxy-Authorization" };
        let realm = inner.cfg.realm.as_str();
        // A request may carry credentials for several realms (proxies on
        // the way each add theirs): ours are the ones naming our realm.
        let mut ours = None;
        for value in req.values_by_name(header) {
            match Credentials::parse(value) {
                Ok(c) if c.realm == realm => {
                    ours = Some(c);
                    break;
                }
                Ok(_) => {}
                Err(why) => return Err(self.fail(AuthFailure::Malformed(why), src, now)),
            }
        }
        let Some(c) = ours else { return Err(AuthFailure::NoCredentials) };
        let algorithm = match c.algorithm {
            None => Algorithm::Md5,
            Some(token) => match token.parse::<Algorithm>() {
                Ok(a) if inner.cfg.algorithms.contains(&a) => a,
                _ => return Err(AuthFailure::Malformed(format!("algorithm {token} was not offered"))),
            },
        };
        if !inner.cfg.algorithms.contains(&algorithm) {
            return Err(AuthFailure::Malformed("algorithm MD5 (implied) was not offered".into()));
        }
        if !c.qop.eq_ignore_ascii_case("auth") || c.cnonce.is_empty() {
            return Err(AuthFailure::Malformed("credentials need qop=auth with a cnonce".into()));
        }
        let Some(nc) = (c.nc.len() == 8).then(|| u32::from_str_radix(c.nc, 16).ok()).flatten() else {
            return Err(AuthFailure::Malformed(format!("nc {:?} is not 8 hex digits", c.nc)));
        };
        if Some(c.uri) != req.request_uri() {
            return Err(AuthFailure::Malformed("the digest uri is not the Request-URI".into()));
        }
        let nonce = inner.nonces.check(c.nonce, realm, now);
        if nonce == NonceCheck::Forged {
            // Not ours (or from before a restart with a random secret): a
            // fresh challenge, as for no credentials at all.
            return Err(AuthFailure::NoCredentials);
        }
        // The same work for every user: the stand-in HA1 is computed always,
        // the stored one used when there is one.
        let decoy = algorithm.hex_hash(&[&inner.decoy_key[..], c.username.as_bytes()].concat());
        let stored = inner.store.get(realm, c.username);
        let ha1 = stored.as_ref().and_then(|s| s.ha1(algorithm)).unwrap_or(&decoy);
        let method = req.method().map_or("", Method::as_str);
        let expected = algorithm.response(ha1, method, &c);
        let matches = bool::from(expected.as_bytes().ct_eq(c.response.to_ascii_lowercase().as_bytes()));
        if !matches || stored.is_none() {
            return Err(self.fail(AuthFailure::Invalid, src, now));
        }
        if nonce == NonceCheck::Stale {
            inner.stats.stale.fetch_add(1, Ordering::Relaxed);
            return Err(AuthFailure::Stale);
        }
        let minted = Nonces::minted_at(c.nonce).unwrap_or(now);
        match inner.counts.use_count(c.nonce, nc, minted, now) {
            CountCheck::Accepted => {}
            CountCheck::Replayed => return Err(self.fail(AuthFailure::Replayed, src, now)),
            // Cannot tell a replay: make the UA take a fresh nonce.
            CountCheck::Full => return Err(AuthFailure::Stale),
        }
        inner.stats.authorized.fetch_add(1, Ordering::Relaxed);
        Ok(Identity { user: c.username.to_owned(), realm: realm.to_owned() })
    }

    /// Counts a failure against `src`, blocking it when it failed too often.
    fn fail(&self, failure: AuthFailure, src: IpAddr, now: u64) -> AuthFailure {
        let inner = &*self.inner;
        match failure {
            AuthFailure::Replayed => inner.stats.replayed.fetch_add(1, Ordering::Relaxed),
            _ => inner.stats.failed.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(failures) = inner.throttle.record_failure(src, now) {
            inner.stats.blocked_sources.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%src, failures, block_s = inner.cfg.block_s, "authentication failures: source blocked");
            if let Some(listener) = &inner.on_block {
                listener(src, failures, inner.cfg.block_s);
            }
        }
        failure
    }

    /// The challenge for `req`: 401 with `WWW-Authenticate` for a REGISTER,
    /// 407 with `Proxy-Authenticate` otherwise, one header per configured
    /// algorithm in preference order (RFC 8760 section 2.4), each with its
    /// own fresh nonce.
    pub fn challenge(&self, req: &Message, stale: bool) -> Challenge {
        let inner = &*self.inner;
        inner.stats.challenged.fetch_add(1, Ordering::Relaxed);
        let (code, reason, name) = if Auth::is_registrar(req) {
            (401, "Unauthorized", "WWW-Authenticate")
        } else {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        };
        let now = inner.clock.now_unix();
        let realm = digest::quote(&inner.cfg.realm);
        let headers = inner
            .cfg
            .algorithms
            .iter()
            .map(|a| {
                let nonce = inner.nonces.mint(&inner.cfg.realm, now);
                let stale = if stale { ", stale=true" } else { "" };
                (
                    name.to_owned(),
                    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={a}, qop=\"auth\"{stale}"),
                )
            })
            .collect();
        Challenge { code, reason, headers }
    }
}

/// `check_to` / `check_from`: the identity's user is the user part of the
/// URI (OpenSIPS compares the username with the To/From user).
pub fn identity_matches(identity: &Identity, uri: Option<crate::sip::Uri<'_>>) -> bool {
    uri.and_then(|u| u.user).is_some_and(|user| user == identity.user)
}
