//! A route that misbehaves on request, to test that the host confines a
//! broken guest to its own invocation. An INVITE whose Request-URI user is
//! - `trap` panics (a trap: `unreachable` under `panic = "abort"`),
//! - `loop` spins forever (until the host's CPU deadline),
//! - `oom` allocates until its memory limit;
//!
//! every other request is routed like the default route.

use sipbox_guest::{Method, Request, Route, location, tm};

struct TrapRoute;

impl Route for TrapRoute {
    fn on_request(req: &Request) {
        let method = req.method();
        if method == Method::Invite {
            match req.ruri_user().as_deref() {
                Some("trap") => panic!("trap requested by {}", req.call_id()),
                Some("loop") => spin_forever(),
                Some("oom") => exhaust_memory(),
                _ => {}
            }
        }
        route_like_default(req, method);
    }
}

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the loop from being optimised into a bare trap.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch each MiB so it is really committed; when memory.grow is
        // refused the allocator aborts, which traps.
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
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
    } else if let Err(e) = tm::relay() {
        sipbox_guest::warn!("{method} to {} not relayed: {e}", req.ruri());
    }
}

sipbox_guest::route!(TrapRoute);
