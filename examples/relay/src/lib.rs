//! A stateful relay to one fixed next hop, like Kamailio's
//! `rewritehostport(...); t_relay();` (the route behind benchmark scenarios A
//! and B): every new request goes to `next_hop`, whoever it is for.
//!
//! In-dialog requests are loose-routed as the default route does it
//! ([`proxy::handle_common`]); with `record_route = "yes"` the proxy stays in
//! the dialog's path, so the ACK and BYE come back through it. Without it a
//! UA may still send them through the proxy, addressed to the far end's
//! Contact: those are relayed only when that Contact is at `next_hop`
//! (anything else would make the relay an open relay: 404).
//!
//! Settings (`[routes.vars]`):
//! - `next_hop`: `host:port` (the Request-URI keeps its user and gets this
//!   host and port), or a whole SIP URI with a user (`sip:bob@host:port`),
//!   which replaces the Request-URI; required.
//! - `record_route`: `yes` to add Record-Route to new requests (default no).

use sipbox_guest::{Method, Request, Result, Route, config, proxy, tm, uri};

struct Relay;

impl Route for Relay {
    fn on_request(req: &Request) -> Result {
        if req.is_in_dialog() && !tm::loose_route() {
            let next_hop: String = config::require("next_hop")?;
            if hostport(&req.ruri()) == hostport(&target_uri(None, &next_hop)) {
                return relay(req, &req.ruri());
            }
            if req.method() != Method::Ack {
                tm::reply(404, "Not Here")?;
            }
            return Ok(());
        }
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
        relay(req, &target)
    }
}

fn relay(req: &Request, target: &str) -> Result {
    match tm::relay() {
        Err(e) if e.is_finished() => {
            // Answered already: Max-Forwards exhausted (the host sent 483).
            sipbox_guest::info!("{} to {target} not relayed: {e}", req.method());
            Ok(())
        }
        other => other,
    }
}

/// `host:port` of a SIP URI (port 5060 when absent), lowercase.
fn hostport(sip_uri: &str) -> Option<String> {
    let host = uri::host(sip_uri)?.to_ascii_lowercase();
    let after_host = sip_uri.split_once('@').map_or(sip_uri, |(_, rest)| rest);
    let after_host = after_host.strip_prefix("sip:").unwrap_or(after_host);
    let port = after_host
        .split([';', '?', '>'])
        .next()
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(5060);
    Some(format!("{host}:{port}"))
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
