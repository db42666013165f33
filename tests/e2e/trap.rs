//! A failing route fails only its own request: a guest that traps, one that
//! runs past its CPU deadline and one past its memory limit all get `500`, and
//! the next call goes through.
//! Runs the `trap_route.wasm` example: an INVITE to user "trap" traps, "loop"
//! spins, "oom" allocates without end, "error" returns `Err`; every other
//! request takes the default route.

use std::time::Duration;

use crate::harness::{RawUdp, Route, Server, ServerConfig, TestEnv, free_ports, mi_call, register, uac, uas};

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

/// A handler that returns `Err` (no trap) gets its request a `500`, is logged
/// with the module and Call-ID and counted in `routes:errors`, not in
/// `runtime:traps`; its instance is sound, so with `instance_reuse` the next
/// call runs in it.
#[test]
fn a_route_returning_an_error_answers_500_and_is_counted() {
    let env = TestEnv::new("trap_error");
    let config = ServerConfig {
        route: Route::Example("trap_route.wasm"),
        mi: true,
        extra_toml: "[limits]\ninstance_reuse = 1000\n".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(&env, config);
    let [uas_port] = free_ports();
    register(&env, &server, &["erin"], uas_port, 600);

    uac(&env, &server, "uac_expect_500.xml", "error").run().assert_ok("a route returning Err gets 500");
    let callee = uas(&env, "uas_rr.xml", uas_port);
    uac(&env, &server, "uac_call.xml", "erin").run().assert_ok("the call after the error goes through");
    callee.wait().assert_ok("the UAS took the call after the error");

    let stats = mi_call(server.mi_addr(), "get_statistics", serde_json::json!([["runtime:", "routes:"]]));
    let stat = |name: &str| stats["result"][name].as_u64().unwrap_or_else(|| panic!("{name} in {stats}"));
    assert_eq!(stat("routes:errors"), 1, "{stats}");
    assert_eq!(stat("runtime:traps"), 0, "{stats}");
    let warned = |log: String| {
        log.lines().any(|l| l.contains("route failed") && l.contains("error requested by") && l.contains("call_id"))
    };
    assert!(
        crate::harness::wait_until(Duration::from_secs(5), || warned(server.log())),
        "no warning naming the error and the Call-ID:\n{}",
        server.log()
    );
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
    assert!(
        RawUdp::new().options(server.addr(), Duration::from_secs(5), &mut others).is_some(),
        "server stopped answering"
    );
    assert!(server.is_running(), "the server exited\n{}", server.log());
}

/// With `instance_reuse`, instances whose invocation returned are reused, and
/// one that trapped, hit its CPU deadline or ran out of memory is not: the
/// calls after each failure go through (a reused trapped instance could not
/// be entered again, so its next request would get 500).
#[test]
fn reused_instances_are_replaced_after_a_trap() {
    let env = TestEnv::new("trap_reuse");
    let config = ServerConfig {
        route: Route::Example("trap_route.wasm"),
        mi: true,
        extra_toml: "[limits]\ninstance_reuse = 1000\n".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(&env, config);
    let [uas_port] = free_ports();
    register(&env, &server, &["erin"], uas_port, 600);

    for user in ["trap", "oom", "loop"] {
        uac(&env, &server, "uac_expect_500.xml", user).run().assert_ok(&format!("a failing route ({user}) gets 500"));
        let callee = uas(&env, "uas_rr.xml", uas_port);
        uac(&env, &server, "uac_call.xml", "erin").run().assert_ok(&format!("the call after {user} goes through"));
        callee.wait().assert_ok(&format!("the UAS took the call after {user}"));
    }

    let stats = mi_call(server.mi_addr(), "get_statistics", serde_json::json!([["runtime:"]]));
    let stat = |name: &str| stats["result"][name].as_u64().unwrap_or_else(|| panic!("{name} in {stats}"));
    let (invocations, instantiations) = (stat("runtime:invocations"), stat("runtime:instantiations"));
    assert_eq!(stat("runtime:traps") + stat("runtime:timeouts"), 3, "{stats}");
    // Each failure costs its instance; the rest mostly reuse (a few more
    // instances appear when invocations overlap, e.g. a reply hook while the
    // request's invocation still runs).
    assert!(instantiations >= 3, "{stats}");
    assert!(instantiations * 2 < invocations, "instances were not reused: {stats}");
}
