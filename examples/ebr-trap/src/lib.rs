//! A route that misbehaves around event-based routing, to test that the host
//! confines the failure and cleans up after it. An INVITE whose
//! Request-URI user is
//! - `notifytrap` subscribes to `E_EBR_TRAP` (notify style, route `trapped`)
//!   and then panics: the caller gets `500`; a later `E_EBR_TRAP` still runs
//!   [`on_notify`](Route::on_notify), whose injection into the dead
//!   transaction fails cleanly;
//! - `waittrap` waits for `E_EBR_TRAP` (at most `config waittrap_timeout`
//!   seconds, default 2) and panics when it resumes, event or not;
//!
//! every other request is routed like the default route.

use sipbox_guest::events;
use sipbox_guest::tm::{BranchSource, InjectFlags};
use sipbox_guest::{Event, Method, Request, Route, config, location, tm};

/// The event both traps subscribe to (raised by the test over the MI).
const TRAP_EVENT: &str = "E_EBR_TRAP";

struct EbrTrap;

impl Route for EbrTrap {
    fn on_request(req: &Request) {
        let method = req.method();
        if method == Method::Invite {
            match req.ruri_user().as_deref() {
                Some("notifytrap") => {
                    let subscribed = events::notify_on_event(TRAP_EVENT, &[], "trapped", 30);
                    panic!("trap after notify_on_event ({subscribed:?}) in {}", req.call_id());
                }
                Some("waittrap") => {
                    let timeout = config::get("waittrap_timeout").and_then(|v| v.parse().ok()).unwrap_or(2);
                    let got = events::wait_for_event(TRAP_EVENT, &[], timeout);
                    panic!("trap after wait_for_event ({:?}) in {}", got.map(|e| e.is_some()), req.call_id());
                }
                _ => {}
            }
        }
        route_like_default(req, method);
    }

    fn on_notify(route: &str, event: &Event, tid: tm::Tid) {
        // The subscriber trapped: its transaction was answered 500, so this
        // must fail without harm.
        let result =
            tm::inject_branches(tid, &BranchSource::Uris(vec!["sip:nobody@127.0.0.1:9".into()]), InjectFlags::empty());
        sipbox_guest::info!("on_notify {route} for {} after the trap: inject into {tid}: {result:?}", event.name);
    }
}

/// A copy of the default route (examples stay independent of each other).
fn route_like_default(req: &Request, method: Method) {
    if method == Method::Register {
        if let Err(e) = location::save() {
            sipbox_guest::error!("REGISTER not saved: {e}");
            let _ = tm::reply(500, "Server Internal Error");
        }
        return;
    }
    if req.is_in_dialog() {
        if !tm::loose_route() && tm::is_myself(&req.ruri()) && location::lookup() == 0 {
            if method != Method::Ack {
                let _ = tm::reply(404, "Not Here");
            }
            return;
        }
        if tm::relay().is_err() && method != Method::Ack {
            let _ = tm::reply(404, "Not Here");
        }
        return;
    }
    match method {
        Method::Ack | Method::Cancel => return,
        Method::Options if req.ruri_user().is_none() => {
            let _ = tm::reply(200, "OK");
            return;
        }
        _ => {}
    }
    tm::record_route();
    if location::lookup() == 0 {
        let _ = tm::reply(404, "Not Found");
    } else if let Err(e) = tm::relay() {
        sipbox_guest::warn!("{method} to {} not relayed: {e}", req.ruri());
    }
}

sipbox_guest::route!(EbrTrap);
