// The route both reload examples build: shared by `include!`, so the two
// modules differ only in their package name, which they stamp on what they
// do. No inner docs here: an included file cannot carry them.

use sipbox_guest::events::{self, param};
use sipbox_guest::{Event, Request, Result, Route, config, proxy, tm};

/// Which module this is: `reload-a` or `reload-b`.
const VERSION: &str = env!("CARGO_PKG_NAME");

struct Versioned;

impl Route for Versioned {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        let Some(next_hop) = config::get::<String>("next_hop")? else {
            return tm::reply(500, "No next_hop");
        };
        let user = req.ruri_user().unwrap_or_default();
        let target = format!("sip:{user}@{next_hop}");
        if let Err(e) = req.set_ruri(&target).and_then(|()| req.add_header("X-Route-Version", VERSION)) {
            sipbox_guest::error!("next_hop {next_hop:?} gives no usable request ({target}): {e}");
            return tm::reply(500, "Bad next_hop");
        }
        tm::record_route();
        tm::relay()
    }

    fn on_event(route: &str, event: &Event) -> Result {
        // `wait`: park until E_RELOAD_RESUME first, to show which version
        // finishes a guest that waited across a reload. Whether the resume
        // event came or the wait timed out, the version is raised.
        if event.param_str("wait").is_some() {
            events::wait_for_event("E_RELOAD_RESUME", &[], 10)?;
        }
        events::raise("E_ROUTE_VERSION", &[param("version", VERSION), param("route", route)])?;
        Ok(())
    }
}

sipbox_guest::route!(Versioned);
