//! A stateful relay to one fixed next hop, like Kamailio's
//! `rewritehostport(...); t_relay();` (the route behind benchmark scenarios A
//! and B): every new request goes to `next_hop`, whoever it is for.
//!
//! In-dialog requests are loose-routed as the default route does it
//! ([`proxy::handle_common`]); with `record_route = "yes"` the proxy stays in
//! the dialog's path, so the ACK and BYE come back through it.
//!
//! Settings (`[routes.vars]`):
//! - `next_hop`: `host:port` (the Request-URI keeps its user and gets this
//!   host and port), or a whole SIP URI with a user (`sip:bob@host:port`),
//!   which replaces the Request-URI; required.
//! - `record_route`: `yes` to add Record-Route to new requests (default no).

use sipbox_guest::{Request, Result, Route, config, proxy, tm};

struct Relay;

impl Route for Relay {
    fn on_request(req: &Request) -> Result {
        if proxy::handle_common(req)? {
            return Ok(());
        }
        // Missing: the handler fails naming the setting (the host answers 500).
        let next_hop: String = config::require("next_hop")?;
        let target = target_uri(req.ruri_user().as_deref(), &next_hop);
        if let Err(e) = req.set_ruri(&target) {
            return Err(format!("relay: next_hop {next_hop:?} gives no SIP URI ({target}): {e}").into());
        }
        if config::get::<String>("record_route")?.is_some_and(|v| is_yes(&v)) {
            tm::record_route();
        }
        match tm::relay() {
            Err(e) if e.is_finished() => {
                // Answered already: Max-Forwards exhausted (the host sent 483).
                sipbox_guest::info!("{} to {target} not relayed: {e}", req.method());
                Ok(())
            }
            other => other,
        }
    }
}

/// The Request-URI for the next hop: `next_hop` itself when it is a URI
/// with a user, else `sip:[user@]next_hop` (a leading `sip:` is dropped).
fn target_uri(user: Option<&str>, next_hop: &str) -> String {
    let next_hop = next_hop.trim();
    let hostport = next_hop.strip_prefix("sip:").unwrap_or(next_hop);
    match user {
        _ if hostport.contains('@') => format!("sip:{hostport}"),
        Some(user) => format!("sip:{user}@{hostport}"),
        None => format!("sip:{hostport}"),
    }
}

fn is_yes(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on")
}

sipbox_guest::route!(Relay);
