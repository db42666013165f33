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

use sipbox_guest::{Method, Request, Result, Route, config, events, location, proxy, rest, tm};

/// The registrar's event for a contact that was not registered before.
const CONTACT_INSERT: &str = "E_UL_CONTACT_INSERT";

struct PushWait;

impl Route for PushWait {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        let method = req.method();
        tm::record_route();
        if location::lookup() > 0 {
            return relay(req, &method);
        }
        match req.ruri_user() {
            Some(user) if method == Method::Invite => wait_for_device(req, &user),
            _ => tm::reply(404, "Not Found"),
        }
    }
}

/// Pushes, waits for the callee's device to register, and relays to it.
fn wait_for_device(req: &Request, user: &str) -> Result {
    if !send_push(user, &req.call_id())? {
        return tm::reply(480, "Temporarily Unavailable");
    }
    // The device may have registered while the push was in flight, before
    // the wait below subscribes.
    if location::lookup() > 0 {
        return relay(req, &Method::Invite);
    }
    let timeout = config::get_or("push_timeout", 30)?;
    let filter = format!("aor={}", events::glob_escape(user));
    // The guest is suspended here; the host runs other calls meanwhile. A
    // refused wait (too many waiters) fails the call: the host answers 500.
    match events::wait_for_event(CONTACT_INSERT, &[&filter], timeout)? {
        Some(event) => {
            let contact = event.param_str("uri").unwrap_or_default();
            sipbox_guest::info!("{user} registered {contact}: resuming call {}", req.call_id());
            // The new contact is in the location service now (with any
            // others registered meanwhile): fork to all of them.
            if location::lookup() > 0 {
                relay(req, &Method::Invite)
            } else {
                // Registered and gone again (Expires: 0) within the wait.
                tm::reply_unless_finished(480, "Temporarily Unavailable")
            }
        }
        None => {
            sipbox_guest::info!("{user} did not register within {timeout} s");
            tm::reply_unless_finished(480, "Temporarily Unavailable")
        }
    }
}

/// POSTs the push for `user`; true when the provider accepted it (2xx). A
/// push that fails is no error of the route: the caller gets 480.
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

fn relay(req: &Request, method: &Method) -> Result {
    match tm::relay() {
        Err(e) if e.is_finished() => {
            // Answered already: cancelled by the caller during the wait, or
            // Max-Forwards exhausted (the host sent 483).
            sipbox_guest::info!("{method} to {} not relayed: {e}", req.ruri());
            Ok(())
        }
        other => other,
    }
}

sipbox_guest::route!(PushWait);
