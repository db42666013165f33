//! MI end-to-end tests: the HTTP and UDP listeners on 127.0.0.1:0 with a
//! real [`MiContext`], JSON-RPC framing and errors, the core, usrloc,
//! statistics and route commands, and the CLI client. Event commands are in
//! `tests_events.rs`. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::client::{self, RemoteError};
use super::*;
use crate::events::EventsConfig;
use crate::location::LocationConfig;
use crate::shutdown::Shutdown;
use crate::sinks;
use crate::sip::{Bytes, Message};
use crate::transaction::{BoxFut, Router, ServerTx, Timers};
use crate::transport::{ListenSpec, Proto};

/// Bound for every wait on the network.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// A running MI on ephemeral ports.
pub(super) struct Mi {
    pub(super) ctx: Arc<MiContext>,
    pub(super) server: MiServer,
    /// What it runs under (stopped by a test, or left to end with the test's runtime).
    pub(super) shutdown: Shutdown,
}

impl Mi {
    pub(super) fn url(&self) -> String {
        format!("http://{}/mi", self.server.http_addr().expect("http enabled"))
    }

    pub(super) fn udp(&self) -> SocketAddr {
        self.server.udp_addr().expect("udp enabled")
    }

    /// One command over HTTP through the CLI client's `call`.
    pub(super) async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let params = (!params.is_null()).then_some(params);
        client::call(&self.url(), method, params).await
    }

    /// A command expected to fail: its JSON-RPC error.
    pub(super) async fn call_err(&self, method: &str, params: Value) -> RemoteError {
        let err = self.call(method, params).await.expect_err("the command fails");
        err.downcast_ref::<RemoteError>().unwrap_or_else(|| panic!("not a JSON-RPC error: {err:#}")).clone()
    }
}

/// A context with an in-memory location table and a fresh event bus.
pub(super) fn context() -> MiContext {
    context_with(&EventsConfig::default())
}

/// As [`context`], with these `[events]` settings.
pub(super) fn context_with(events: &EventsConfig) -> MiContext {
    let location = Location::open(&LocationConfig { db_path: None, ..LocationConfig::default() }).expect("location");
    let flatstore = Flatstore::default();
    let bus = EventBus::new(events, sinks::schemes(None, &flatstore), None).expect("bus");
    MiContext::new(bus, location, RouteSource::Embedded).with_flatstore(flatstore)
}

pub(super) async fn start(ctx: MiContext) -> Mi {
    let cfg = MiConfig { http: "127.0.0.1:0".into(), udp: "127.0.0.1:0".into(), ..MiConfig::default() };
    let ctx = Arc::new(ctx);
    let shutdown = Shutdown::new();
    let server = serve(&cfg, ctx.clone(), &shutdown).await.expect("MI binds");
    Mi { ctx, server, shutdown }
}

/// Sends raw bytes over HTTP/1.1 (`Connection: close`) and returns (status, body).
async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        client::parse_response_at_eof(&raw).expect("HTTP response").expect("complete response")
    };
    tokio::time::timeout(WAIT, exchange).await.expect("HTTP reply in time")
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn http_json(mi: &Mi, body: &str) -> (u16, Value) {
    let (status, body) = raw_http(mi.server.http_addr().expect("http"), &post("/mi", body)).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// One datagram request and its reply (from a fresh socket).
pub(super) async fn udp_call(mi: &Mi, payload: &[u8]) -> Value {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(payload, mi.udp()).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await.expect("reply in time").expect("recv");
    serde_json::from_slice(&buf[..n]).expect("JSON reply")
}

fn register(mi: &Mi, user: &str, contact: &str, call_id: &str) {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=f1\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\n\
         User-Agent: test-ua/1.0\r\n\
         Contact: {contact}\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let msg = Message::parse(Bytes::from(text)).expect("REGISTER parses");
    let outcome = mi.ctx.location.save(&msg, "192.0.2.10:5060".parse().expect("addr"), Proto::Udp);
    assert_eq!(outcome.code, 200, "{}", outcome.reason);
}

#[tokio::test]
async fn core_commands_answer_over_http_and_udp() {
    let mi = start(context()).await;
    let version = mi.call("version", Value::Null).await.expect("version");
    assert!(version["Server"].as_str().is_some_and(|s| s.starts_with("sipbox (")), "{version}");
    let uptime = mi.call("core:uptime", json!({})).await.expect("uptime with {} params (opensips-cli)");
    assert!(uptime["Up time"].as_str().is_some_and(|s| s.ends_with(" [sec]")), "{uptime}");
    assert_eq!(uptime["Now"].as_str().map(str::len), Some(24), "ctime format: {uptime}");
    let ps = mi.call("ps", Value::Null).await.expect("ps");
    let procs = ps["Processes"].as_array().expect("Processes");
    assert_eq!(procs[0]["Type"], "main");
    assert_eq!(procs[0]["PID"], std::process::id());

    let which = mi.call("which", Value::Null).await.expect("which");
    let names: Vec<&str> = which.as_array().expect("array").iter().filter_map(Value::as_str).collect();
    for cmd in ["event_subscribe", "evi:subscribe", "raise_event", "ul_dump", "get_statistics", "reload_routes"] {
        assert!(names.contains(&cmd), "which lists {cmd}");
    }
    let recipes = mi.call("which", json!({"command": "event_subscribe"})).await.expect("which command");
    assert_eq!(recipes, json!([["event", "socket"], ["event", "socket", "expire"]]));
    let evi = mi.call("which", json!(["evi:"])).await.expect("which module");
    assert_eq!(evi, json!(["evi:subscribe", "evi:list", "evi:subscribers", "evi:raise"]));
    assert_eq!(mi.call_err("which", json!(["nope"])).await.code, 404);
    let help = mi.call("help", json!(["ul_dump"])).await.expect("help");
    assert_eq!(help["Exported by"], "usrloc");

    // The same over a datagram, with opensips-cli's string id.
    let reply = udp_call(&mi, br#"{"jsonrpc":"2.0","id":"4711","method":"version","params":[]}"#).await;
    assert_eq!(reply["id"], "4711");
    assert_eq!(reply["result"], version);
}

#[tokio::test]
async fn jsonrpc_errors_follow_opensips() {
    let mi = start(context()).await;
    let (status, reply) = http_json(&mi, "{not json").await;
    assert_eq!((status, reply["error"]["code"].as_i64(), &reply["id"]), (200, Some(-32700), &Value::Null));
    let (_, reply) = http_json(&mi, "5").await;
    assert_eq!(reply["error"]["code"], -32600);
    let (_, reply) = http_json(&mi, r#"{"jsonrpc":"2.0","id":3,"method":"no_such_cmd"}"#).await;
    assert_eq!((reply["error"]["code"].as_i64(), &reply["id"]), (Some(-32601), &json!(3)));
    assert_eq!(reply["error"]["message"], "Method not found");
    let (_, reply) = http_json(&mi, r#"{"jsonrpc":"2.0","id":4,"method":"ps","params":["extra"]}"#).await;
    assert_eq!(reply["error"]["code"], -32602);
    assert_eq!(reply["error"]["message"], "Invalid params");
    let (_, reply) =
        http_json(&mi, r#"{"jsonrpc":"2.0","id":5,"method":"ul_show_contact","params":{"aor":"a","x":1}}"#).await;
    assert!(reply["error"]["data"].as_str().is_some_and(|d| d.contains("unknown parameter 'x'")), "{reply}");
    let (_, reply) = http_json(&mi, r#"{"jsonrpc":"1.0","id":6,"method":"ps"}"#).await;
    assert_eq!((reply["error"]["code"].as_i64(), &reply["id"]), (Some(-32600), &json!(6)));

    // A notification gets no reply; in a batch it is left out.
    let (status, body) =
        raw_http(mi.server.http_addr().expect("http"), &post("/mi", r#"{"jsonrpc":"2.0","method":"ps"}"#)).await;
    assert_eq!((status, body.len()), (204, 0));
    let (_, reply) = http_json(
        &mi,
        r#"[{"jsonrpc":"2.0","id":1,"method":"version"},{"jsonrpc":"2.0","method":"ps"},{"jsonrpc":"2.0","id":2,"method":"nope"}]"#,
    )
    .await;
    let replies = reply.as_array().expect("batch reply");
    assert_eq!(replies.len(), 2);
    assert!(replies[0]["result"]["Server"].is_string() && replies[1]["error"]["code"] == -32601, "{reply}");
    let (_, reply) = http_json(&mi, "[]").await;
    assert_eq!(reply["error"]["code"], -32600);

    // Over UDP: errors are answered, notifications are not (the next reply is
    // the one for the request after the notification).
    let reply = udp_call(&mi, b"\x00garbage").await;
    assert_eq!(reply["error"]["code"], -32700);
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(br#"{"jsonrpc":"2.0","method":"ps"}"#, mi.udp()).await.expect("send");
    sock.send_to(br#"{"jsonrpc":"2.0","id":99,"method":"version"}"#, mi.udp()).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await.expect("in time").expect("recv");
    let reply: Value = serde_json::from_slice(&buf[..n]).expect("json");
    assert_eq!(reply["id"], 99);
}

#[tokio::test]
async fn http_transport_limits_and_paths() {
    let mi = start(context()).await;
    let addr = mi.server.http_addr().expect("http");
    let (status, _) = raw_http(addr, b"GET /mi HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 405);
    let (status, _) = raw_http(addr, &post("/elsewhere", "{}")).await;
    assert_eq!(status, 404);
    let ok = r#"{"jsonrpc":"2.0","id":1,"method":"version"}"#;
    let (status, body) = raw_http(addr, &post("/json", ok)).await;
    assert_eq!(status, 200, "the old mi_json root works too: {}", String::from_utf8_lossy(&body));

    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"version","pad":"{}"}}"#, "x".repeat(MAX_REQUEST_BYTES));
    let (status, body) = raw_http(addr, &post("/mi", &big)).await;
    assert_eq!(status, 413);
    let reply: Value = serde_json::from_slice(&body).expect("JSON-RPC error body");
    assert_eq!(reply["error"]["code"], -32600);
    let huge = b"POST /mi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\nConnection: close\r\n\r\n";
    let (status, _) = raw_http(addr, huge).await;
    assert_eq!(status, 413, "refused from the declared length alone");
    // Without a Content-Length (chunked), the limit still applies while reading.
    let mut chunked =
        b"POST /mi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..(MAX_REQUEST_BYTES / 4096 + 2) {
        chunked.extend_from_slice(format!("1000\r\n{}\r\n", "y".repeat(4096)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = raw_http(addr, &chunked).await;
    assert_eq!(status, 413);
}

/// The findings of issue 17: a browser page on the host could drive the MI
/// (a `text/plain` POST with a foreign Origin, or DNS rebinding's Host).
#[tokio::test]
async fn http_requests_a_browser_could_forge_are_refused() {
    let mi = start(context()).await;
    let addr = mi.server.http_addr().expect("http");
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"event_subscribe","params":["E_UL_CONTACT_INSERT","udp:127.0.0.1:9"]}"#;
    let request = |headers: &str| {
        format!("POST /mi HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    for (headers, want) in [
        ("Host: 127.0.0.1\r\nContent-Type: text/plain\r\n", 415),
        ("Host: 127.0.0.1\r\nContent-Type: text/plain\r\nOrigin: https://evil.example\r\n", 403),
        ("Host: 127.0.0.1\r\nContent-Type: application/json\r\nOrigin: https://evil.example\r\n", 403),
        ("Host: evil.example:8888\r\nContent-Type: application/json\r\n", 403),
    ] {
        let (status, reply) = raw_http(addr, request(headers).as_bytes()).await;
        assert_eq!(status, want, "{headers}: {}", String::from_utf8_lossy(&reply));
    }
    let listed = mi.ctx.bus.subscribers(None).map(|v| v.to_string()).unwrap_or_default();
    assert!(!listed.contains("127.0.0.1:9"), "nothing was subscribed: {listed}");
    let (status, _) =
        raw_http(addr, request("Host: localhost:8888\r\nContent-Type: application/json\r\n").as_bytes()).await;
    assert_eq!(status, 200, "the same request from a local client works");
}

#[tokio::test]
async fn usrloc_commands_show_and_remove_registrations() {
    let mi = start(context()).await;
    register(&mi, "alice", "<sip:alice@192.0.2.10:5060>;q=0.5", "c1");
    register(&mi, "alice", "<sip:alice@192.0.2.11:5060>", "c2");
    register(&mi, "bob", "<sip:bob@192.0.2.12:5060>", "c3");

    let dump = mi.call("ul_dump", Value::Null).await.expect("ul_dump");
    let domain = &dump["Domains"][0];
    assert_eq!(domain["name"], "location");
    let aors = domain["AORs"].as_array().expect("AORs");
    assert_eq!(aors.len(), 2);
    assert_eq!(aors[0]["AOR"], "alice");
    let contacts = aors[0]["Contacts"].as_array().expect("Contacts");
    assert_eq!(contacts.len(), 2);
    let half = contacts.iter().find(|c| c["Q"] == "0.5").expect("the q=0.5 contact");
    assert_eq!(half["Contact"], "sip:alice@192.0.2.10:5060");
    assert_eq!(half["Callid"], "c1");
    assert_eq!(half["Cseq"], 1);
    assert_eq!(half["User-agent"], "test-ua/1.0");
    let expires = half["Expires"].as_u64().expect("seconds left");
    assert!((590..=600).contains(&expires), "{expires}");
    let brief = mi.call("ul_dump", json!(["1"])).await.expect("brief");
    assert_eq!(brief["Domains"][0]["AORs"], json!([{"AOR": "alice"}, {"AOR": "bob"}]));

    let shown = mi.call("ul_show_contact", json!(["location", "sip:bob@example.com"])).await.expect("show");
    assert_eq!(shown["AOR"], "bob");
    assert_eq!(shown["Contacts"][0]["Contact"], "sip:bob@192.0.2.12:5060");
    assert_eq!(
        mi.call_err("ul_show_contact", json!(["carol"])).await,
        RemoteError { code: 404, message: "AOR not found".into(), data: None }
    );
    assert_eq!(mi.call_err("ul_show_contact", json!(["other", "bob"])).await.message, "Table not found");

    mi.call("ul_rm_contact", json!({"aor": "alice", "contact": "sip:alice@192.0.2.11:5060"}))
        .await
        .expect("rm contact");
    assert_eq!(mi.ctx.location.lookup("alice").len(), 1);
    assert_eq!(
        mi.call_err("ul_rm_contact", json!(["alice", "sip:nobody@192.0.2.1"])).await.message,
        "Contact not found"
    );
    assert_eq!(mi.call("ul_rm", json!(["location", "bob"])).await.expect("rm"), json!("OK"));
    assert_eq!(mi.call_err("ul_rm", json!(["bob"])).await.message, "AOR not found");
}

/// A router that does nothing: the core only needs one to exist.
struct NoRoutes;

impl Router for NoRoutes {
    fn on_request(&self, _tx: ServerTx) -> BoxFut {
        Box::pin(async {})
    }
    fn on_reply(&self, _tx: ServerTx, _hook: Arc<str>, _reply: Message) -> BoxFut {
        Box::pin(async {})
    }
    fn on_failure(&self, _tx: ServerTx, _hook: Arc<str>, _best: Message) -> BoxFut {
        Box::pin(async {})
    }
}

#[tokio::test]
async fn statistics_cover_every_layer() {
    let listen: ListenSpec = "udp:127.0.0.1:0".parse().expect("spec");
    // Bound, never started: the statistics need the sending side only.
    let (transports, _not_receiving) = Transports::bind(&[listen]).await.expect("transports");
    let core = Core::new(transports.clone(), Timers::default(), Arc::new(NoRoutes));
    let mi = start(context().with_core(core).with_transports(transports)).await;
    register(&mi, "alice", "<sip:alice@192.0.2.10:5060>", "s1");

    let all = mi.call("get_statistics", json!([["all"]])).await.expect("all");
    for key in [
        "core:timestamp",
        "tm:inuse_transactions",
        "net:udp_send_drops",
        "usrloc:registered_users",
        "usrloc:location-contacts",
        "evi:events_raised",
    ] {
        assert!(all.get(key).is_some_and(Value::is_u64), "{key} in {all}");
    }
    assert!(all.get("runtime:invocations").is_none(), "no runtime in this context");
    let usrloc = mi.call("get_statistics", json!({"statistics": ["usrloc:"]})).await.expect("group");
    assert_eq!(
        usrloc,
        json!({"usrloc:registered_users": 1, "usrloc:location-users": 1, "usrloc:location-contacts": 1})
    );
    let one =
        mi.call("get_statistics", json!([["REGISTERED_USERS", "tm:inuse_transactions", "nope"]])).await.expect("names");
    assert_eq!(one, json!({"usrloc:registered_users": 1, "tm:inuse_transactions": 0}));
    let single = mi.call("get_statistics", json!({"statistics": "net:"})).await.expect("a string is one selector");
    assert_eq!(single.as_object().map(|o| o.len()), Some(5));
    let err = mi.call_err("get_statistics", json!([["nope", "nada:"]])).await;
    assert_eq!((err.code, err.message.as_str()), (404, "Statistics Not Found"));
    assert_eq!(mi.call_err("get_statistics", json!([[]])).await.code, -32602);
    assert_eq!(mi.call_err("get_statistics", json!([[{"x": 1}]])).await.code, -32602);
    assert_eq!(mi.call_err("get_statistics", Value::Null).await.code, -32602);
}

#[tokio::test]
async fn reload_routes_swaps_or_names_the_refusal() {
    let runtime =
        tokio::task::spawn_blocking(|| Runtime::standalone(crate::runtime::Limits::default(), RouteSource::Embedded))
            .await
            .expect("join")
            .expect("embedded route loads");
    let (bus, location) = (runtime.bus().clone(), runtime.location().clone());
    let mi =
        start(MiContext::new(bus.clone(), location.clone(), RouteSource::Embedded).with_runtime(runtime.clone())).await;
    let before = runtime.current().generation;
    let reply = mi.call("reload_routes", Value::Null).await.expect("reload");
    assert_eq!(reply, json!({"main": before + 1}), "the reply names the new generation");
    assert_eq!(runtime.current().generation, before + 1, "the new module generation serves");
    let stats = mi.call("get_statistics", json!([["runtime:", "routes:"]])).await.expect("runtime stats");
    assert_eq!(stats["runtime:reloads"], 1);
    assert_eq!(stats["routes:reloads"], 1);
    assert_eq!(stats["routes:generation"], before + 1);
    let err = mi.call_err("reload_routes", json!({"name": "nope"})).await;
    assert!(err.data.as_deref().is_some_and(|d| d.contains("no route module named \"nope\"")), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("not-a-module.wasm");
    std::fs::write(&bogus, b"this is not wasm").expect("write");
    let bad =
        start(MiContext::new(bus.clone(), location.clone(), RouteSource::File(bogus)).with_runtime(runtime.clone()))
            .await;
    let generation = runtime.current().generation;
    let err = bad.call_err("reload_routes", Value::Null).await;
    assert_eq!((err.code, err.message.as_str()), (500, "Failed to reload"));
    assert!(err.data.as_deref().is_some_and(|d| d.contains("not a WebAssembly binary")), "{err}");
    assert_eq!(runtime.current().generation, generation, "the old module keeps serving");
    let stats = bad.call("get_statistics", json!([["routes:reload_failures"]])).await.expect("stats");
    assert_eq!(stats["routes:reload_failures"], 1);

    let without = start(MiContext::new(bus, location, RouteSource::Embedded)).await;
    assert_eq!(without.call_err("reload_routes", Value::Null).await.code, 500);
}

#[tokio::test]
async fn cli_client_builds_opensips_cli_params() {
    let mi = start(context()).await;
    register(&mi, "alice", "<sip:alice@192.0.2.10:5060>", "k1");
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let stats = client::run_cli(&mi.url(), "get_statistics", &args(&["registered_users", "location-contacts"]))
        .await
        .expect("positional array param");
    assert_eq!(stats, json!({"usrloc:registered_users": 1, "usrloc:location-contacts": 1}));
    let shown = client::run_cli(&mi.url(), "ul_show_contact", &args(&["aor=alice"])).await.expect("named");
    assert_eq!(shown["AOR"], "alice");
    let err = client::run_cli(&mi.url(), "ul_show_contact", &args(&["nobody"])).await.expect_err("404");
    assert_eq!(err.to_string(), "404: AOR not found");
    let err = client::run_cli(&mi.url(), "bogus", &[]).await.expect_err("unknown");
    assert_eq!(err.downcast_ref::<RemoteError>().map(|e| e.code), Some(-32601));

    let url = mi.url();
    mi.shutdown.stop().await;
    let err = client::run_cli(&url, "ps", &[]).await.expect_err("server gone");
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
}

#[tokio::test]
async fn stop_ends_both_listeners_and_frees_their_ports() {
    let mi = start(context()).await;
    let (http, udp) = (mi.server.http_addr().expect("http"), mi.udp());
    // An idle HTTP connection and a datagram request in flight do not hold the stop up.
    let mut idle = TcpStream::connect(http).await.expect("connect");
    let (status, _) = raw_http(http, &post("/mi", r#"{"jsonrpc":"2.0","method":"ps","id":1}"#)).await;
    assert_eq!(status, 200);
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client.send_to(br#"{"jsonrpc":"2.0","method":"ps","id":2}"#, udp).await.expect("send");

    tokio::time::timeout(WAIT, mi.shutdown.stop()).await.expect("the MI stopped in time");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, idle.read(&mut buf)).await.expect("closed in time").expect("read");
    assert_eq!(n, 0, "the idle connection is closed");
    drop(idle);
    tokio::net::TcpListener::bind(http).await.expect("the HTTP port is free again");
    UdpSocket::bind(udp).await.expect("the datagram port is free again");
}

#[test]
fn config_defaults_and_validation() {
    let cfg = MiConfig::default();
    assert_eq!(cfg.http_addr().expect("ok"), Some("127.0.0.1:8888".parse().expect("addr")));
    assert_eq!(cfg.udp_addr().expect("ok"), Some("127.0.0.1:8080".parse().expect("addr")));
    let off: MiConfig = toml::from_str("http = \"\"\nudp = \"\"").expect("parses");
    assert_eq!((off.http_addr().expect("ok"), off.udp_addr().expect("ok")), (None, None));
    let partial: MiConfig = toml::from_str("udp = \"[::1]:9000\"").expect("parses");
    assert_eq!(partial.http, "127.0.0.1:8888");
    assert!(toml::from_str::<MiConfig>("htp = \"x\"").is_err(), "unknown keys are rejected");
    let err = MiConfig { http: "localhost:80".into(), ..MiConfig::default() }.validate().expect_err("not an IP");
    assert!(err.to_string().contains("mi.http"), "{err}");
}
