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

use sipbox_guest::{Method, Request, Result, Route, config, events, proxy, tm, uri};

/// The event the media server raises for each detected digit.
const DTMF_EVENT: &str = "E_DTMF";

struct DtmfDetect;

impl Route for DtmfDetect {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        let method = req.method();
        tm::record_route();
        let prefix: String = config::get_or("pin_prefix", "pin-".to_owned())?;
        let target = req.ruri_user().and_then(|u| u.strip_prefix(prefix.as_str()).map(str::to_owned));
        match target {
            Some(target) if method == Method::Invite && !target.is_empty() => pin_call(req, &target),
            _ => proxy::relay_to_contacts(req),
        }
    }
}

/// Collects the digit, then connects, rejects or times out the call.
fn pin_call(req: &Request, target: &str) -> Result {
    let call_id = req.call_id();
    match tm::reply(183, "Session Progress") {
        Ok(()) => {}
        Err(e) if e.is_finished() => {
            // Cancelled already: there is no call to prompt.
            sipbox_guest::info!("PIN call {call_id} ended before the prompt: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let timeout = config::get_or("dtmf_timeout", 15)?;
    let filter = format!("callid={}", events::glob_escape(&call_id));
    // A refused wait (too many waiters) fails the call: the host answers 500.
    let Some(event) = events::wait_for_event(DTMF_EVENT, &[&filter], timeout)? else {
        sipbox_guest::info!("no digit for call {call_id} within {timeout} s");
        return tm::reply_unless_finished(408, "Request Timeout");
    };
    let digit = event.param_str("digit").unwrap_or_default();
    let expected: String = config::get_or("dtmf_expected", "1".to_owned())?;
    if digit.trim() != expected {
        sipbox_guest::info!("call {call_id}: wrong digit {digit:?}, hanging up");
        return tm::reply_unless_finished(403, "Wrong Digit");
    }
    // Right digit: the call goes on to the target, in this proxy's domain.
    let ruri = req.ruri();
    let host = uri::host(&ruri).unwrap_or("localhost");
    if let Err(e) = req.set_ruri(&format!("sip:{target}@{host}")) {
        sipbox_guest::warn!("bad target {target:?}: {e}");
        return tm::reply(404, "Not Found");
    }
    proxy::relay_to_contacts(req)
}

sipbox_guest::route!(DtmfDetect);
