//! The route sipbox runs by default: a registrar and stateful proxy for the
//! users registered with it, in the spirit of OpenSIPS's default script.

use sipbox_guest::{Method, Request, Route, location, proxy, tm};

struct DefaultRoute;

impl Route for DefaultRoute {
    fn on_request(req: &Request) {
        let method = req.method();

        if method == Method::Register {
            // The host answers the REGISTER itself (200, 400 or 423).
            if let Err(e) = location::save() {
                sipbox_guest::error!("REGISTER not saved: {e}");
                let _ = tm::reply(500, "Server Internal Error");
            }
            return;
        }

        if req.is_in_dialog() {
            proxy::route_in_dialog(req);
            return;
        }

        match method {
            // An ACK outside a dialog, or a CANCEL matching no transaction
            // (the host handles those that match): nothing to do.
            Method::Ack | Method::Cancel => return,
            // A keep-alive ping of the proxy itself.
            Method::Options if req.ruri_user().is_none() => {
                let _ = tm::reply(200, "OK");
                return;
            }
            _ => {}
        }

        tm::record_route();
        if location::lookup() == 0 {
            let _ = tm::reply(404, "Not Found");
            return;
        }
        if let Err(e) = tm::relay() {
            // relay fails only on an answered or ended transaction, or with
            // Max-Forwards exhausted when the host answers 483 itself: in
            // every case a reply here would be refused.
            sipbox_guest::warn!("{method} to {} not relayed: {e}", req.ruri());
        }
    }
}

sipbox_guest::route!(DefaultRoute);
