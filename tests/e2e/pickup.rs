//! Call pickup with event-based routing (`call_pickup.wasm`): Alice calls Bob
//! (pickup group 1) and Bob's phone rings; Charlie (group 1) calls the pickup
//! service `*8`, which answers him `480 Gone` and raises `E_CALL_PICKUP`;
//! Alice's call, subscribed to it, cancels Bob's branch and rings Charlie's
//! registered phone, which answers.

use std::time::Duration;

use crate::harness::{Route, Server, ServerConfig, TestEnv, free_ports, register, uac, uas, wait_until};

fn pickup_server(env: &TestEnv) -> Server {
    let config = ServerConfig { route: Route::Example("call_pickup.wasm"), ..ServerConfig::default() }
        .var("pickup_group_bob", 1)
        .var("pickup_group_charlie", 1)
        .var("pickup_code", "*8")
        .var("pickup_timeout", 15);
    Server::start(env, config)
}

#[test]
fn pickup_moves_the_ringing_call_to_the_picker() {
    let env = TestEnv::new("pickup_group");
    let server = pickup_server(&env);
    let [bob_port, charlie_port] = free_ports();
    register(&env, &server, &["bob"], bob_port, 600);
    register(&env, &server, &["charlie"], charlie_port, 600);

    // Bob's phone rings and must be cancelled; Charlie's phone answers.
    let bob_phone = uas(&env, "uas_ring.xml", bob_port);
    let charlie_phone = uas(&env, "uas_rr.xml", charlie_port);
    let alice = uac(&env, &server, "uac_call.xml", "bob").spawn();

    // The call subscribed to the pickup event before it was relayed, so a
    // ringing phone means it can be picked up. (A proxy may only CANCEL a
    // branch that sent a provisional response, hence 180, not just INVITE.)
    assert!(
        wait_until(Duration::from_secs(5), || bob_phone.messages_so_far().contains("180 Ringing")),
        "Bob's phone did not ring\n{}",
        bob_phone.messages_so_far()
    );

    uac(&env, &server, "uac_expect_480.xml", "*8")
        .key("from_user", "charlie")
        .run()
        .assert_ok("Charlie's call to the pickup service is answered 480 Gone");

    alice.wait().assert_ok("Alice's call is answered by Charlie's phone");
    charlie_phone.wait().assert_ok("Charlie's phone got Alice's call, answered and was hung up");
    bob_phone.wait().assert_ok("Bob's ringing phone got the CANCEL");
}

#[test]
fn pickup_with_nothing_ringing_is_answered_480_and_calls_still_work() {
    let env = TestEnv::new("pickup_idle");
    let server = pickup_server(&env);
    let [bob_port] = free_ports();
    register(&env, &server, &["bob"], bob_port, 600);

    // No call rings in group 1: the event reaches nobody.
    uac(&env, &server, "uac_expect_480.xml", "*8")
        .key("from_user", "charlie")
        .run()
        .assert_ok("a pickup with nothing to pick up is answered 480 Gone");

    // An ordinary call to a group member still rings and is answered.
    let bob_phone = uas(&env, "uas_rr.xml", bob_port);
    uac(&env, &server, "uac_call.xml", "bob").run().assert_ok("a call to a group member");
    bob_phone.wait().assert_ok("Bob took the call");
}
