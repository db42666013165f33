//! The Event Interface end to end: subscriptions made over the MI, events
//! raised by the registrar (SIPp REGISTERs), by the flood detector and by
//! slow routing, delivered in OpenSIPS's JSON-RPC format to real UDP
//! listeners, and an event route (`route:`) running in a WASM module.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    RawUdp, Route, Server, ServerConfig, TestEnv, free_port, mi_call, options_request, register, status_of,
};

/// A UDP event listener on loopback. Events of one subscriber arrive in
/// order, but events from different subscriptions may interleave, so events
/// read while looking for another one are kept for later.
struct Listener {
    sock: UdpSocket,
    backlog: std::cell::RefCell<Vec<Value>>,
}

impl Listener {
    fn new() -> Listener {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind listener");
        Listener { sock, backlog: Default::default() }
    }

    fn socket(&self) -> String {
        format!("udp:127.0.0.1:{}", self.sock.local_addr().expect("addr").port())
    }

    /// The next event whose method is `name`, within `within`.
    fn next(&self, name: &str, within: Duration) -> Option<Value> {
        let mut backlog = self.backlog.borrow_mut();
        if let Some(i) = backlog.iter().position(|e| e["method"] == name) {
            return Some(backlog.remove(i));
        }
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            let Ok(len) = self.sock.recv(&mut buf) else { return None };
            let event: Value = serde_json::from_slice(&buf[..len]).expect("an event is JSON");
            assert_eq!(event["jsonrpc"], "2.0", "{event}");
            if event["method"] == name {
                return Some(event);
            }
            backlog.push(event);
        }
        None
    }
}

fn subscribe(server: &Server, event: &str, socket: &str) {
    let reply = mi_call(server.mi_addr(), "event_subscribe", json!([event, socket, "60"]));
    assert_eq!(reply["result"], "OK", "event_subscribe {event} {socket}: {reply}");
}

#[test]
fn registrar_events_from_sipp_registers_reach_a_udp_subscriber() {
    let env = TestEnv::new("events_registrar");
    let server = Server::start(&env, ServerConfig { mi: true, ..ServerConfig::default() });
    let listener = Listener::new();
    for event in ["E_UL_AOR_INSERT", "E_UL_CONTACT_INSERT", "E_UL_CONTACT_DELETE", "E_UL_AOR_DELETE"] {
        subscribe(&server, event, &listener.socket());
    }

    let phone = free_port();
    register(&env, &server, &["alice"], phone, 300);
    let aor = listener.next("E_UL_AOR_INSERT", Duration::from_secs(5)).expect("E_UL_AOR_INSERT");
    assert_eq!(aor["params"]["aor"], "alice", "{aor}");
    let contact = listener.next("E_UL_CONTACT_INSERT", Duration::from_secs(5)).expect("E_UL_CONTACT_INSERT");
    let params = &contact["params"];
    assert_eq!(params["aor"], "alice", "{contact}");
    let uri = params["uri"].as_str().unwrap_or_default();
    assert!(uri.starts_with(&format!("sip:alice@127.0.0.1:{phone}")), "{contact}");
    assert!(params["callid"].as_str().is_some_and(|c| !c.is_empty()), "{contact}");
    assert!(params["expires"].as_i64().is_some_and(|e| e > 0), "{contact}");

    register(&env, &server, &["alice"], phone, 0);
    let gone = listener.next("E_UL_CONTACT_DELETE", Duration::from_secs(5)).expect("E_UL_CONTACT_DELETE");
    assert_eq!(gone["params"]["uri"], params["uri"], "{gone}");
    let aor_gone = listener.next("E_UL_AOR_DELETE", Duration::from_secs(5)).expect("E_UL_AOR_DELETE");
    assert_eq!(aor_gone["params"]["aor"], "alice", "{aor_gone}");
}

#[test]
fn pike_blocks_a_flood_and_the_event_route_raises_an_alert() {
    let env = TestEnv::new("events_pike");
    let config = ServerConfig {
        route: Route::Example("event_logger.wasm"),
        mi: true,
        extra_toml: "[pike]\nenabled = true\nsampling_time_unit = 30\nreqs_density_per_unit = 5\n".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(&env, config);
    let listener = Listener::new();
    subscribe(&server, "E_PIKE_BLOCKED", &listener.socket());
    subscribe(&server, "E_PIKE_BLOCKED", "route:blocked");
    subscribe(&server, "E_SECURITY_ALERT", &listener.socket());

    // The flood comes from 127.0.0.2, so the harness's own probes (from
    // 127.0.0.1) stay unaffected.
    let flood = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    flood.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let port = flood.local_addr().expect("addr").port();
    let mut answered = 0;
    let mut buf = vec![0u8; 65536];
    for i in 0..10 {
        let request = options_request(server.addr(), port, &format!("z9hG4bK-flood-{i}"));
        flood.send_to(request.as_bytes(), server.addr()).expect("send");
        if flood.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, 5, "the first reqs_density_per_unit requests are answered, the rest dropped");

    let blocked = listener.next("E_PIKE_BLOCKED", Duration::from_secs(5)).expect("E_PIKE_BLOCKED");
    assert_eq!(blocked["params"]["ip"], "127.0.0.2", "{blocked}");
    let alert = listener.next("E_SECURITY_ALERT", Duration::from_secs(5)).expect("the event route's alert");
    assert_eq!(alert["params"], json!({"kind": "flood", "ip": "127.0.0.2"}), "{alert}");

    let probe = RawUdp::new();
    let reply = probe.options(server.addr(), Duration::from_secs(5), &mut Vec::new());
    assert!(reply.as_deref().and_then(status_of).is_some(), "other sources are still served");
}

#[test]
fn slow_routing_raises_e_core_threshold() {
    let env = TestEnv::new("events_threshold");
    let config = ServerConfig {
        mi: true,
        // Every invocation takes more than a microsecond.
        extra_toml: "[limits]\nexec_msg_threshold_us = 1\n".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(&env, config);
    let listener = Listener::new();
    subscribe(&server, "E_CORE_THRESHOLD", &listener.socket());

    let probe = RawUdp::new();
    probe.send(server.addr(), options_request(server.addr(), probe.port(), &probe.branch()).as_bytes());
    let event = listener.next("E_CORE_THRESHOLD", Duration::from_secs(5)).expect("E_CORE_THRESHOLD");
    let params = &event["params"];
    assert_eq!(params["source"], "msg processing", "{event}");
    assert!(params["time"].as_i64().is_some_and(|t| t > 1), "{event}");
    assert!(params["extra"].as_str().is_some_and(|x| x.starts_with("OPTIONS ")), "{event}");
}

#[test]
fn a_busy_instance_pool_raises_e_core_shm_threshold() {
    let env = TestEnv::new("events_pool");
    let config = ServerConfig {
        mi: true,
        // One running instance is half of the pool.
        extra_toml: "[limits]\nmax_instances = 2\npool_threshold_percent = 50\n".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(&env, config);
    let listener = Listener::new();
    subscribe(&server, "E_CORE_SHM_THRESHOLD", &listener.socket());

    let probe = RawUdp::new();
    probe.send(server.addr(), options_request(server.addr(), probe.port(), &probe.branch()).as_bytes());
    let event = listener.next("E_CORE_SHM_THRESHOLD", Duration::from_secs(5)).expect("E_CORE_SHM_THRESHOLD");
    assert_eq!(event["params"], json!({"usage": 50, "threshold": 50, "used": 1, "size": 2}), "{event}");
}
