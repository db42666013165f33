//! Digest authentication through the real server with real SIPp digests:
//! with `[auth] required`, a REGISTER without credentials is challenged, a
//! wrong password and an unknown user get the same new challenge, the
//! subscriber registers with hers, and a source that never authenticated
//! cannot remove or replace her bindings (the finding of issue 17: it took
//! her calls).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::harness::{RawUdp, Server, ServerConfig, Sipp, TestEnv, free_ports, mi_call, uac, uas};

fn credentials_csv(env: &TestEnv, rows: &[(&str, &str)]) -> PathBuf {
    let path = env.unique_file("credentials", "csv");
    let mut text = String::from("SEQUENTIAL\n");
    for (user, password) in rows {
        text.push_str(&format!("{user};[authentication username={user} password={password}]\n"));
    }
    std::fs::write(&path, text).expect("write credentials csv");
    path
}

fn status_of(response: &str) -> Option<u16> {
    response.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn only_the_subscriber_can_register_her_aor() {
    let env = TestEnv::new("auth_register");
    // The default algorithms: MD5 first, which SIPp 3.6 (MD5 only, first challenge) answers.
    let config = ServerConfig { mi: true, auth_toml: "required = true\n".into(), ..ServerConfig::default() };
    let server = Server::start(&env, config);
    let added = mi_call(server.mi_addr(), "subscriber_add", json!({"username": "alice", "password": "s3cret-pw"}));
    assert_eq!(added["result"], "OK", "{added}");
    let [contact_port, attacker_port] = free_ports();

    let wrong = credentials_csv(&env, &[("alice", "guess"), ("mallory", "s3cret-pw")]);
    Sipp::new(&env, "register_auth_refused.xml")
        .remote(server.addr())
        .local_port(attacker_port)
        .users(&wrong)
        .calls(2)
        .key("contact_host", "127.0.0.1")
        .key("contact_port", attacker_port)
        .key("expires", 600)
        .run()
        .assert_ok("a wrong password and an unknown user are challenged again, alike");

    let right = credentials_csv(&env, &[("alice", "s3cret-pw")]);
    Sipp::new(&env, "register_auth.xml")
        .remote(server.addr())
        .local_port(contact_port)
        .users(&right)
        .key("contact_host", "127.0.0.1")
        .key("contact_port", contact_port)
        .key("expires", 600)
        .run()
        .assert_ok("alice registers with her password");

    // Without credentials: removing all her bindings, or adding one's own.
    let raw = RawUdp::new();
    for (n, contact, expires) in [(1, "*", 0), (2, "<sip:alice@127.0.0.1:9>", 600)] {
        let register = format!(
            "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{raw_port};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1:{port}>;tag=evil{n}\r\nTo: <sip:alice@127.0.0.1:{port}>\r\n\
             Call-ID: hijack-{n}@e2e\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n\
             Content-Length: 0\r\n\r\n",
            port = server.port(),
            raw_port = raw.port(),
            branch = raw.branch(),
        );
        raw.send(server.addr(), register.as_bytes());
        let answer = raw.recv_within(Duration::from_secs(5)).expect("an answer to the REGISTER");
        assert_eq!(status_of(&answer), Some(401), "{answer}");
        assert!(answer.contains("WWW-Authenticate: Digest realm=\"sipbox\""), "{answer}");
    }

    let contacts = mi_call(server.mi_addr(), "ul_show_contact", json!({"aor": "alice"}));
    let listed = contacts["result"]["Contacts"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "only her own binding: {contacts}");
    assert!(listed[0]["Contact"].as_str().is_some_and(|c| c.contains(&contact_port.to_string())), "{contacts}");

    // Her next call reaches her phone, not the attacker's.
    let phone = uas(&env, "uas_busy.xml", contact_port);
    uac(&env, &server, "uac_expect_486.xml", "alice").run().assert_ok("a call to alice reaches her contact");
    phone.wait().assert_ok("alice's phone got the INVITE");

    let stats = mi_call(server.mi_addr(), "get_statistics", json!({"statistics": ["auth:"]}));
    let stat = |name: &str| stats["result"][format!("auth:{name}")].as_u64().unwrap_or(0);
    assert!(stat("authorized") >= 1 && stat("failed") >= 2 && stat("challenged") >= 5, "{stats}");
}

/// Secure by default: on an address that is not loopback, `sipbox run`
/// refuses to serve an open registrar unless the config says so.
#[test]
fn an_open_registrar_off_loopback_is_refused_at_start() {
    let env = TestEnv::new("auth_refuse_open");
    let [port] = free_ports();
    for (auth, refused) in [("", true), ("required = false\n", false)] {
        let path = env.unique_file("sipbox", "toml");
        let text = format!(
            "[server]\nlisten = [\"udp:0.0.0.0:{port}\"]\n[location]\ndb_path = \"\"\n\
             [auth]\ndb_path = \"\"\n{auth}[mi]\nhttp = \"\"\nudp = \"\"\n"
        );
        std::fs::write(&path, text).expect("write config");
        let log = path.with_extension("log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sipbox"))
            .args(["run", "--config"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn sipbox");
        let exited = crate::harness::wait_child(&mut child, Duration::from_secs(if refused { 20 } else { 3 }));
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if refused {
            let status = exited.expect("sipbox exits instead of serving an open registrar on 0.0.0.0");
            assert!(!status.success(), "{text}");
            assert!(text.contains("[auth] required is unset"), "{text}");
        } else {
            assert!(exited.is_none(), "with required = false it serves: {text}");
        }
    }
}
