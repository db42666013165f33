//! Calls through the proxy: INVITE -> 180 -> 200 -> ACK -> BYE -> 200 to a
//! registered SIPp UAS, in-dialog requests loose-routed through the proxy's
//! Record-Route; and 404 for a user nobody registered.

use crate::harness::{Server, ServerConfig, TestEnv, free_ports, register, uac, uas};

#[test]
fn call_reaches_a_registered_uas_and_hangs_up() {
    let env = TestEnv::new("call_basic");
    let server = Server::start(&env, ServerConfig::default());
    let [uas_port] = free_ports();
    register(&env, &server, &["alice"], uas_port, 600);

    let callee = uas(&env, "uas_rr.xml", uas_port);
    let caller = uac(&env, &server, "uac_call.xml", "alice").run();
    caller.assert_ok("INVITE/180/200/ACK/BYE/200 through the proxy");
    callee.wait().assert_ok("the UAS got the INVITE, the ACK and the BYE");

    // The proxy Record-Routed, so the caller's ACK and BYE carried a Route to it.
    let route_to_proxy = format!("127.0.0.1:{}", server.port());
    assert!(
        caller.messages.lines().any(|l| l.starts_with("Route:") && l.contains(&route_to_proxy)),
        "the caller's in-dialog requests had no Route to the proxy ({route_to_proxy})\n{caller}"
    );
}

#[test]
fn unknown_user_gets_404() {
    let env = TestEnv::new("call_unknown");
    let server = Server::start(&env, ServerConfig::default());
    uac(&env, &server, "uac_expect_404.xml", "nobody").run().assert_ok("INVITE to an unknown user gets 404");
}
