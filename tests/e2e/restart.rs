//! Persistence: bindings written before a graceful shutdown (SIGTERM, exit 0)
//! are loaded by the next server on the same database, which routes to them.

use crate::harness::{Route, Server, ServerConfig, TestEnv, free_ports, register, uac, uas};

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
