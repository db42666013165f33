//! Push notifications with event-based routing, both styles:
//! - `push_notification.wasm` (notify style): the call subscribes to
//!   `E_UL_CONTACT_INSERT`, pushes, waits for new branches; the contact that
//!   registers is injected into the ringing call;
//! - `push_wait.wasm` (direct style): the route pushes and is suspended in
//!   `wait_for_event` until the callee registers, then relays.
//!
//! The push provider is an [`HttpReceiver`]; the woken-up device is a SIPp
//! UAS that registers only after the push arrived. The REGISTER goes out from
//! the UAS's own port just before the UAS takes it (so the Contact and the
//! source agree): an INVITE the proxy sends in between is lost on UDP and
//! retransmitted (Timer A, 500 ms) to the UAS, as with a real network.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::harness::{
    HttpReceiver, LOCALHOST, RawUdp, Route, Server, ServerConfig, TestEnv, free_ports, mi_call, register, status_of,
    uac, uas,
};

/// How long the route may take to send the push once the INVITE is out.
const PUSH_WITHIN: Duration = Duration::from_secs(5);

fn push_server(env: &TestEnv, module: &'static str, receiver: &HttpReceiver, config: ServerConfig) -> Server {
    let config = ServerConfig { route: Route::Example(module), ..config }.var("push_url", receiver.url("/push"));
    Server::start(env, config)
}

/// The push the route sent for `user`'s call `call_id`.
fn assert_push(receiver: &HttpReceiver, user: &str, call_id: &str) {
    let push = receiver.next_within(PUSH_WITHIN).expect("no push request reached the provider");
    assert_eq!(push.method, "POST", "{push:?}");
    assert_eq!(push.path, "/push", "{push:?}");
    assert!(push.header("Content-Type").is_some_and(|t| t.starts_with("application/json")), "{push:?}");
    assert_eq!(push.json(), serde_json::json!({"aor": user, "call_id": call_id}), "{push:?}");
}

/// `[limits] suspend = "replay"`: a guest waiting for an event gives its
/// instance back, and is resumed by replaying its journal in a new one.
fn by_replay(config: ServerConfig) -> ServerConfig {
    ServerConfig { mi: true, extra_toml: "[limits]\nsuspend = \"replay\"\n".into(), ..config }
}

/// The device answers: a push, then a registration, then the call.
fn device_answers_after_push(name: &str, module: &'static str) {
    let env = TestEnv::new(name);
    let receiver = HttpReceiver::start(200);
    let server = push_server(&env, module, &receiver, ServerConfig::default().var("push_timeout", 15));
    let [device_port] = free_ports();

    let caller = uac(&env, &server, "uac_call.xml", "dave").call_id_format("e2e-push-%u").spawn();
    assert_push(&receiver, "dave", "e2e-push-1");

    register(&env, &server, &["dave"], device_port, 600);
    let device = uas(&env, "uas_rr.xml", device_port);
    caller.wait().assert_ok("the call is answered by the device that registered after the push");
    device.wait().assert_ok("the woken-up device took the call");
    assert!(receiver.next_within(Duration::from_millis(300)).is_none(), "a second push was sent for one call");
}

fn runtime_stat(server: &Server, name: &str) -> u64 {
    let stats = mi_call(server.mi_addr(), "get_statistics", serde_json::json!([["runtime:"]]));
    stats["result"][name].as_u64().unwrap_or_else(|| panic!("{name} in {stats}"))
}

/// Direct style with `suspend = "replay"`: while the caller waits the guest
/// holds no instance; on the registration its route runs again, its push,
/// lookups answered from the journal (one push reaches
/// the provider, checked above), and it relays to the device.
#[test]
fn push_wait_by_replay_resumes_when_the_device_registers() {
    let env = TestEnv::new("push_wait_replay");
    let receiver = HttpReceiver::start(200);
    let config = by_replay(ServerConfig::default()).var("push_timeout", 15);
    let server = push_server(&env, "push_wait.wasm", &receiver, config);
    let [device_port] = free_ports();

    let caller = uac(&env, &server, "uac_call.xml", "dave").call_id_format("e2e-replay-%u").spawn();
    assert_push(&receiver, "dave", "e2e-replay-1");
    // Parked: the invocation is alive, its instance is not.
    assert!(
        crate::harness::wait_until(PUSH_WITHIN, || runtime_stat(&server, "runtime:instances_in_use") == 0),
        "the waiting guest still holds an instance"
    );
    assert_eq!(runtime_stat(&server, "runtime:replays"), 0);

    register(&env, &server, &["dave"], device_port, 600);
    let device = uas(&env, "uas_rr.xml", device_port);
    caller.wait().assert_ok("the call is answered by the device that registered after the push");
    device.wait().assert_ok("the woken-up device took the call");
    assert!(receiver.next_within(Duration::from_millis(300)).is_none(), "the replay sent the push again");
    assert_eq!(runtime_stat(&server, "runtime:replays"), 1, "{}", server.log());
    assert_eq!(runtime_stat(&server, "runtime:traps"), 0, "{}", server.log());
}

#[test]
fn push_notification_injects_the_device_that_registers() {
    device_answers_after_push("push_notify_inject", "push_notification.wasm");
}

#[test]
fn push_wait_resumes_when_the_device_registers() {
    device_answers_after_push("push_wait_resume", "push_wait.wasm");
}

#[test]
fn push_notification_rings_the_desk_phone_and_the_device() {
    let env = TestEnv::new("push_notify_desk");
    let receiver = HttpReceiver::start(200);
    let server =
        push_server(&env, "push_notification.wasm", &receiver, ServerConfig::default().var("push_timeout", 15));
    let [desk_port, device_port] = free_ports();
    register(&env, &server, &["dave"], desk_port, 600);

    // The desk phone rings until the device answers; then it is cancelled.
    let desk = uas(&env, "uas_ring.xml", desk_port);
    let caller = uac(&env, &server, "uac_call.xml", "dave").call_id_format("e2e-desk-%u").spawn();
    assert_push(&receiver, "dave", "e2e-desk-1");
    assert!(
        crate::harness::wait_until(PUSH_WITHIN, || desk.messages_so_far().contains("180 Ringing")),
        "the desk phone did not ring\n{}",
        desk.messages_so_far()
    );

    register(&env, &server, &["dave"], device_port, 600);
    let device = uas(&env, "uas_rr.xml", device_port);
    caller.wait().assert_ok("the call is answered by the device");
    device.wait().assert_ok("the device took the call");
    desk.wait().assert_ok("the desk phone was cancelled when the device answered");
}

/// Nobody registers: 480 once the push subscription (or wait) of
/// `push_timeout` = 3 s is over, not before, and not at Timer C.
fn no_registration_gets_480(name: &str, module: &'static str, config: ServerConfig) {
    let env = TestEnv::new(name);
    let receiver = HttpReceiver::start(200);
    // Timer C (60 s) lies beyond SIPp's own 15 s timeout, which bounds the
    // test: a 480 in time can only come from the end of the subscription
    // (notify style) or of the wait (direct style).
    let config = ServerConfig { timer_c_s: Some(60), ..config }.var("push_timeout", 3);
    let server = push_server(&env, module, &receiver, config);

    let outcome = uac(&env, &server, "uac_expect_480.xml", "frank").key("from_user", "caller").run();
    outcome.assert_ok("no registration within the push timeout gets 480");
    assert!(receiver.next_within(PUSH_WITHIN).is_some(), "the route did not push before giving up");
    assert!(
        (Duration::from_millis(2500)..Duration::from_secs(10)).contains(&outcome.waited),
        "480 after {:?}: expected just after the 3 s push timeout, long before Timer C (60 s)\n{outcome}",
        outcome.waited
    );
}

#[test]
fn push_notification_without_registration_gets_480() {
    no_registration_gets_480("push_notify_480", "push_notification.wasm", ServerConfig::default());
}

#[test]
fn push_wait_without_registration_gets_480() {
    no_registration_gets_480("push_wait_480", "push_wait.wasm", ServerConfig::default());
}

#[test]
fn push_wait_by_replay_without_registration_gets_480() {
    no_registration_gets_480("push_wait_replay_480", "push_wait.wasm", by_replay(ServerConfig::default()));
}

/// The provider refuses the push: the caller is not held for nothing.
fn failed_push_gets_480_at_once(name: &str, module: &'static str) {
    let env = TestEnv::new(name);
    let receiver = HttpReceiver::start(503);
    let config = ServerConfig { timer_c_s: Some(30), ..ServerConfig::default() }.var("push_timeout", 30);
    let server = push_server(&env, module, &receiver, config);

    let outcome = uac(&env, &server, "uac_expect_480.xml", "frank").key("from_user", "caller").run();
    outcome.assert_ok("a refused push gets 480");
    assert!(receiver.next_within(PUSH_WITHIN).is_some(), "no push was attempted");
    assert!(outcome.waited < Duration::from_secs(5), "480 took {:?}\n{outcome}", outcome.waited);
}

#[test]
fn push_notification_refused_push_gets_480_at_once() {
    failed_push_gets_480_at_once("push_notify_refused", "push_notification.wasm");
}

#[test]
fn push_wait_refused_push_gets_480_at_once() {
    failed_push_gets_480_at_once("push_wait_refused", "push_wait.wasm");
}

/// The caller CANCELs while the route waits (suspended guest or transaction
/// waiting for branches): 200 for the CANCEL, 487 for the INVITE, nothing
/// more when the wait would have ended, and the server carries on.
fn cancel_while_waiting(name: &str, module: &'static str, config: ServerConfig) {
    let env = TestEnv::new(name);
    let receiver = HttpReceiver::start(200);
    let wait_s = 3;
    let config = ServerConfig { timer_c_s: Some(wait_s), ..config }.var("push_timeout", wait_s);
    let server = push_server(&env, module, &receiver, config);
    let to = server.addr();

    let ua = RawUdp::new();
    let branch = ua.branch();
    let call_id = format!("{branch}@e2e");
    ua.send(to, invite(to, ua.port(), "gina", &branch, &call_id).as_bytes());
    let trying = ua.recv_within(Duration::from_secs(5)).expect("no 100 Trying");
    assert_eq!(status_of(&trying), Some(100), "{trying}");
    // The route is past its push: it waits now (or is about to).
    assert_push(&receiver, "gina", &call_id);

    ua.send(to, cancel(to, ua.port(), "gina", &branch, &call_id).as_bytes());
    let (mut cancel_ok, mut terminated) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cancel_ok.is_none() || terminated.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(msg) = ua.recv_within(left) else {
            panic!("no 200 (CANCEL) and 487 (INVITE): got {cancel_ok:?} / {terminated:?}\n{}", server.log());
        };
        match (status_of(&msg), cseq_method(&msg)) {
            (Some(200), Some("CANCEL")) => cancel_ok = Some(msg),
            (Some(487), Some("INVITE")) => terminated = Some(msg),
            (Some(100 | 180 | 183), Some("INVITE")) => {}
            _ => panic!("unexpected message after CANCEL:\n{msg}"),
        }
    }
    let terminated = terminated.unwrap_or_default();
    let to_line = terminated.lines().find(|l| l.starts_with("To:")).expect("487 without To");
    ua.send(to, ack(to, ua.port(), "gina", &branch, &call_id, to_line).as_bytes());

    // When the wait would have ended, nothing more comes for this call
    // (no 480 after the 487, no 500 from a failed route).
    let quiet_until = Instant::now() + Duration::from_secs(wait_s + 1);
    while let Some(msg) = ua.recv_within(quiet_until.saturating_duration_since(Instant::now())) {
        assert!(
            status_of(&msg) == Some(487),
            "a message after the cancelled call ended (only 487 retransmissions may come):\n{msg}"
        );
    }

    // The server carries on: a call to a registered user goes through.
    let [uas_port] = free_ports();
    register(&env, &server, &["hank"], uas_port, 600);
    let callee = uas(&env, "uas_rr.xml", uas_port);
    uac(&env, &server, "uac_call.xml", "hank").run().assert_ok("a call after the cancelled one");
    callee.wait().assert_ok("the UAS took the call after the cancelled one");
}

#[test]
fn push_wait_cancelled_while_suspended_gets_487() {
    cancel_while_waiting("push_wait_cancel", "push_wait.wasm", ServerConfig::default());
}

#[test]
fn push_wait_by_replay_cancelled_while_parked_gets_487() {
    cancel_while_waiting("push_wait_replay_cancel", "push_wait.wasm", by_replay(ServerConfig::default()));
}

#[test]
fn push_notification_cancelled_while_waiting_for_branches_gets_487() {
    cancel_while_waiting("push_notify_cancel", "push_notification.wasm", ServerConfig::default());
}

/// The method of a message's CSeq header.
fn cseq_method(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("CSeq:")).and_then(|v| v.split_whitespace().nth(1))
}

fn invite(to: SocketAddr, port: u16, user: &str, branch: &str, call_id: &str) -> String {
    format!(
        "INVITE sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {LOCALHOST}:{port};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@{LOCALHOST}:{port}>;tag=c-{branch}\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{LOCALHOST}:{port}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// RFC 3261 9.1: the CANCEL of `invite`, same Request-URI, Via branch, From, To, Call-ID.
fn cancel(to: SocketAddr, port: u16, user: &str, branch: &str, call_id: &str) -> String {
    format!(
        "CANCEL sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {LOCALHOST}:{port};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@{LOCALHOST}:{port}>;tag=c-{branch}\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 CANCEL\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// RFC 3261 17.1.1.3: the ACK of a non-2xx final response, with its To (tag).
fn ack(to: SocketAddr, port: u16, user: &str, branch: &str, call_id: &str, to_line: &str) -> String {
    format!(
        "ACK sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {LOCALHOST}:{port};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@{LOCALHOST}:{port}>;tag=c-{branch}\r\n\
         {to_line}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
