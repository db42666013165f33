//! The route sipbox runs by default: a registrar and stateful proxy for the
//! users registered with it, in the spirit of OpenSIPS's default script:
//! REGISTER -> save; in-dialog -> loose route; anything else -> record-route,
//! then fork to the callee's registered contacts, or 404.

use sipbox_guest::{Request, Result, Route, proxy, tm};

struct DefaultRoute;

impl Route for DefaultRoute {
    fn on_request(req: &Request) -> Result {
        // REGISTER, in-dialog requests, stray ACK/CANCEL, OPTIONS pings.
        if proxy::handle_common(req)? {
            return Ok(());
        }
        tm::record_route();
        // An error (a contact that is no usable target) fails the handler:
        // the host logs it and answers 500.
        proxy::relay_to_contacts(req)
    }
}

sipbox_guest::route!(DefaultRoute);
