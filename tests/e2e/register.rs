//! Registrar: several users register, a query lists the bindings, `Expires: 0`
//! removes one (its calls then get 404 while the others still reach their
//! contact), and REGISTER works over TCP too.

use crate::harness::{Server, ServerConfig, Sipp, TestEnv, free_port, free_ports, register, uac, uas};

const USERS: [&str; 5] = ["user00", "user01", "user02", "user03", "user04"];

#[test]
fn several_users_register_and_one_unregisters() {
    let env = TestEnv::new("register_several");
    let server = Server::start(&env, ServerConfig::default());
    let [contact_port] = free_ports();

    // Five REGISTERs, each must get 200.
    register(&env, &server, &USERS, contact_port, 600);

    // A REGISTER without Contact is a query: each 200 lists the binding.
    let csv = env.users_csv(&USERS);
    Sipp::new(&env, "register_query.xml")
        .remote(server.addr())
        .local_port(free_port())
        .users(&csv)
        .calls(5)
        .rate(100)
        .run()
        .assert_ok("query each user's bindings");

    // Expires 0 removes user00's only contact: 200, then calls to it get 404.
    register(&env, &server, &["user00"], contact_port, 0);
    uac(&env, &server, "uac_expect_404.xml", "user00").run().assert_ok("INVITE to an unregistered user gets 404");

    // user01 is still bound: its INVITE reaches the contact, which is busy.
    let busy = uas(&env, "uas_busy.xml", contact_port);
    uac(&env, &server, "uac_expect_486.xml", "user01").run().assert_ok("INVITE to a registered user is relayed");
    busy.wait().assert_ok("the registered contact got the INVITE and the ACK of its 486");
}

#[test]
fn register_over_tcp() {
    let env = TestEnv::new("register_tcp");
    let server = Server::start(&env, ServerConfig::default());
    let [sipp_port, contact_port] = free_ports();
    let csv = env.users_csv(&["tcpuser"]);
    Sipp::new(&env, "register.xml")
        .tcp()
        .remote(server.addr())
        .local_port(sipp_port)
        .users(&csv)
        .key("contact_host", "127.0.0.1")
        .key("contact_port", contact_port)
        .key("expires", 600)
        .run()
        .assert_ok("REGISTER over TCP gets 200");

    // The binding made over TCP is visible to a query over UDP.
    Sipp::new(&env, "register_query.xml")
        .remote(server.addr())
        .local_port(free_port())
        .users(&csv)
        .run()
        .assert_ok("query over UDP lists the TCP-registered binding");
}
