// The route both reload examples build: shared by `include!`, so the two
// modules differ only in their package name, which they stamp on what they
// do. No inner docs here: an included file cannot carry them.

use sipbox_guest::events::{self, param};
use sipbox_guest::{Event, Request, Route, config, proxy, tm};

/// Which module this is: `reload-a` or `reload-b`.
const VERSION: &str = env!("CARGO_PKG_NAME");

struct Versioned;

impl Route for Versioned {
    fn on_request(req: &Request) {
        if proxy::handle_common(req) {
            return;
        }
        let Some(next_hop) = config::get("next_hop") else {
            let _ = tm::reply(500, "No next_hop");
            return;
        };
        let user = req.ruri_user().unwrap_or_default();
        if req.set_ruri(&format!("sip:{user}@{next_hop}")).is_err()
            || req.add_header("X-Route-Version", VERSION).is_err()
        {
            let _ = tm::reply(500, "Bad next_hop");
            return;
        }
        tm::record_route();
        let _ = tm::relay();
    }

    fn on_event(route: &str, event: &Event) {
        // `wait`: park until E_RELOAD_RESUME first, to show which version
        // finishes a guest that waited across a reload.
        if event.param_str("wait").is_some() {
            let _ = events::wait_for_event("E_RELOAD_RESUME", &[], 10);
        }
        let _ = events::raise("E_ROUTE_VERSION", &[param("version", VERSION), param("route", route)]);
    }
}

sipbox_guest::route!(Versioned);
