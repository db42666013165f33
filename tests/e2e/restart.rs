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
