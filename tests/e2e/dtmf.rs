//! DTMF detection with event-based routing (`dtmf_detect.wasm`): a call to
//! the PIN service `pin-erin` gets `183` and waits for `E_DTMF` with its
//! Call-ID, which the test raises through the MI (`raise_event` over HTTP
//! JSON-RPC) as a stand-in media server would. The right digit connects the
//! call to erin, a wrong one hangs up with 403; no digit, or only digits for
//! other calls (filters that do not match), end in 408.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Route, Server, ServerConfig, TestEnv, free_ports, mi_call, register, uac, uas};

fn dtmf_server(env: &TestEnv, timeout_s: u32) -> Server {
    let config = ServerConfig { route: Route::Example("dtmf_detect.wasm"), mi: true, ..ServerConfig::default() }
        .var("dtmf_expected", 1)
        .var("dtmf_timeout", timeout_s);
    Server::start(env, config)
}

/// Raises `E_DTMF {callid, digit}` over the MI once the call waits for it.
/// `raise_event` fails with 404 (event never used) or 480 (no subscriber)
/// until the route has subscribed; any other answer ends the retries.
fn raise_dtmf(server: &Server, call_id: &str, digit: &str) {
    let params = json!({"event": "E_DTMF", "params": {"callid": call_id, "digit": digit}});
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = mi_call(server.mi_addr(), "raise_event", params.clone());
        if resp["result"] == "OK" {
            return;
        }
        let code = resp["error"]["code"].as_i64();
        assert!(matches!(code, Some(404 | 480)), "raise_event E_DTMF refused: {resp}");
        assert!(Instant::now() < deadline, "the call never waited for E_DTMF (last answer {resp})\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn right_digit_connects_the_call() {
    let env = TestEnv::new("dtmf_right");
    let server = dtmf_server(&env, 10);
    let [uas_port] = free_ports();
    register(&env, &server, &["erin"], uas_port, 600);
    let callee = uas(&env, "uas_rr.xml", uas_port);

    let caller = uac(&env, &server, "uac_pin_call.xml", "pin-erin").call_id_format("e2e-dtmf-%u").spawn();
    raise_dtmf(&server, "e2e-dtmf-1", "1");
    caller.wait().assert_ok("183, then the call is relayed to erin and answered");
    callee.wait().assert_ok("erin's UAS took the call after the digit");
}

#[test]
fn wrong_digit_hangs_up_with_403() {
    let env = TestEnv::new("dtmf_wrong");
    let server = dtmf_server(&env, 10);
    let caller = uac(&env, &server, "uac_pin_403.xml", "pin-erin").call_id_format("e2e-dtmf-%u").spawn();
    raise_dtmf(&server, "e2e-dtmf-1", "7");
    let outcome = caller.wait();
    outcome.assert_ok("183, then 403 Wrong Digit");
    assert!(
        outcome.waited < Duration::from_secs(8),
        "403 came late ({:?}): not on the digit?\n{outcome}",
        outcome.waited
    );
}

#[test]
fn digits_of_other_calls_do_not_match_and_the_call_times_out() {
    let env = TestEnv::new("dtmf_timeout");
    let server = dtmf_server(&env, 3);
    let started = Instant::now();
    let caller = uac(&env, &server, "uac_pin_408.xml", "pin-erin").call_id_format("e2e-dtmf-%u").spawn();
    // A digit for another Call-ID reaches the waiting subscription's event
    // but not its filter (the event has a subscriber, so the MI accepts it).
    raise_dtmf(&server, "another-call", "1");
    let outcome = caller.wait();
    outcome.assert_ok("183, then 408 when no digit for this call came");
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(2500)..Duration::from_secs(10)).contains(&took),
        "408 after {took:?}: expected after the 3 s wait\n{outcome}"
    );

    // No one waits any more: the MI says so (OpenSIPS: 480), the server runs on.
    let resp = mi_call(
        server.mi_addr(),
        "raise_event",
        json!({"event": "E_DTMF", "params": {"callid": "e2e-dtmf-1", "digit": "1"}}),
    );
    assert_eq!(resp["error"]["code"], 480, "a raise with no subscriber: {resp}");
}
