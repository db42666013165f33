//! Call pickup with event-based routing (OpenSIPS's `event_routing` README,
//! "Call Pickup script").
//!
//! Alice calls Bob, a member of pickup group 1: the call rings Bob's
//! contacts as usual and subscribes to `E_CALL_PICKUP` for group 1. Charlie,
//! in the same group, calls the pickup service (`*8`): that call is
//! rejected with `480 Gone` and raises `E_CALL_PICKUP {group, picker, uri,
//! received}` with Charlie's contact. The subscription runs
//! [`on_notify`](Route::on_notify) in a fresh instance, which injects
//! Charlie's contact into Alice's call and cancels Bob's ringing branch:
//! Charlie's phone rings with Alice's call.
//!
//! Settings (`[routes.vars]`): `pickup_group_<user> = "<group>"` per member,
//! `pickup_code` (the service's user part, default `*8`), `pickup_timeout`
//! (seconds a ringing call can be picked up, default 30).

use sipbox_guest::events::{self, param};
use sipbox_guest::tm::{BranchSource, InjectFlags};
use sipbox_guest::{Event, Method, Request, Result, Route, config, location, proxy, tm, uri};

/// The custom event linking the pickup call to the ringing call.
const PICKUP_EVENT: &str = "E_CALL_PICKUP";
/// The notify route of ringing calls.
const PICKUP_ROUTE: &str = "pickup";

struct CallPickup;

impl Route for CallPickup {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        let method = req.method();
        let user = req.ruri_user();
        let pickup_code: String = config::get_or("pickup_code", "*8".to_owned())?;
        if method == Method::Invite && user.as_deref() == Some(pickup_code.as_str()) {
            return pick_up(req);
        }

        tm::record_route();
        if location::lookup() == 0 {
            return tm::reply(404, "Not Found");
        }
        if method == Method::Invite
            && let Some(group) = user.as_deref().map(pickup_group).transpose()?.flatten()
        {
            // Subscribed before the relay: once the callee rings, a pickup
            // finds this call.
            let tid = tm::newtran();
            let filter = format!("group={}", events::glob_escape(&group));
            let timeout = config::get_or("pickup_timeout", 30)?;
            match events::notify_on_event(PICKUP_EVENT, &[&filter], PICKUP_ROUTE, timeout) {
                Ok(()) => sipbox_guest::debug!("transaction {tid} can be picked up by group {group}"),
                // The call itself still goes through, just not pickable.
                Err(e) => sipbox_guest::warn!("no pickup for transaction {tid}: {e}"),
            }
        }
        match tm::relay() {
            Err(e) if e.is_finished() => {
                // Cancelled meanwhile, or Max-Forwards exhausted (483 sent).
                sipbox_guest::warn!("{method} to {} not relayed: {e}", req.ruri());
                Ok(())
            }
            other => other,
        }
    }

    fn on_notify(route: &str, event: &Event, tid: tm::Tid) -> Result {
        if route != PICKUP_ROUTE {
            return Ok(());
        }
        let picker = event.param_str("picker").unwrap_or_default();
        let primary = event.param_str("uri").unwrap_or_default();
        // The picker's contact (to its NAT address when it has one), and
        // Bob's ringing branches are cancelled once it is forked.
        match tm::inject_branches(tid, &BranchSource::EventContact, InjectFlags::CANCEL_EXISTING) {
            Ok(_) => sipbox_guest::info!("call {tid} picked up by {picker}: ringing {primary}"),
            Err(e) if e.is_finished() => {
                // Answered, cancelled or ended meanwhile.
                sipbox_guest::info!("call {tid} cannot be picked up by {picker}: {e}");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        // The picker's other registered devices ring too. Only those
        // reachable at their Contact: a contact behind a NAT needs its
        // `received` address, which only the event's own contact carries.
        let others: Vec<String> = location::lookup_aor(&picker)
            .into_iter()
            .filter(|c| c.uri != primary && c.received.is_none())
            .map(|c| c.uri)
            .collect();
        if !others.is_empty()
            && let Err(e) = tm::inject_branches(tid, &BranchSource::Uris(others), InjectFlags::empty())
        {
            // The picker's own contact rings already: the pickup worked.
            sipbox_guest::warn!("other contacts of {picker} not injected into {tid}: {e}");
        }
        Ok(())
    }
}

/// A call to the pickup service: reject it (the picked call will ring the
/// picker instead) and raise the pickup event for the picker's group.
fn pick_up(req: &Request) -> Result {
    let picker = req.from_uri();
    let Some(group) = uri::user(&picker).map(pickup_group).transpose()?.flatten() else {
        return tm::reply(403, "Not In A Pickup Group");
    };
    // As OpenSIPS: the picker's own call ends here; the picked call comes
    // to the picker as a new INVITE.
    tm::newtran();
    tm::reply(480, "Gone")?;

    let (contact, received) = match location::lookup_aor(&picker).into_iter().next() {
        Some(c) => (c.uri, c.received.unwrap_or_default()),
        // Not registered: call back the Contact of this very request, at the
        // address it came from.
        None => {
            let Some(contact) = req.header("Contact") else {
                sipbox_guest::info!("pickup by {picker}: no registration and no Contact");
                return Ok(());
            };
            let src = req.source();
            let host = if src.ip.contains(':') { format!("[{}]", src.ip) } else { src.ip.clone() };
            (uri::addr_spec(&contact).to_owned(), format!("{}:{host}:{}", src.transport, src.port))
        }
    };
    let params = [
        param("group", group.as_str()),
        param("picker", picker.as_str()),
        param("uri", contact.as_str()),
        param("received", received),
    ];
    match events::raise(PICKUP_EVENT, &params)? {
        0 => sipbox_guest::info!("pickup by {picker}: no call ringing in group {group}"),
        n => sipbox_guest::info!("pickup by {picker} ({contact}) raised for {n} ringing call(s) of group {group}"),
    }
    Ok(())
}

/// The pickup group of `user`, from `pickup_group_<user>` (none when unset
/// or empty).
fn pickup_group(user: &str) -> Result<Option<String>> {
    let group: Option<String> = config::get(&format!("pickup_group_{user}"))?;
    Ok(group.filter(|g| !g.is_empty()))
}

sipbox_guest::route!(CallPickup);
