//! Serial forking: an INVITE first goes to the callee's registered contacts;
//! if they all end busy (486), unanswered (408) or unavailable (480), it is
//! sent on to the fallback URI the caller named in an `X-Fallback` header.
//! Other requests are routed like the default route ([`proxy::handle_common`]).

use sipbox_guest::{Method, Reply, Request, Result, Route, location, proxy, tm, uri};

struct SerialFork;

impl Route for SerialFork {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        let method = req.method();
        tm::record_route();
        if location::lookup() == 0 {
            return tm::reply(404, "Not Found");
        }
        if method == Method::Invite {
            // Stage two, armed for the relay below.
            tm::on_failure("next");
        }
        match tm::relay() {
            Err(e) if e.is_finished() => {
                // Cancelled meanwhile, or Max-Forwards exhausted (483 sent).
                sipbox_guest::warn!("{method} not relayed: {e}");
                Ok(())
            }
            other => other,
        }
    }

    fn on_failure(route: &str, req: &Request, reply: &Reply) -> Result {
        if route != "next" || !matches!(reply.status(), 408 | 480 | 486) {
            return Ok(()); // the best response goes upstream
        }
        let Some(fallback) = req.header("X-Fallback") else {
            return Ok(());
        };
        // The new stage's target replaces the Request-URI: relay sends to the
        // R-URI plus new branches, and the contacts already failed.
        let target = uri::addr_spec(&fallback);
        if let Err(e) = req.set_ruri(target) {
            // The caller's header is unusable: its own failure goes upstream.
            sipbox_guest::warn!("bad X-Fallback {fallback:?}: {e}");
            return Ok(());
        }
        // The fallback leg has no failure hook: its own failure goes upstream.
        tm::relay()?;
        sipbox_guest::info!("{} failed, trying {target}", reply.status());
        Ok(())
    }
}

sipbox_guest::route!(SerialFork);
