//! A route that misbehaves on request, to test that the host confines a
//! broken guest to its own invocation. An INVITE whose Request-URI user is
//! - `trap` panics (a trap: `unreachable` under `panic = "abort"`),
//! - `loop` spins forever (until the host's CPU deadline),
//! - `oom` allocates until its memory limit,
//! - `error` returns an error (no trap: the handler fails, the host answers
//!   500 and counts it in `routes:errors`);
//!
//! every other request is routed like the default route. The event route
//! `error` returns an error too (any other event route does nothing).

use sipbox_guest::{Event, Method, Request, Result, Route, proxy, tm};

struct TrapRoute;

impl Route for TrapRoute {
    fn on_request(req: &Request) -> Result {
        if req.method() == Method::Invite {
            match req.ruri_user().as_deref() {
                Some("trap") => panic!("trap requested by {}", req.call_id()),
                Some("loop") => spin_forever(),
                Some("oom") => exhaust_memory(),
                Some("error") => return Err(format!("error requested by {}", req.call_id()).into()),
                _ => {}
            }
        }
        // Everything else as the default route.
        if proxy::handle_common(req)? {
            return Ok(());
        }
        tm::record_route();
        proxy::relay_to_contacts(req)
    }

    fn on_event(route: &str, event: &Event) -> Result {
        match route {
            "error" => Err(format!("error requested by event {}", event.name).into()),
            _ => Ok(()),
        }
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

sipbox_guest::route!(TrapRoute);
