//! Push notifications with event-based routing, direct style (OpenSIPS's
//! `async(wait_for_event(...), resume_call)`).
//!
//! An INVITE for a user with no registration sends a push to the provider
//! (`config push_url`), then waits, suspended in the middle of `on_request`,
//! for `E_UL_CONTACT_INSERT` of the callee's AOR. When the device registers,
//! the route resumes right after the wait, looks the callee up and relays;
//! when nothing registers in time, the caller gets `480`. The host keeps
//! absorbing the caller's retransmissions meanwhile, and answers a CANCEL.
//!
//! Settings (`[routes.vars]`): `push_url` (JSON `{"aor":..,"call_id":..}` is
//! POSTed there), `push_timeout` (seconds to wait, default 30),
//! `push_http_timeout_ms` (default 2000).

use sipbox_guest::events;
use sipbox_guest::{Method, Request, Route, config, location, proxy, rest, tm};

/// The registrar's event for a contact that was not registered before.
const CONTACT_INSERT: &str = "E_UL_CONTACT_INSERT";

struct PushWait;

impl Route for PushWait {
    fn on_request(req: &Request) {
        if proxy::handle_common(req) {
            return;
        }
        let method = req.method();
        tm::record_route();
        if location::lookup() > 0 {
            relay(req, &method);
            return;
        }
        match req.ruri_user() {
            Some(user) if method == Method::Invite => wait_for_device(req, &user),
            _ => {
                let _ = tm::reply(404, "Not Found");
            }
        }
    }
}

/// Pushes, waits for the callee's device to register, and relays to it.
fn wait_for_device(req: &Request, user: &str) {
    if !send_push(user, &req.call_id()) {
        let _ = tm::reply(480, "Temporarily Unavailable");
        return;
    }
    // The device may have registered while the push was in flight, before
    // the wait below subscribes.
    if location::lookup() > 0 {
        relay(req, &Method::Invite);
        return;
    }
    let timeout = config_u32("push_timeout", 30);
    let filter = format!("aor={}", events::glob_escape(user));
    // The guest is suspended here; the host runs other calls meanwhile.
    match events::wait_for_event(CONTACT_INSERT, &[&filter], timeout) {
        Ok(Some(event)) => {
            let contact = event.param_str("uri").unwrap_or_default();
            sipbox_guest::info!("{user} registered {contact}: resuming call {}", req.call_id());
            // The new contact is in the location service now (with any
            // others registered meanwhile): fork to all of them.
            if location::lookup() > 0 {
                relay(req, &Method::Invite);
            } else {
                // Registered and gone again (Expires: 0) within the wait.
                let _ = tm::reply(480, "Temporarily Unavailable");
            }
        }
        Ok(None) => {
            sipbox_guest::info!("{user} did not register within {timeout} s");
            // Fails harmlessly if the caller cancelled meanwhile (487 sent).
            let _ = tm::reply(480, "Temporarily Unavailable");
        }
        Err(e) => {
            sipbox_guest::error!("cannot wait for {CONTACT_INSERT} of {user}: {e}");
            let _ = tm::reply(500, "Server Internal Error");
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

fn relay(req: &Request, method: &Method) {
    if let Err(e) = tm::relay() {
        // Answered already: cancelled by the caller during the wait, or
        // Max-Forwards exhausted (the host sent 483).
        sipbox_guest::info!("{method} to {} not relayed: {e}", req.ruri());
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

sipbox_guest::route!(PushWait);
