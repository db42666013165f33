//! Push notifications with event-based routing, notify style (OpenSIPS's
//! `event_routing` README, "Push Notification script").
//!
//! An INVITE for a user keeps its transaction open for branches injected
//! later, subscribes to `E_UL_CONTACT_INSERT` for the callee's AOR, sends a
//! push to the provider (`config push_url`) and rings the contacts already
//! registered (a desk phone). When the woken-up device registers, the
//! registrar's event runs [`on_notify`](Route::on_notify) in a fresh instance,
//! which injects the new contact into the ringing call. When no device
//! registered before the subscription expires (`push_timeout`), the host ends
//! the wait for new branches; once the branches already ringing have ended,
//! the caller gets `480` (at the INVITE timeout at the latest).
//!
//! Settings (`[routes.vars]`): `push_url` (where the push is POSTed, JSON
//! `{"aor":..,"call_id":..}`), `push_timeout` (seconds the subscription
//! lives, default 30), `push_http_timeout_ms` (default 2000).

use sipbox_guest::tm::{BranchSource, InjectFlags};
use sipbox_guest::{Event, Method, Reply, Request, Result, Route, config, events, location, proxy, rest, tm};

/// The registrar's event for a contact that was not registered before.
const CONTACT_INSERT: &str = "E_UL_CONTACT_INSERT";
/// The notify route injecting the new contact.
const PUSH_ROUTE: &str = "push";
/// The failure route turning the INVITE timeout into 480.
const NOANSWER_ROUTE: &str = "noanswer";

struct PushNotification;

impl Route for PushNotification {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        let method = req.method();
        tm::record_route();
        match req.ruri_user() {
            Some(user) if method == Method::Invite => call_with_push(req, &user),
            _ => proxy::relay_to_contacts(req),
        }
    }

    fn on_notify(route: &str, event: &Event, tid: tm::Tid) -> Result {
        if route != PUSH_ROUTE {
            return Ok(());
        }
        let contact = event.param_str("uri").unwrap_or_default();
        // The contact the event announces, sent to its `received` address
        // when it registered from behind a NAT.
        match tm::inject_branches(tid, &BranchSource::EventContact, InjectFlags::empty()) {
            Ok(0) => sipbox_guest::debug!("{contact} already rings in transaction {tid}"),
            Ok(n) => sipbox_guest::info!("injected {contact} into transaction {tid} ({n} branch)"),
            // The call was answered, cancelled or timed out meanwhile: the
            // subscription outlives it until its own timeout.
            Err(e) if e.is_finished() => {
                sipbox_guest::debug!("{contact} not injected into transaction {tid}: {e}")
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn on_failure(route: &str, _req: &Request, reply: &Reply) -> Result {
        // 408: no device registered before the subscription expired (or
        // nothing answered before the INVITE timeout).
        if route == NOANSWER_ROUTE && reply.status() == 408 {
            tm::reply(480, "Temporarily Unavailable")?;
        }
        Ok(())
    }
}

/// The OpenSIPS `route[route_to_user]` of the push example.
fn call_with_push(req: &Request, user: &str) -> Result {
    let tid = tm::newtran();
    // Armed before any branch exists, so injected branches carry it too
    // (OpenSIPS #1096).
    tm::on_failure(NOANSWER_ROUTE);

    // Subscribe before pushing: the device may register faster than the
    // push request returns. A failure (a bad push_timeout, too many
    // waiters) fails the call: the host answers 500.
    let timeout = config::get_or("push_timeout", 30)?;
    let filter = format!("aor={}", events::glob_escape(user));
    events::notify_on_event(CONTACT_INSERT, &[&filter], PUSH_ROUTE, timeout)?;
    let pushed = send_push(user, &req.call_id())?;

    // Ring what is registered already (a desk phone) meanwhile.
    let ringing = location::lookup();
    if ringing > 0 {
        match tm::relay() {
            Ok(()) => {}
            Err(e) if e.is_finished() => {
                // Cancelled already, or Max-Forwards exhausted (483 sent).
                sipbox_guest::warn!("INVITE to {} not relayed: {e}", req.ruri());
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    } else if !pushed {
        // Nothing rings and no device was woken: do not hold the caller.
        return tm::reply(480, "Temporarily Unavailable");
    }
    // Keep the transaction open for the contact the push brings, even if
    // the desk phone declines, until the subscription expires (the host then
    // stops the wait, as `tm::wait_no_more_branches` would).
    match tm::wait_for_new_branches(None) {
        Ok(()) => sipbox_guest::info!("call {} to {user} waits for new contacts (transaction {tid})", req.call_id()),
        // The desk phone answered or declined already, or the caller
        // cancelled: the call goes on (or ended) without new contacts.
        Err(e) if e.is_finished() => sipbox_guest::info!("transaction {tid} does not wait for new branches: {e}"),
        Err(e) => {
            sipbox_guest::warn!("transaction {tid} cannot wait for new branches: {e}");
            if ringing == 0 {
                tm::reply(480, "Temporarily Unavailable")?;
            }
        }
    }
    Ok(())
}

/// POSTs the push for `user`; true when the provider accepted it (2xx). A
/// push that fails is no error of the route: the call goes on without it
/// (the caller gets 480 when nothing else rings).
fn send_push(user: &str, call_id: &str) -> Result<bool> {
    let Some(url) = config::get::<String>("push_url")? else {
        sipbox_guest::warn!("no push_url configured: no push for {user}");
        return Ok(false);
    };
    let timeout_ms = config::get_or("push_http_timeout_ms", 2000)?;
    match rest::post_object(&url, &[("aor", user), ("call_id", call_id)], timeout_ms) {
        Ok(resp) if resp.is_success() => Ok(true),
        Ok(resp) => {
            sipbox_guest::warn!("push for {user} refused by {url}: HTTP {}", resp.status);
            Ok(false)
        }
        Err(e) => {
            sipbox_guest::warn!("push for {user} to {url} failed: {e}");
            Ok(false)
        }
    }
}

sipbox_guest::route!(PushNotification);
