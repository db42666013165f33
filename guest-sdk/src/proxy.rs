//! Building blocks of a proxy route, as the default route uses them, so
//! routes do not repeat them (OpenSIPS users know them from the default
//! script's `loose_route` / `lookup` sections).
//!
//! Each returns the SDK's [`Result`]: a refusal that only means the request
//! is finished already ([`Error::is_finished`](crate::Error::is_finished): a
//! CANCEL came, the host answered 483) is logged and is `Ok`; anything else
//! (a bad target, a transport failure, a REGISTER that could not be saved)
//! is returned, for the handler to pass on with `?` (the host then answers
//! the request 500 if nobody did).

use crate::{Method, Request, Result, location, tm};

/// Routes an in-dialog request (one with a To tag): by its Route set (loose
/// routing), or, when a UA addresses the proxy itself without one (it ignored
/// or never got our Record-Route), to the callee's registered contacts.
/// Answers `404 Not Here` when neither works (never for an ACK, which has no
/// response), or when the relay fails for a reason other than the request
/// being finished.
pub fn route_in_dialog(req: &Request) -> Result {
    let method = req.method();
    if !tm::loose_route() && tm::is_myself(&req.ruri()) && location::lookup() == 0 {
        if method != Method::Ack {
            tm::reply(404, "Not Here")?;
        }
        return Ok(());
    }
    match tm::relay() {
        Ok(()) => Ok(()),
        Err(e) if e.is_finished() => {
            // Max-Forwards exhausted (the host answered 483), or cancelled.
            crate::info!("in-dialog {method} not relayed: {e}");
            Ok(())
        }
        // The dialog's next hop is unusable: the peer learns it with a 404.
        Err(e) if method == Method::Ack => {
            crate::info!("in-dialog ACK not relayed: {e}");
            Ok(())
        }
        Err(e) => {
            crate::info!("in-dialog {method} not relayed: {e}");
            tm::reply(404, "Not Here")
        }
    }
}

/// Forwards the request to the Request-URI's registered contacts (parallel
/// forking), or answers `404 Not Found` when nobody is registered.
pub fn relay_to_contacts(req: &Request) -> Result {
    if location::lookup() == 0 {
        return tm::reply(404, "Not Found");
    }
    match tm::relay() {
        Err(e) if e.is_finished() => {
            // Cancelled meanwhile, or Max-Forwards exhausted (483 sent).
            crate::info!("{} to {} not relayed: {e}", req.method(), req.ruri());
            Ok(())
        }
        other => other,
    }
}

/// Handles a REGISTER: saves its bindings (the host answers it). Fails when
/// the request is not a REGISTER or its response could not be sent.
pub fn save_registration() -> Result {
    location::save()?;
    Ok(())
}

/// The part every proxy route starts with, as the default route does it:
/// a REGISTER is saved (the host answers it), an in-dialog request is routed
/// with [`route_in_dialog`], a stray ACK or CANCEL is dropped, and an OPTIONS
/// ping of the proxy itself (no user part) is answered 200. Returns
/// `Ok(true)` when the request was handled, `Ok(false)` when it is a new
/// request for the route to decide.
pub fn handle_common(req: &Request) -> Result<bool> {
    let method = req.method();
    if method == Method::Register {
        save_registration()?;
        return Ok(true);
    }
    if req.is_in_dialog() {
        route_in_dialog(req)?;
        return Ok(true);
    }
    match method {
        // An ACK outside a dialog, or a CANCEL matching no transaction (the
        // host handles those that match): nothing to do.
        Method::Ack | Method::Cancel => Ok(true),
        Method::Options if req.ruri_user().is_none() => {
            tm::reply(200, "OK")?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
