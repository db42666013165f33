//! Serial forking: an INVITE first goes to the callee's registered contacts;
//! if they all end busy (486), unanswered (408) or unavailable (480), it is
//! sent on to the fallback URI the caller named in an `X-Fallback` header.
//! Other requests are routed like the default route, minus its extras.

use sipbox_guest::{Method, Reply, Request, Route, location, tm, uri};

struct SerialFork;

impl Route for SerialFork {
    fn on_request(req: &Request) {
        let method = req.method();
        if method == Method::Register {
            if let Err(e) = location::save() {
                sipbox_guest::error!("REGISTER not saved: {e}");
            }
            return;
        }
        if req.is_in_dialog() {
            tm::loose_route();
            if tm::relay().is_err() && method != Method::Ack {
                let _ = tm::reply(404, "Not Here");
            }
            return;
        }
        if matches!(method, Method::Ack | Method::Cancel) {
            return;
        }
        tm::record_route();
        if location::lookup() == 0 {
            let _ = tm::reply(404, "Not Found");
            return;
        }
        if method == Method::Invite {
            // Stage two, armed for the relay below.
            tm::on_failure("next");
        }
        if let Err(e) = tm::relay() {
            sipbox_guest::warn!("{method} not relayed: {e}");
        }
    }

    fn on_failure(route: &str, req: &Request, reply: &Reply) {
        if route != "next" || !matches!(reply.status(), 408 | 480 | 486) {
            return; // the best response goes upstream
        }
        let Some(fallback) = req.header("X-Fallback") else {
            return;
        };
        // The new stage's target replaces the Request-URI: relay sends to the
        // R-URI plus new branches, and the contacts already failed.
        let target = uri::addr_spec(&fallback);
        if let Err(e) = req.set_ruri(target) {
            sipbox_guest::warn!("bad X-Fallback {fallback:?}: {e}");
            return;
        }
        // The fallback leg has no failure hook: its own failure goes upstream.
        match tm::relay() {
            Ok(()) => sipbox_guest::info!("{} failed, trying {target}", reply.status()),
            Err(e) => sipbox_guest::warn!("fallback to {target} not relayed: {e}"),
        }
    }
}

sipbox_guest::route!(SerialFork);
