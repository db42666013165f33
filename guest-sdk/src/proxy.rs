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

/// The part every proxy route starts with, as the default route does it:
/// a REGISTER is saved (the host answers it), an in-dialog request is routed
/// with [`route_in_dialog`], a stray ACK or CANCEL is dropped, and an OPTIONS
/// ping of the proxy itself (no user part) is answered 200. Returns true when
/// the request was handled, false when it is a new request for the route to
/// decide.
pub fn handle_common(req: &Request) -> bool {
    let method = req.method();
    if method == Method::Register {
        if let Err(e) = location::save() {
            crate::error!("REGISTER not saved: {e}");
            let _ = tm::reply(500, "Server Internal Error");
        }
        return true;
    }
    if req.is_in_dialog() {
        route_in_dialog(req);
        return true;
    }
    match method {
        // An ACK outside a dialog, or a CANCEL matching no transaction (the
        // host handles those that match): nothing to do.
        Method::Ack | Method::Cancel => true,
        Method::Options if req.ruri_user().is_none() => {
            let _ = tm::reply(200, "OK");
            true
        }
        _ => false,
    }
}
