//! A PIN-protected service with event-based routing (the DTMF scenario of
//! OpenSIPS's EBR presentation, in direct style).
//!
//! An INVITE to `pin-<target>` is answered `183 Session Progress` (a media
//! server would now play a prompt and collect the digit) and waits,
//! suspended, for `E_DTMF` with the call's Call-ID. The media server raises
//! it through the management interface:
//! `raise_event E_DTMF {"callid": "...", "digit": "1"}`. The expected digit
//! relays the call to `<target>`'s registered contacts; another digit hangs
//! up with `403 Wrong Digit`; no digit in time, `408`.
//!
//! Settings (`[routes.vars]`): `pin_prefix` (default `pin-`),
//! `dtmf_expected` (default `1`), `dtmf_timeout` (seconds, default 15).
//! Other requests are routed like the default route.

use sipbox_guest::events;
use sipbox_guest::{Method, Request, Route, config, proxy, tm, uri};

/// The event the media server raises for each detected digit.
const DTMF_EVENT: &str = "E_DTMF";

struct DtmfDetect;

impl Route for DtmfDetect {
    fn on_request(req: &Request) {
        if proxy::handle_common(req) {
            return;
        }
        let method = req.method();
        tm::record_route();
        let prefix = config::get("pin_prefix").unwrap_or_else(|| "pin-".to_owned());
        let target = req.ruri_user().and_then(|u| u.strip_prefix(prefix.as_str()).map(str::to_owned));
        match target {
            Some(target) if method == Method::Invite && !target.is_empty() => pin_call(req, &target),
            _ => proxy::relay_to_contacts(req),
        }
    }
}

/// Collects the digit, then connects, rejects or times out the call.
fn pin_call(req: &Request, target: &str) {
    let call_id = req.call_id();
    if let Err(e) = tm::reply(183, "Session Progress") {
        // Cancelled already, or the request is otherwise dead.
        sipbox_guest::info!("PIN call {call_id} ended before the prompt: {e}");
        return;
    }
    let timeout = config_u32("dtmf_timeout", 15);
    let filter = format!("callid={}", events::glob_escape(&call_id));
    let event = match events::wait_for_event(DTMF_EVENT, &[&filter], timeout) {
        Ok(Some(event)) => event,
        Ok(None) => {
            sipbox_guest::info!("no digit for call {call_id} within {timeout} s");
            let _ = tm::reply(408, "Request Timeout");
            return;
        }
        Err(e) => {
            sipbox_guest::error!("cannot wait for {DTMF_EVENT}: {e}");
            let _ = tm::reply(500, "Server Internal Error");
            return;
        }
    };
    let digit = event.param_str("digit").unwrap_or_default();
    let expected = config::get("dtmf_expected").unwrap_or_else(|| "1".to_owned());
    if digit.trim() != expected.trim() {
        sipbox_guest::info!("call {call_id}: wrong digit {digit:?}, hanging up");
        let _ = tm::reply(403, "Wrong Digit");
        return;
    }
    // Right digit: the call goes on to the target, in this proxy's domain.
    let ruri = req.ruri();
    let host = uri::host(&ruri).unwrap_or("localhost");
    if let Err(e) = req.set_ruri(&format!("sip:{target}@{host}")) {
        sipbox_guest::warn!("bad target {target:?}: {e}");
        let _ = tm::reply(404, "Not Found");
        return;
    }
    proxy::relay_to_contacts(req);
}

/// A positive integer setting, or `default` when absent or malformed.
fn config_u32(name: &str, default: u32) -> u32 {
    config::get(name).and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

sipbox_guest::route!(DtmfDetect);
