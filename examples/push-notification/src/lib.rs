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

use sipbox_guest::events;
use sipbox_guest::tm::{BranchSource, InjectFlags};
use sipbox_guest::{Event, Method, Reply, Request, Route, config, location, proxy, rest, tm};

/// The registrar's event for a contact that was not registered before.
const CONTACT_INSERT: &str = "E_UL_CONTACT_INSERT";
/// The notify route injecting the new contact.
const PUSH_ROUTE: &str = "push";
/// The failure route turning the INVITE timeout into 480.
const NOANSWER_ROUTE: &str = "noanswer";

struct PushNotification;

impl Route for PushNotification {
    fn on_request(req: &Request) {
        if proxy::handle_common(req) {
            return;
        }
        let method = req.method();
        tm::record_route();
        match req.ruri_user() {
            Some(user) if method == Method::Invite => call_with_push(req, &user),
            _ => proxy::relay_to_contacts(req),
        }
    }

    fn on_notify(route: &str, event: &Event, tid: tm::Tid) {
        if route != PUSH_ROUTE {
            return;
        }
        let contact = event.param_str("uri").unwrap_or_default();
        // The contact the event announces, sent to its `received` address
        // when it registered from behind a NAT.
        match tm::inject_branches(tid, &BranchSource::EventContact, InjectFlags::empty()) {
            Ok(0) => sipbox_guest::debug!("{contact} already rings in transaction {tid}"),
            Ok(n) => sipbox_guest::info!("injected {contact} into transaction {tid} ({n} branch)"),
            // The call was answered, cancelled or timed out meanwhile: the
            // subscription outlives it until its own timeout.
            Err(e) => sipbox_guest::debug!("{contact} not injected into transaction {tid}: {e}"),
        }
    }

    fn on_failure(route: &str, _req: &Request, reply: &Reply) {
        // 408: no device registered before the subscription expired (or
        // nothing answered before the INVITE timeout).
        if route == NOANSWER_ROUTE && reply.status() == 408 {
            let _ = tm::reply(480, "Temporarily Unavailable");
        }
    }
}

/// The OpenSIPS `route[route_to_user]` of the push example.
fn call_with_push(req: &Request, user: &str) {
    let tid = tm::newtran();
    // Armed before any branch exists, so injected branches carry it too
    // (OpenSIPS #1096).
    tm::on_failure(NOANSWER_ROUTE);

    // Subscribe before pushing: the device may register faster than the
    // push request returns.
    let timeout = config_u32("push_timeout", 30);
    let filter = format!("aor={}", events::glob_escape(user));
    if let Err(e) = events::notify_on_event(CONTACT_INSERT, &[&filter], PUSH_ROUTE, timeout) {
        sipbox_guest::error!("cannot subscribe to {CONTACT_INSERT} for {user}: {e}");
        let _ = tm::reply(500, "Server Internal Error");
        return;
    }
    let pushed = send_push(user, &req.call_id());

    // Ring what is registered already (a desk phone) meanwhile.
    let ringing = location::lookup();
    if ringing > 0 {
        if let Err(e) = tm::relay() {
            // Answered already (483 by the host) or the request is dead.
            sipbox_guest::warn!("INVITE to {} not relayed: {e}", req.ruri());
            return;
        }
    } else if !pushed {
        // Nothing rings and no device was woken: do not hold the caller.
        let _ = tm::reply(480, "Temporarily Unavailable");
        return;
    }
    // Keep the transaction open for the contact the push brings, even if
    // the desk phone declines, until the subscription expires (the host then
    // stops the wait, as `tm::wait_no_more_branches` would).
    match tm::wait_for_new_branches(None) {
        Ok(()) => sipbox_guest::info!("call {} to {user} waits for new contacts (transaction {tid})", req.call_id()),
        Err(e) => {
            sipbox_guest::warn!("transaction {tid} cannot wait for new branches: {e}");
            if ringing == 0 {
                let _ = tm::reply(480, "Temporarily Unavailable");
            }
        }
    }
}

/// POSTs the push for `user`; true when the provider accepted it (2xx).
fn send_push(user: &str, call_id: &str) -> bool {
    let Some(url) = config::get("push_url") else {
        sipbox_guest::warn!("no push_url configured: no push for {user}");
        return false;
    };
    let body = format!("{{\"aor\":{},\"call_id\":{}}}", json_string(user), json_string(call_id));
    match rest::post_json(&url, &body, config_u32("push_http_timeout_ms", 2000)) {
        Ok(resp) if (200..300).contains(&resp.status) => true,
        Ok(resp) => {
            sipbox_guest::warn!("push for {user} refused by {url}: HTTP {}", resp.status);
            false
        }
        Err(e) => {
            sipbox_guest::warn!("push for {user} to {url} failed: {e}");
            false
        }
    }
}

/// A positive integer setting, or `default` when absent or malformed.
fn config_u32(name: &str, default: u32) -> u32 {
    config::get(name).and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

sipbox_guest::route!(PushNotification);
