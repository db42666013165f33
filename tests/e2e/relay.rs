//! `examples/relay` (benchmark scenarios A and B): every new request goes to
//! the fixed `next_hop`, whoever it is for; nobody registers. Without
//! `record_route` the caller's ACK and BYE carry no Route and are relayed to
//! their Request-URI (the callee's Contact); with it they come back through
//! the proxy's Record-Route and are loose-routed.

use crate::harness::{LOCALHOST, Route, Server, ServerConfig, Sipp, TestEnv, free_ports, uac};

/// Calls placed per test: more than one, so a route that only works for the
/// first request of an instance would show.
const CALLS: u32 = 3;

fn relay_server(env: &TestEnv, uas_port: u16, record_route: bool) -> Server {
    let mut config = ServerConfig { route: Route::Example("relay.wasm"), ..ServerConfig::default() }
        .var("next_hop", format!("{LOCALHOST}:{uas_port}"));
    if record_route {
        config = config.var("record_route", "yes");
    }
    Server::start(env, config)
}

/// Places the calls to `carol` (registered nowhere) and returns the caller's
/// and the callee's message traces.
fn calls_through_relay(name: &str, record_route: bool) -> (String, String, u16, u16) {
    let env = TestEnv::new(name);
    let [uas_port] = free_ports();
    let server = relay_server(&env, uas_port, record_route);

    let callee = Sipp::new(&env, "uas_rr.xml").local_port(uas_port).calls(CALLS).spawn();
    let caller = uac(&env, &server, "uac_call.xml", "carol").calls(CALLS).run();
    caller.assert_ok("INVITE/180/200/ACK/BYE/200 relayed to the fixed next hop");
    let callee = callee.wait();
    callee.assert_ok("the UAS at next_hop got every INVITE, ACK and BYE");

    // The Request-URI kept its user and got the next hop's address (the
    // trace is a tail: the last call is in it).
    let relayed_ruri = format!("INVITE sip:carol@{LOCALHOST}:{uas_port} SIP/2.0");
    assert!(
        callee.messages.lines().any(|l| l.starts_with(&relayed_ruri)),
        "the UAS got no INVITE with Request-URI {relayed_ruri:?}\n{callee}"
    );
    (caller.messages.clone(), callee.messages.clone(), server.port(), uas_port)
}

#[test]
fn relay_without_record_route_sends_in_dialog_requests_to_the_contact() {
    let (caller, callee, proxy_port, uas_port) = calls_through_relay("relay_plain", false);
    let proxy = format!("{LOCALHOST}:{proxy_port}");
    assert!(
        !caller.lines().any(|l| l.starts_with("Record-Route:") || (l.starts_with("Route:") && l.contains(&proxy))),
        "the relay Record-Routed although record_route is unset\n{caller}"
    );
    // The ACK and BYE were addressed to the callee's Contact and still
    // reached it through the proxy (SIPp sends everything to the proxy).
    let bye = format!("BYE sip:{LOCALHOST}:{uas_port}");
    assert!(callee.lines().any(|l| l.starts_with(&bye)), "the UAS got no BYE for its Contact ({bye})\n{callee}");
}

#[test]
fn relay_with_record_route_loose_routes_in_dialog_requests() {
    let (caller, _callee, proxy_port, _) = calls_through_relay("relay_rr", true);
    let proxy = format!("{LOCALHOST}:{proxy_port}");
    assert!(
        caller.lines().any(|l| l.starts_with("Route:") && l.contains(&proxy)),
        "the caller's ACK and BYE had no Route to the proxy ({proxy})\n{caller}"
    );
}
