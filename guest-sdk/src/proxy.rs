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

use crate::auth::{self, AuthError};
use crate::{Method, Request, Result, location, tm};

/// Routes an in-dialog request (one with a To tag): by its Route set when it
/// starts at this proxy (our Record-Route: loose routing), or, when a UA
/// addresses a local user through the proxy without one (it ignored or never
/// got our Record-Route), to that user's registered contacts. Anything else
/// (a To tag with a foreign Request-URI or a Route naming another host) is
/// no dialog of ours: answered `404 Not Here`, as Kamailio's default
/// script does, and never relayed (that would make the proxy an open relay).
/// Also `404` when the relay fails for a reason other than the request
/// being finished. An ACK gets no response.
pub fn route_in_dialog(req: &Request) -> Result {
    let method = req.method();
    let routable = tm::loose_route() || (tm::is_myself(&req.ruri()) && location::lookup() > 0);
    if !routable {
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

/// Handles a REGISTER: with `[auth] required`, authenticates it first (a
/// user registers only their own AOR: [`authenticate`] with
/// [`auth::check_to`]), then saves its bindings (the host answers it). Fails
/// when the request is not a REGISTER or its response could not be sent.
pub fn save_registration() -> Result {
    if auth::required() && !authenticate(auth::check_to)? {
        return Ok(());
    }
    location::save()?;
    Ok(())
}

/// Authenticates the request, answering it when that fails: a challenge
/// (401/407) when it carried none or stale, wrong or replayed credentials,
/// `403 Forbidden` when the identity does not pass `identity` (another
/// user's AOR or From) or the source is throttled, `400` for credentials
/// that do not parse. Returns whether the request is authorized (if not, it
/// has been answered).
pub fn authenticate(identity: fn() -> bool) -> Result<bool> {
    match auth::authorize() {
        Ok(_) if identity() => Ok(true),
        Ok(id) => {
            crate::info!("{} authenticated but not for this identity", id.user);
            tm::reply(403, "Forbidden").map(|()| false)
        }
        Err(AuthError::Throttled(_)) => tm::reply(403, "Forbidden").map(|()| false),
        Err(AuthError::Malformed(why)) => {
            crate::info!("malformed credentials: {why}");
            tm::reply(400, "Bad Credentials").map(|()| false)
        }
        Err(_) => auth::challenge().map(|()| false),
    }
}

/// For an initial request: a Route header that is not this proxy's own (a
/// phone's outbound-proxy Route is, and is consumed) would send the request
/// wherever its sender chose. Answers such a request `403` and returns true;
/// false when it has no such Route. A route that must accept preloaded
/// routes (RFC 3608 Service-Route) does not call this.
pub fn refuse_preloaded_route(req: &Request) -> Result<bool> {
    let routes = req.headers("Route").len();
    if routes == 0 {
        return Ok(false);
    }
    let ours = usize::from(tm::loose_route());
    if routes == ours {
        return Ok(false);
    }
    tm::reply(403, "Preloaded Route Not Allowed")?;
    Ok(true)
}

/// A request claiming to come from a user of this proxy: its From URI names
/// this proxy's host (OpenSIPS's `is_from_local`, `from_uri==myself`). With
/// `[auth] required` such a request must authenticate; one from another
/// domain need not, and is only ever routed to local users.
pub fn is_from_local(req: &Request) -> bool {
    tm::is_myself(&req.from_uri())
}

/// The part every proxy route starts with, as the default route does it:
/// a REGISTER is saved (the host answers it; authenticated first with
/// `[auth] required`), an in-dialog request is routed with
/// [`route_in_dialog`], a stray ACK or CANCEL is dropped, an initial request
/// with a preloaded Route to elsewhere is refused
/// ([`refuse_preloaded_route`]), one from a local user is authenticated
/// with `[auth] required` ([`authenticate`] with [`auth::check_from`]), and
/// an OPTIONS ping of the proxy itself (no user part) is answered 200.
/// Returns `Ok(true)` when the request was handled, `Ok(false)` when it is
/// a new request for the route to decide.
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
        Method::Ack | Method::Cancel => return Ok(true),
        _ => {}
    }
    if refuse_preloaded_route(req)? {
        return Ok(true);
    }
    if method == Method::Options && req.ruri_user().is_none() {
        tm::reply(200, "OK")?;
        return Ok(true);
    }
    if auth::required() && is_from_local(req) && !authenticate(auth::check_from)? {
        return Ok(true);
    }
    Ok(false)
}
