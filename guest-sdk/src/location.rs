//! The location service: the registrar's bindings of addresses-of-record.

use crate::bindings::sipbox::route::location as raw;
pub use crate::error::LocationError;
use crate::{Contact, Error, Result};

/// Handles the current REGISTER (RFC 3261 section 10.3): adds, refreshes or
/// removes its Contact bindings for the To AOR and answers it (200 with the
/// current bindings, or 400/423 with the reason). Returns the status sent.
/// Fails with [`LocationError::NotRegister`] if the request is not a
/// REGISTER.
pub fn save() -> Result<u16> {
    raw::save().map_err(Error::from)
}

/// Looks up the Request-URI's AOR. When contacts are found the Request-URI
/// becomes the highest-q contact and the others are added as branches, so a
/// following [`relay`](crate::tm::relay) forks to all of them. Returns the
/// number of contacts found (0: not registered).
pub fn lookup() -> u32 {
    raw::lookup()
}

/// The contacts registered for an AOR (`"sip:alice@example.com"`), highest q
/// first.
pub fn lookup_aor(aor: &str) -> Vec<Contact> {
    raw::lookup_aor(aor)
}

/// Removes one contact of an AOR, or with `None` every contact. Returns the
/// number of bindings removed.
pub fn unregister(aor: &str, contact_uri: Option<&str>) -> u32 {
    raw::unregister(aor, contact_uri)
}
