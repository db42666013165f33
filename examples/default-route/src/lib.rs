//! The route sipbox runs by default: a registrar and stateful proxy for the
//! users registered with it, in the spirit of OpenSIPS's default script:
//! REGISTER -> save; in-dialog -> loose route; anything else -> record-route,
//! then fork to the callee's registered contacts, or 404.

use sipbox_guest::{Request, Route, proxy, tm};

struct DefaultRoute;

impl Route for DefaultRoute {
    fn on_request(req: &Request) {
        if proxy::handle_common(req) {
            return;
        }
        tm::record_route();
        proxy::relay_to_contacts(req);
    }
}

sipbox_guest::route!(DefaultRoute);
