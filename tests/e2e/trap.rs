//! A failing route fails only its own request: a guest that traps, one that
//! runs past its CPU deadline and one past its memory limit all get `500`, and
//! the next call goes through.
//! Runs the `trap_route.wasm` example: an INVITE to user "trap" traps, "loop"
//! spins, "oom" allocates without end; every other request takes the default route.

use std::time::Duration;

use crate::harness::{RawUdp, Route, Server, ServerConfig, TestEnv, free_ports, register, uac, uas};

fn trap_server(env: &TestEnv) -> Server {
    Server::start(env, ServerConfig { route: Route::Example("trap_route.wasm"), ..ServerConfig::default() })
}

#[test]
fn trapping_route_answers_500_and_the_next_call_succeeds() {
    let env = TestEnv::new("trap_500");
    let server = trap_server(&env);
    let [uas_port] = free_ports();
    register(&env, &server, &["erin"], uas_port, 600);

    uac(&env, &server, "uac_expect_500.xml", "trap").run().assert_ok("a trapping route gets 500");
    uac(&env, &server, "uac_expect_500.xml", "oom").run().assert_ok("a route past its memory limit gets 500");

    let callee = uas(&env, "uas_rr.xml", uas_port);
    uac(&env, &server, "uac_call.xml", "erin").run().assert_ok("the call after a trap goes through");
    callee.wait().assert_ok("the UAS took the call after the trap");
}

#[test]
fn runaway_route_is_stopped_with_500() {
    let env = TestEnv::new("trap_loop");
    let mut server = trap_server(&env);

    // The CPU deadline (epoch interruption) stops the guest; the 500 must come
    // well within SIPp's own timeout.
    let bound = Duration::from_secs(5);
    let outcome = uac(&env, &server, "uac_expect_500.xml", "loop").run();
    outcome.assert_ok("a runaway route gets 500");
    assert!(outcome.waited < bound, "the 500 took {:?} (bound {bound:?})\n{outcome}", outcome.waited);

    // Twice in a row, then the server still answers.
    uac(&env, &server, "uac_expect_500.xml", "loop").run().assert_ok("a second runaway request gets 500 too");
    let mut others = Vec::new();
    assert!(RawUdp::new().options(server.addr(), Duration::from_secs(5), &mut others).is_some(), "server stopped answering");
    assert!(server.is_running(), "the server exited\n{}", server.log());
}
