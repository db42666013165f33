//! `xmlrpc:` against a real XML-RPC server: Python's `xmlrpc.server`, started
//! per test on a free loopback port, which prints every call it receives
//! (path, headers, method, params) as a JSON line the test reads back.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::*;
use crate::events::{EventBus, EventsConfig, Params};
use crate::sinks::{Flatstore, schemes};

/// Prints `{"path","ua","ctype","method","params"}` per call; answers `True`.
const SERVER: &str = r#"
import json, sys
from xmlrpc.server import SimpleXMLRPCServer, SimpleXMLRPCRequestHandler
class H(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2", "/hooks/evi")
    def log_message(self, *a): pass
    def decode_request_content(self, data):
        H.last = {"path": self.path, "ua": self.headers.get("User-Agent"), "ctype": self.headers.get("Content-type")}
        return data
class S(SimpleXMLRPCServer):
    def _dispatch(self, method, params):
        print(json.dumps(dict(H.last, method=method, params=list(params))), flush=True)
        return True
srv = S(("127.0.0.1", 0), requestHandler=H, logRequests=False, allow_none=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct PyServer {
    _child: Child,
    port: u16,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PyServer {
    async fn start() -> PyServer {
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is needed for the xmlrpc tests");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("server started in time")
            .expect("read")
            .expect("port line")
            .trim()
            .parse()
            .expect("port");
        PyServer { _child: child, port, lines }
    }

    async fn next_call(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("a call within 10 s")
            .expect("read")
            .expect("a line");
        serde_json::from_str(&line).expect("json line")
    }
}

fn bus(cfg: &EventsConfig) -> EventBus {
    EventBus::new(cfg, schemes(None, &Flatstore::default()), None).expect("bus")
}

fn event() -> Event {
    Event::new("E_XMLRPC_TEST", Params::new().with("caller", "alice <a&b>").with("code", 200i64))
}

#[tokio::test]
async fn delivers_the_opensips_method_call_to_a_python_server() {
    let mut srv = PyServer::start().await;
    let b = bus(&EventsConfig::default());
    b.subscribe("E_XMLRPC_TEST", &format!("xmlrpc:127.0.0.1:{}:sipbox.event", srv.port), None).expect("subscribe");
    assert_eq!(b.raise(event()), 1);
    let call = srv.next_call().await;
    assert_eq!(call["path"], "/RPC2");
    assert_eq!(call["method"], "sipbox.event");
    assert_eq!(call["ctype"], "text/xml");
    assert!(call["ua"].as_str().unwrap_or_default().contains("XMLRPC Notifier"), "{call}");
    // OpenSIPS without use_struct_param: a <name> before each value, which an
    // XML-RPC parser reads as one more string.
    assert_eq!(call["params"], serde_json::json!(["E_XMLRPC_TEST", "caller", "alice <a&b>", "code", 200]));
}

#[tokio::test]
async fn struct_params_and_a_custom_path() {
    let mut srv = PyServer::start().await;
    let b = bus(&EventsConfig { xmlrpc_use_struct_param: true, ..EventsConfig::default() });
    let socket = format!("xmlrpc:127.0.0.1:{}/hooks/evi:notify", srv.port);
    b.subscribe("E_XMLRPC_TEST", &socket, None).expect("subscribe");
    b.raise(event());
    let call = srv.next_call().await;
    assert_eq!(call["path"], "/hooks/evi");
    assert_eq!(call["method"], "notify");
    assert_eq!(call["params"], serde_json::json!(["E_XMLRPC_TEST", {"caller": "alice <a&b>"}, {"code": 200}]));
    // A path the server does not serve answers 404: a failed delivery.
    let wrong = format!("xmlrpc:127.0.0.1:{}/nowhere:notify", srv.port);
    let sink = parse(
        wrong.strip_prefix("xmlrpc:").unwrap_or_default(),
        &SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default())),
    )
    .expect("sink");
    let err = sink.deliver(&event()).await.expect_err("404");
    assert!(err.to_string().contains("404"), "{err}");
}

#[test]
fn sockets_parse_like_opensips() {
    let ctx = SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default()));
    let canon = |s: &str| ctx.parse(s).map(|s| s.socket().to_owned()).unwrap_or_else(|e| format!("ERR {e}"));
    assert_eq!(canon("xmlrpc:127.0.0.1:8080:m"), "xmlrpc:127.0.0.1:8080:m");
    assert_eq!(canon("xmlrpc:Host.Example:80/x/y:a.b"), "xmlrpc:host.example:80/x/y:a.b");
    assert_eq!(canon("xmlrpc:[::1]:80:m"), "xmlrpc:[::1]:80:m");
    for (bad, why) in [
        ("xmlrpc:h", "missing port"),
        ("xmlrpc:h:80", "missing method"),
        ("xmlrpc:h:80:", "bad method"),
        ("xmlrpc:h:x:m", "port must be a number"),
        ("xmlrpc:h:80/a b:m", "bad path"),
    ] {
        assert!(canon(bad).contains(why), "{bad}: {}", canon(bad));
    }
    let refused = ctx.parse("xmlrpc:169.254.169.254:80:m").expect("parses").check().expect_err("metadata");
    assert!(refused.to_string().contains("deny_destinations"), "{refused}");
}

#[test]
fn body_is_escaped_xml() {
    let ev = Event::new("E_X", Params::new().with("v", "</string><int>1"));
    let b = body("m", &ev, false);
    assert!(b.contains("<string>&lt;/string&gt;&lt;int&gt;1</string>"), "{b}");
    assert!(b.starts_with("<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n"), "{b}");
}
