//! Parallel forking: one user with two contacts; both ring, one answers, and
//! the proxy cancels the other branch (RFC 3261 16.7 step 10).

use crate::harness::{Server, ServerConfig, TestEnv, free_ports, register, uac, uas};

#[test]
fn fork_to_two_contacts_cancels_the_loser() {
    let env = TestEnv::new("fork_two");
    let server = Server::start(&env, ServerConfig::default());
    let [answer_port, ring_port] = free_ports();
    register(&env, &server, &["carol"], answer_port, 600);
    register(&env, &server, &["carol"], ring_port, 600);

    // The answering UAS rings 500 ms before its 200, so the other branch has
    // surely rung (a proxy may only CANCEL a branch that sent a provisional).
    let answerer = crate::harness::Sipp::new(&env, "uas_rr.xml").local_port(answer_port).pause_ms(500).spawn();
    let ringer = uas(&env, "uas_ring.xml", ring_port);

    uac(&env, &server, "uac_call.xml", "carol").run().assert_ok("the forked call is answered and hung up");
    answerer.wait().assert_ok("the answering contact completed the call");
    ringer.wait().assert_ok("the other contact rang and was cancelled");
}
