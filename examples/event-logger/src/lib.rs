//! An event route example (OpenSIPS's `event_route[E_PIKE_BLOCKED]`): subscribe
//! it with `sipbox mi event_subscribe E_PIKE_BLOCKED route:blocked`, or in
//! sipbox.toml `[[events.subscribe]] event = "E_PIKE_BLOCKED", socket = "route:blocked"`.
//! Each blocked source IP is logged and re-raised as `E_SECURITY_ALERT` for
//! external consumers; REGISTERs and calls are handled like the default route.

use sipbox_guest::events::{self, param};
use sipbox_guest::{Event, Method, Request, Route, location, tm};

struct EventLogger;

impl Route for EventLogger {
    fn on_request(req: &Request) {
        if req.method() == Method::Register {
            let _ = location::save();
        } else if location::lookup() == 0 {
            let _ = tm::reply(404, "Not Found");
        } else {
            let _ = tm::relay();
        }
    }

    fn on_event(route: &str, event: &Event) {
        match route {
            "blocked" => {
                let ip = event.param_str("ip").unwrap_or_default();
                sipbox_guest::warn!("{}: source {ip} blocked for flooding", event.name);
                let alert = [param("kind", "flood"), param("ip", ip)];
                if let Err(e) = events::raise("E_SECURITY_ALERT", &alert) {
                    sipbox_guest::error!("cannot raise E_SECURITY_ALERT: {e}");
                }
            }
            other => sipbox_guest::info!("event {} on route {other}", event.name),
        }
    }
}

sipbox_guest::route!(EventLogger);
