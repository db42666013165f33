//! The registrar's `E_UL_*` events (OpenSIPS usrloc `ul_evi.c`), raised from
//! the location service's change listener, as each change is made.
//!
//! Mapping of [`LocationEvent`]s, with OpenSIPS's parameter names and order:
//! - `AorInserted` / `AorDeleted` → `E_UL_AOR_INSERT` / `E_UL_AOR_DELETE` {`domain`, `aor`};
//! - `ContactInserted` → `E_UL_CONTACT_INSERT`, `ContactDeleted` → `E_UL_CONTACT_DELETE`;
//! - `ContactUpdated` *and* `ContactRefreshed` → `E_UL_CONTACT_UPDATE`: in
//!   OpenSIPS every re-REGISTER of an existing binding is an update
//!   (`E_UL_CONTACT_REFRESH` is the RFC 8599 push-notification "please
//!   re-register" event, which needs PN support this registrar lacks; it is
//!   published so it can be subscribed to, but not raised here).
//!
//! Contact params: `domain` (the usrloc table, always `location`), `aor`,
//! `uri`, `received` (`sip:IP:PORT[;transport=tcp]` when the REGISTER came
//! from elsewhere than the Contact, else empty), `path` (empty: no Path
//! support), `qval` (q × 10, 0..=10, or -1 = unspecified, OpenSIPS
//! `Q_UNSPECIFIED`), `user_agent`, `socket` (empty: the binding does not
//! record the listener), `bflags` (0), `expires` (unix seconds), `callid`,
//! `cseq`, `attr` (empty), `latency` (0: no pinging), `shtag` (empty).

use super::{Event, EventBus, Params};
use crate::location::{Binding, Listener, LocationEvent};

/// An AOR got its first contact.
pub const E_UL_AOR_INSERT: &str = "E_UL_AOR_INSERT";
/// An AOR lost its last contact.
pub const E_UL_AOR_DELETE: &str = "E_UL_AOR_DELETE";
/// A new contact.
pub const E_UL_CONTACT_INSERT: &str = "E_UL_CONTACT_INSERT";
/// A contact was re-registered (changed or just refreshed).
pub const E_UL_CONTACT_UPDATE: &str = "E_UL_CONTACT_UPDATE";
/// A contact went away (unregistered, removed, expired).
pub const E_UL_CONTACT_DELETE: &str = "E_UL_CONTACT_DELETE";
/// RFC 8599 refresh request (published, not raised: no PN support).
pub const E_UL_CONTACT_REFRESH: &str = "E_UL_CONTACT_REFRESH";

/// The usrloc table name OpenSIPS puts in `domain`.
const DOMAIN: &str = "location";

/// The location listener that raises `E_UL_*` on `bus` for every change,
/// synchronously as the registrar makes it, so no change is lost under load:
/// a lost E_UL_CONTACT_INSERT would leave a call waiting for its callee's
/// device until it times out. Give it to
/// [`Location::open_with_listener`](crate::location::Location::open_with_listener).
pub fn listener(bus: EventBus) -> Listener {
    Box::new(move |change| raise(&bus, change))
}

/// Raises the event for one location change, if anyone listens.
pub fn raise(bus: &EventBus, change: &LocationEvent) {
    let (name, binding) = match change {
        LocationEvent::AorInserted(aor) => return raise_aor(bus, E_UL_AOR_INSERT, aor),
        LocationEvent::AorDeleted(aor) => return raise_aor(bus, E_UL_AOR_DELETE, aor),
        LocationEvent::ContactInserted(b) => (E_UL_CONTACT_INSERT, b),
        LocationEvent::ContactUpdated(b) | LocationEvent::ContactRefreshed(b) => (E_UL_CONTACT_UPDATE, b),
        LocationEvent::ContactDeleted(b) => (E_UL_CONTACT_DELETE, b),
    };
    if bus.has_subscribers(name) {
        bus.raise(Event::new(name, contact_params(binding)));
    }
}

fn raise_aor(bus: &EventBus, name: &str, aor: &str) {
    if bus.has_subscribers(name) {
        bus.raise(Event::new(name, Params::new().with("domain", DOMAIN).with("aor", aor)));
    }
}

/// The 15 contact parameters, in OpenSIPS order.
pub fn contact_params(b: &Binding) -> Params {
    let qval = b.q.map_or(-1, |q| (f64::from(q) * 10.0).round().clamp(0.0, 10.0) as i64);
    Params::new()
        .with("domain", DOMAIN)
        .with("aor", b.aor.as_str())
        .with("uri", b.contact.as_str())
        .with("received", b.received.as_ref().map(|r| r.sip_uri().to_string()).unwrap_or_default())
        .with("path", "")
        .with("qval", qval)
        .with("user_agent", b.user_agent.as_deref().unwrap_or(""))
        .with("socket", "")
        .with("bflags", 0)
        .with("expires", i64::try_from(b.expires_at).unwrap_or(i64::MAX))
        .with("callid", b.call_id.as_str())
        .with("cseq", i64::from(b.cseq))
        .with("attr", "")
        .with("latency", 0)
        .with("shtag", "")
}
