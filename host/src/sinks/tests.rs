//! Socket parsing (canonical forms, errors) and the flatstore line format.
//! Delivery over real sockets is tested through the bus in `events::tests_sinks`.

use super::*;
use crate::events::{Event, EventError, EventsConfig, Params, Sink, SinkContext, Value};

fn ctx() -> SinkContext {
    SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default()))
}

fn parse_socket(socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    ctx.parse(socket)
}

fn canonical(socket: &str) -> String {
    parse_socket(socket, &ctx()).map(|s| s.socket().to_owned()).unwrap_or_else(|e| format!("ERR {e}"))
}

#[test]
fn canonical_sockets() {
    assert_eq!(canonical("udp:127.0.0.1:9999"), "udp:127.0.0.1:9999");
    assert_eq!(canonical("  udp:LocalHost:9999 "), "udp:localhost:9999");
    assert_eq!(canonical("udp:[::1]:9999"), "udp:[::1]:9999");
    assert_eq!(canonical("udp:[0:0::1]:9999"), "udp:[::1]:9999");
    assert_eq!(canonical("unix:/run/ev.sock"), "unix:/run/ev.sock");
    assert_eq!(canonical("tcp:10.0.0.1:8000"), "tcp:10.0.0.1:8000");
    assert_eq!(canonical("stream:10.0.0.1:8000/method"), "tcp:10.0.0.1:8000/method");
    assert_eq!(canonical("flatstore:/var/log/ev.log"), "flatstore:/var/log/ev.log");
    assert_eq!(canonical("route:E_MY_ROUTE"), "route:E_MY_ROUTE");
    assert_eq!(
        canonical("virtual:FAILOVER   udp:127.0.0.1:1\ttcp:127.0.0.1:2"),
        "virtual:FAILOVER udp:127.0.0.1:1 tcp:127.0.0.1:2"
    );
}

#[test]
fn bad_sockets_name_the_problem() {
    let err = |s: &str| parse_socket(s, &ctx()).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(err("ftp:x"), "unknown event transport in socket 'ftp:x'");
    assert_eq!(err("udp"), "unknown event transport in socket 'udp'");
    assert!(err("udp:1.2.3.4").contains("missing port"));
    assert!(err("udp:1.2.3.4:").contains("missing port"));
    assert!(err("udp:1.2.3.4:abc").contains("port must be a number"));
    assert!(err("udp:::1:5").contains("brackets"));
    assert!(err("udp:[::1:5").contains("unterminated"));
    assert!(err("udp:[zz]:5").contains("bad IPv6"));
    assert!(err("udp:bad/host:5").contains("bad host name"));
    assert!(err("unix:").contains("path"));
    assert!(err("tcp:1.2.3.4:80/").contains("method"));
    assert!(err("route:").contains("route name"));
    assert!(err("route:two words").contains("route name"));
    assert!(err("flatstore:").contains("path"));
    assert!(err("virtual:").contains("policy"));
    assert!(err("virtual:parallel udp:1.2.3.4:5").contains("uppercase"));
    assert!(err("virtual:PARALLEL virtual:FAILOVER").contains("nested"));
    assert!(err("virtual:PARALLEL udp:1.2.3.4").contains("missing port"));
}

#[test]
fn expiry_support_and_match_keys() {
    let c = ctx();
    assert!(!parse_socket("route:r", &c).unwrap().supports_expire(), "route: never expires");
    assert!(parse_socket("udp:1.2.3.4:5", &c).unwrap().supports_expire());
    assert!(parse_socket("tcp:1.2.3.4:5", &c).unwrap().retry_on_error(), "stream reconnects");
    assert!(!parse_socket("udp:1.2.3.4:5", &c).unwrap().retry_on_error());
    let key = |s: &str| parse_socket(s, &c).unwrap().match_key();
    assert_eq!(
        key("virtual:PARALLEL udp:1.1.1.1:1 udp:2.2.2.2:2"),
        key("virtual:PARALLEL udp:2.2.2.2:2 udp:1.1.1.1:1")
    );
    assert_ne!(
        key("virtual:FAILOVER udp:1.1.1.1:1 udp:2.2.2.2:2"),
        key("virtual:FAILOVER udp:2.2.2.2:2 udp:1.1.1.1:1")
    );
}

#[test]
fn flatstore_line_format() {
    let ev = Event::new(
        "E_ACC",
        Params::new()
            .with("callid", "a,b")
            .with("code", 200)
            .with("null", Value::Null)
            .with("empty", "")
            .with("x", "z"),
    );
    assert_eq!(flatstore::line(&ev, ",", false), b"E_ACC,a b,200,,,z\n");
    assert_eq!(flatstore::line(&ev, " | ", false), b"E_ACC | a,b | 200 |  |  | z\n");
    assert_eq!(flatstore::line(&ev, ",", true), b"a b,200,,,z\n");
    assert_eq!(flatstore::line(&Event::new("E_NONE", Params::new()), ",", false), b"E_NONE\n");
}

#[test]
fn flatstore_lines_escape_what_could_break_them() {
    let ev = Event::new("E_X", Params::new().with("a", "l1\nl2\r").with("b", "\\ \t \u{7f} \u{85} \u{2028}"));
    assert_eq!(flatstore::line(&ev, ",", false), b"E_X,l1\\nl2\\r,\\\\ \\t \\x7f \\u{0085} \\u{2028}\n".to_vec());
}
