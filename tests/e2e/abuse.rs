//! A hostile or broken route costs only its own request: each abuse of the
//! `trap_route.wasm` example (see its source for the Request-URI users that
//! select them) is stopped by a documented limit (docs/LIMITS.md), shows in
//! `get_statistics`, and the calls around it go through.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    RawUdp, Route, Server, ServerConfig, TestEnv, free_ports, mi_call, register, uac, uas, wait_until,
};

/// The abusive module, with an MI for the statistics and a short wait
/// budget so the waiting abuse ends quickly.
fn abuse_server(env: &TestEnv, limits: &str) -> Server {
    let config = ServerConfig {
        route: Route::Example("trap_route.wasm"),
        mi: true,
        extra_toml: format!("[limits]\n{limits}\n"),
        ..ServerConfig::default()
    };
    Server::start(env, config)
}

fn stats(server: &Server) -> Value {
    mi_call(server.mi_addr(), "get_statistics", json!([["runtime:", "tm:", "ebr:", "routes:"]]))["result"].clone()
}

fn stat(stats: &Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or_else(|| panic!("{name} in {stats}"))
}

/// A call to erin (registered at `uas_port`) goes through: the server still
/// serves others after an abuse.
fn call_goes_through(env: &TestEnv, server: &Server, uas_port: u16, after: &str) {
    let callee = uas(env, "uas_rr.xml", uas_port);
    uac(env, server, "uac_call.xml", "erin").run().assert_ok(&format!("the call after {after} goes through"));
    callee.wait().assert_ok(&format!("the UAS took the call after {after}"));
}

#[test]
fn each_abuse_is_refused_at_its_limit_counted_and_costs_only_its_request() {
    let env = TestEnv::new("abuse_limits");
    let server = abuse_server(&env, "max_wait_s = 2\nmax_parked = 1");
    let [uas_port] = free_ports();
    register(&env, &server, &["erin"], uas_port, 600);

    // Each is answered 500 (the route returns the refusal as its error, or
    // traps), and a normal call follows.
    for abuse in ["recurse", "raise", "subscribe", "branches", "headers", "http"] {
        uac(&env, &server, "uac_expect_500.xml", abuse).run().assert_ok(&format!("{abuse}: 500"));
        call_goes_through(&env, &server, uas_port, abuse);
    }
    // The waiting abuse: parked (a pool slot) until its 2 s of waiting are
    // spent; meanwhile a second one finds the one parked slot taken.
    let waiting = uac(&env, &server, "uac_expect_500.xml", "wait").spawn();
    assert!(
        wait_until(Duration::from_secs(5), || stat(&stats(&server), "runtime:parked") == 1),
        "the waiting route never parked: {}",
        stats(&server)
    );
    uac(&env, &server, "uac_expect_500.xml", "wait").run().assert_ok("a second waiter past max_parked: 500");
    call_goes_through(&env, &server, uas_port, "a refused wait, while another is parked");
    waiting.wait().assert_ok("a route waiting for ever is ended: 500");
    call_goes_through(&env, &server, uas_port, "the waits");

    let s = stats(&server);
    assert_eq!(stat(&s, "runtime:stack_overflows"), 1, "{s}");
    assert!(stat(&s, "runtime:raises_refused") >= 1, "{s}");
    assert!(stat(&s, "runtime:subscriptions_refused") >= 1, "{s}");
    assert!(stat(&s, "tm:branches_refused") >= 1, "{s}");
    assert!(stat(&s, "runtime:edits_refused") >= 1, "{s}");
    assert!(stat(&s, "runtime:http_refused") >= 1, "{s}");
    assert!(stat(&s, "runtime:waits_cut") >= 1, "{s}");
    // Refused at each of its waits, which it retries until its CPU time ends.
    assert!(stat(&s, "runtime:parked_refused") >= 1, "{s}");
    // Both waiters end by spinning once their waits return at once.
    assert_eq!(stat(&s, "runtime:cpu_exceeded"), 2, "{s}");
    // Nothing is left behind: the subscriptions went with their
    // transactions, no guest is parked.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let s = stats(&server);
            stat(&s, "ebr:notify_subscriptions") == 0 && stat(&s, "ebr:waiters") == 0 && stat(&s, "runtime:parked") == 0
        }),
        "subscriptions or waiters left: {}",
        stats(&server)
    );

    // The refusals name their limit, after exactly that many calls.
    let log = server.log();
    for expected in [
        "raise-event refused after 100 calls",
        "notify-on-event refused after 16 calls",
        // 12 branches: the Request-URI's and 11 appended.
        "append-branch refused after 11 calls",
        "rest.get refused after 16 calls",
        "max_edit_bytes",
        "overflowed its",
        "CPU limit",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
}

#[test]
fn a_trap_in_any_export_or_a_log_flood_costs_only_its_own_call() {
    let env = TestEnv::new("abuse_exports");
    let server = abuse_server(&env, "");
    let [uas_port] = free_ports();
    register(&env, &server, &["erin"], uas_port, 600);

    // on-reply traps for the 180 and the 200: the replies go on regardless.
    let callee = uas(&env, "uas_rr.xml", uas_port);
    uac(&env, &server, "uac_call.xml", "reply-trap").run().assert_ok("a call whose on-reply traps completes");
    callee.wait().assert_ok("the UAS took the call whose on-reply traps");
    // on-failure traps: the best response goes upstream.
    let busy = uas(&env, "uas_busy.xml", uas_port);
    uac(&env, &server, "uac_expect_486.xml", "failure-trap").run().assert_ok("on-failure traps: the 486 still comes");
    busy.wait().assert_ok("the UAS answered busy");
    let traps_so_far = stat(&stats(&server), "runtime:traps");
    assert!(traps_so_far >= 3, "on-reply (180, 200) and on-failure traps: {}", stats(&server));

    // on-notify traps: the event comes, the notification's instance traps,
    // and the call waiting for branches gets its 408 when the 5 s
    // subscription expires.
    let waiting = uac(&env, &server, "uac_expect_408.xml", "notify-trap").spawn();
    assert!(
        wait_until(Duration::from_secs(5), || stat(&stats(&server), "ebr:notify_subscriptions") == 1),
        "the call never subscribed: {}",
        stats(&server)
    );
    let raised = mi_call(server.mi_addr(), "raise_event", json!(["E_ABUSE"]));
    assert_eq!(raised["result"], "OK", "{raised}");
    assert!(
        wait_until(Duration::from_secs(5), || stat(&stats(&server), "runtime:traps") > traps_so_far),
        "on-notify did not trap: {}",
        stats(&server)
    );
    waiting.wait().assert_ok("the call whose on-notify trapped gets 408 at its subscription's expiry");

    // on-event traps: an event route delivery.
    let traps_so_far = stat(&stats(&server), "runtime:traps");
    let subscribed = mi_call(server.mi_addr(), "event_subscribe", json!(["E_ABUSE_ROUTE", "route:trap", "60"]));
    assert_eq!(subscribed["result"], "OK", "{subscribed}");
    let raised = mi_call(server.mi_addr(), "raise_event", json!(["E_ABUSE_ROUTE"]));
    assert_eq!(raised["result"], "OK", "{raised}");
    assert!(
        wait_until(Duration::from_secs(5), || stat(&stats(&server), "runtime:traps") > traps_so_far),
        "on-event did not trap: {}",
        stats(&server)
    );

    // A log flood: its first 100 lines are written, the rest dropped and
    // counted, and the call is routed.
    let callee = uas(&env, "uas_rr.xml", uas_port);
    uac(&env, &server, "uac_call.xml", "logs").run().assert_ok("a call whose route floods the log completes");
    callee.wait().assert_ok("the UAS took the call whose route flooded the log");
    assert_eq!(stat(&stats(&server), "runtime:log_lines_dropped"), 9_900, "{}", stats(&server));
    let log = server.log();
    assert_eq!(log.matches("log flood line").count(), 100, "lines written past max_log_lines");
    assert_eq!(log.matches("route log lines dropped").count(), 1, "the drop is said once");

    call_goes_through(&env, &server, uas_port, "the traps and the flood");
    let mut others = Vec::new();
    assert!(RawUdp::new().options(server.addr(), Duration::from_secs(5), &mut others).is_some(), "no OPTIONS answer");
}
