//! A route that misbehaves around event-based routing, to test that the host
//! confines the failure and cleans up after it. An INVITE whose
//! Request-URI user is
//! - `notifytrap` subscribes to `E_EBR_TRAP` (notify style, route `trapped`)
//!   and then panics: the caller gets `500`; a later `E_EBR_TRAP` still runs
//!   [`on_notify`](Route::on_notify), whose injection into the dead
//!   transaction fails cleanly;
//! - `waittrap` waits for `E_EBR_TRAP` (at most `config waittrap_timeout`
//!   seconds, default 2) and panics when it resumes, event or not;
//!
//! every other request is routed like the default route.

use sipbox_guest::tm::{BranchSource, InjectFlags};
use sipbox_guest::{Event, Method, Request, Result, Route, config, events, proxy, tm};

/// The event both traps subscribe to (raised by the test over the MI).
const TRAP_EVENT: &str = "E_EBR_TRAP";

struct EbrTrap;

impl Route for EbrTrap {
    fn on_request(req: &Request) -> Result {
        if req.method() == Method::Invite {
            match req.ruri_user().as_deref() {
                Some("notifytrap") => {
                    let subscribed = events::notify_on_event(TRAP_EVENT, &[], "trapped", 30);
                    panic!("trap after notify_on_event ({subscribed:?}) in {}", req.call_id());
                }
                Some("waittrap") => {
                    let timeout = config::get_or("waittrap_timeout", 2)?;
                    let got = events::wait_for_event(TRAP_EVENT, &[], timeout);
                    panic!("trap after wait_for_event ({:?}) in {}", got.map(|e| e.is_some()), req.call_id());
                }
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

    fn on_notify(route: &str, event: &Event, tid: tm::Tid) -> Result {
        // The subscriber trapped: its transaction was answered 500, so this
        // must fail without harm. The outcome is logged, not returned: the
        // sandbox test looks for this line.
        let result =
            tm::inject_branches(tid, &BranchSource::Uris(vec!["sip:nobody@127.0.0.1:9".into()]), InjectFlags::empty());
        sipbox_guest::info!("on_notify {route} for {} after the trap: inject into {tid}: {result:?}", event.name);
        Ok(())
    }
}

sipbox_guest::route!(EbrTrap);
