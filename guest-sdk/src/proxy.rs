//! Building blocks of a proxy route, as the default route uses them, so
//! routes do not repeat them (OpenSIPS users know them from the default
//! script's `loose_route` / `lookup` sections).

use crate::{Method, Request, location, tm};

/// Routes an in-dialog request (one with a To tag): by its Route set (loose
/// routing), or, when a UA addresses the proxy itself without one (it ignored
/// or never got our Record-Route), to the callee's registered contacts.
/// Answers `404 Not Here` when neither works (never for an ACK, which has no
/// response).
pub fn route_in_dialog(req: &Request) {
    let method = req.method();
    if !tm::loose_route() && tm::is_myself(&req.ruri()) && location::lookup() == 0 {
        if method != Method::Ack {
            let _ = tm::reply(404, "Not Here");
        }
        return;
    }
    if let Err(e) = tm::relay() {
        crate::info!("in-dialog {method} not relayed: {e}");
        // A failed reply means the host answered already (483): fine.
        if method != Method::Ack {
            let _ = tm::reply(404, "Not Here");
        }
    }
}

/// Forwards the request to the Request-URI's registered contacts (parallel
/// forking), or answers `404 Not Found` when nobody is registered.
pub fn relay_to_contacts(req: &Request) {
    if location::lookup() == 0 {
        let _ = tm::reply(404, "Not Found");
    } else if let Err(e) = tm::relay() {
        // Fails only on an answered, cancelled or ended transaction, or with
        // Max-Forwards exhausted when the host answered 483 itself.
        crate::warn!("{} to {} not relayed: {e}", req.method(), req.ruri());
    }
}
