//! Persistence: bindings written before a graceful shutdown (SIGTERM, exit 0)
//! are loaded by the next server on the same database, which routes to them;
//! and every REGISTER answered 200 survives `kill -9` right after (the 200
//! waits for the commit).

use crate::harness::{Route, Server, ServerConfig, TestEnv, free_ports, mi_call, register, uac, uas};

#[test]
fn registrations_survive_a_restart() {
    let env = TestEnv::new("restart_persist");
    // A route module loaded from a file, to cover that path too.
    let config = ServerConfig { route: Route::Example("default_route.wasm"), ..ServerConfig::default() };
    let mut first = Server::start(&env, config);
    let [uas_port] = free_ports();
    register(&env, &first, &["dave"], uas_port, 3600);

    let status = first.stop();
    assert!(status.success(), "SIGTERM must stop the server with exit code 0, got {status}\n{}", first.log());

    // Same port, same db_path.
    let second = Server::restart(&env, &first);
    let callee = uas(&env, "uas_rr.xml", uas_port);
    uac(&env, &second, "uac_call.xml", "dave").run().assert_ok("a call to a user registered before the restart");
    callee.wait().assert_ok("the UAS registered before the restart took the call");
}

#[test]
fn acknowledged_registrations_survive_kill_9() {
    let env = TestEnv::new("restart_kill9");
    let mut first = Server::start(&env, ServerConfig { mi: true, ..ServerConfig::default() });
    let [contact_port] = free_ports();
    let names: Vec<String> = (0..200).map(|i| format!("k9user{i:03}")).collect();
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    // Every one got its 200 (register asserts it); then at once, no flush.
    register(&env, &first, &users, contact_port, 3600);
    first.kill();

    let second = Server::restart(&env, &first);
    let dump = mi_call(second.mi_addr(), "ul_dump", serde_json::json!({}));
    let aors = dump["result"]["Domains"][0]["AORs"].as_array().map_or(0, Vec::len);
    assert_eq!(aors, 200, "every acknowledged registration is on disk: {dump}");
}

/// SIGTERM drains: a call ringing when it arrives is answered and hung up
/// through the proxy, a new call meanwhile gets 503 with Retry-After, and
/// the server then exits 0.
#[test]
fn sigterm_lets_a_ringing_call_finish_and_turns_new_calls_away() {
    let env = TestEnv::new("restart_drain");
    let mut server = Server::start(&env, ServerConfig { mi: true, ..ServerConfig::default() });
    let [contact_port] = free_ports();
    register(&env, &server, &["erin"], contact_port, 3600);
    // Answers 3 s after ringing.
    let callee = crate::harness::Sipp::new(&env, "uas_rr.xml").local_port(contact_port).arg("-d").arg("3000").spawn();
    let caller = uac(&env, &server, "uac_call.xml", "erin").spawn();
    let mi = server.mi_addr();
    let ringing = crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        // The INVITE relayed to the callee (the REGISTER's server transaction lingers).
        let stats = mi_call(mi, "get_statistics", serde_json::json!({"statistics": ["tm:inuse_client_transactions"]}));
        stats["result"]["tm:inuse_client_transactions"].as_u64().unwrap_or(0) >= 1
    });
    assert!(ringing, "the call was relayed to the callee");
    server.terminate();

    let raw = crate::harness::RawUdp::new();
    let invite = format!(
        "INVITE sip:nobody@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{raw_port};branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:late@127.0.0.1:{raw_port}>;tag=late\r\nTo: <sip:nobody@127.0.0.1:{port}>\r\n\
         Call-ID: late@e2e\r\nCSeq: 1 INVITE\r\nContact: <sip:late@127.0.0.1:{raw_port}>\r\nContent-Length: 0\r\n\r\n",
        port = server.port(),
        raw_port = raw.port(),
        branch = raw.branch(),
    );
    // The signal is handled asynchronously: until it is, this gets 404 (no
    // such user); retry until the drain answers.
    let mut answer = String::new();
    let turned_away = crate::harness::wait_until(std::time::Duration::from_secs(5), || {
        let fresh = invite.replace("late@e2e", &format!("late-{}@e2e", raw.branch()));
        raw.send(server.addr(), fresh.replace("branch=z9hG4bK", &format!("branch=z9hG4bK{}", raw.branch())).as_bytes());
        answer = raw.recv_within(std::time::Duration::from_millis(300)).unwrap_or_default();
        answer.starts_with("SIP/2.0 503")
    });
    assert!(turned_away, "a new call during the drain gets 503: {answer}");
    assert!(answer.contains("Retry-After:"), "{answer}");

    caller.wait().assert_ok("the call ringing at SIGTERM is answered and hung up");
    callee.wait().assert_ok("the callee answered during the drain and got the BYE");
    let status = server.wait_exit(std::time::Duration::from_secs(20));
    assert!(status.success(), "a drained server exits 0, got {status}\n{}", server.log());
}
