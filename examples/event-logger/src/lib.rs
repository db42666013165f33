//! An event route example (OpenSIPS's `event_route[E_PIKE_BLOCKED]`): subscribe
//! it with `sipbox mi event_subscribe E_PIKE_BLOCKED route:blocked`, or in
//! sipbox.toml `[[events.subscribe]] event = "E_PIKE_BLOCKED", socket = "route:blocked"`.
//! Each blocked source IP is logged and re-raised as `E_SECURITY_ALERT` for
//! external consumers; REGISTERs and calls are handled like the default route.

use sipbox_guest::events::{self, param};
use sipbox_guest::{Event, Method, Request, Result, Route, location, proxy, tm};

struct EventLogger;

impl Route for EventLogger {
    fn on_request(req: &Request) -> Result {
        if req.method() == Method::Register {
            return proxy::save_registration();
        }
        if location::lookup() == 0 {
            return tm::reply(404, "Not Found");
        }
        tm::relay()
    }

    fn on_event(route: &str, event: &Event) -> Result {
        match route {
            "blocked" => {
                let ip = event.param_str("ip").unwrap_or_default();
                sipbox_guest::warn!("{}: source {ip} blocked for flooding", event.name);
                // A refusal fails the event route: the host logs it.
                events::raise("E_SECURITY_ALERT", &[param("kind", "flood"), param("ip", ip)])?;
            }
            other => sipbox_guest::info!("event {} on route {other}", event.name),
        }
        Ok(())
    }
}

sipbox_guest::route!(EventLogger);
