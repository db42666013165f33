//! Digest authentication of the current request against the host's
//! subscriber store (`[auth]` in sipbox.toml, `sipbox user add`), as
//! OpenSIPS's `www_authorize` / `proxy_authorize` and `www_challenge`.
//!
//! ```no_run
//! use sipbox_guest::{Result, auth, location};
//!
//! fn register() -> Result {
//!     match auth::authorize() {
//!         Ok(_) if auth::check_to() => {
//!             location::save()?;
//!             Ok(())
//!         }
//!         Ok(_) => sipbox_guest::tm::reply(403, "Forbidden"),
//!         Err(auth::AuthError::Throttled(_)) => sipbox_guest::tm::reply(403, "Forbidden"),
//!         Err(_) => auth::challenge(),
//!     }
//! }
//! ```

use crate::bindings::sipbox::route::auth as raw;
pub use crate::bindings::sipbox::route::auth::{AuthError, Identity};
use crate::{Error, Result};

/// Whether the operator requires authentication (`[auth] required`).
pub fn required() -> bool {
    raw::required()
}

/// Checks the request's credentials (`Authorization` for a REGISTER,
/// `Proxy-Authorization` otherwise): who it is, or why not ([`AuthError`]).
pub fn authorize() -> core::result::Result<Identity, AuthError> {
    raw::authorize()
}

/// Answers the request with a challenge: 401 for a REGISTER, 407 otherwise
/// (`stale=true` after [`AuthError::StaleNonce`]). Fails as [`tm::reply`](crate::tm::reply).
pub fn challenge() -> Result {
    raw::challenge().map_err(Error::from)
}

/// After a successful [`authorize`]: the authenticated user is the To URI's
/// user (a REGISTER for its own AOR).
pub fn check_to() -> bool {
    raw::check_to()
}

/// After a successful [`authorize`]: the authenticated user is the From
/// URI's user (a caller does not claim to be someone else).
pub fn check_from() -> bool {
    raw::check_from()
}
