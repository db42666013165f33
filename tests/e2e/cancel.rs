//! CANCEL of a ringing call: the proxy answers the CANCEL, cancels its branch,
//! and relays the callee's 487 to the caller.

use crate::harness::{Server, ServerConfig, TestEnv, free_ports, register, uac, uas};

#[test]
fn caller_cancels_a_ringing_call() {
    let env = TestEnv::new("cancel_ringing");
    let server = Server::start(&env, ServerConfig::default());
    let [uas_port] = free_ports();
    register(&env, &server, &["bob"], uas_port, 600);

    // Rings and never answers; succeeds only if a CANCEL arrives.
    let callee = uas(&env, "uas_ring.xml", uas_port);
    uac(&env, &server, "uac_cancel.xml", "bob").run().assert_ok("INVITE/180/CANCEL/200/487/ACK through the proxy");
    callee.wait().assert_ok("the ringing UAS got the CANCEL and the ACK of its 487");
}
