//! HTTP sink tests against a real HTTP/1.1 receiver on 127.0.0.1 (a small
//! scripted server: it records each request and answers from a script).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{HttpSink, Policy};
use crate::events::{Event, EventError, EventsConfig, Params};
use crate::events::{Sink, SinkContext, SinkError};
use crate::sinks::{Flatstore, schemes};

fn parse_socket(socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    ctx.parse(socket)
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the receiver answers to the next request (then 200 when the script is empty).
#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    /// A status with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Read the request, never answer.
    Hang,
}

struct Receiver {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    connections: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(script: &[Reply]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, tx.clone(), script.clone()));
            }
        });
        Receiver { addr, seen, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, waiting at most 5 s.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("no request within 5 s")
            .expect("receiver gone")
    }

    /// Requests already received (after the sink returned, nothing more can come).
    fn count_pending(&mut self) -> usize {
        let mut n = 0;
        while self.seen.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

async fn serve(mut s: TcpStream, tx: mpsc::UnboundedSender<Seen>, script: Arc<Mutex<VecDeque<Reply>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf).await else { return };
        let _ = tx.send(req);
        let reply = script.lock().expect("script").pop_front().unwrap_or(Reply::Status(200));
        let head = match reply {
            Reply::Status(code) => format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok"),
            Reply::RetryAfter(code, secs) => {
                format!("HTTP/1.1 {code} X\r\nRetry-After: {secs}\r\nContent-Length: 0\r\n\r\n")
            }
            Reply::Hang => {
                // Hold the connection until the client gives up and closes it.
                let mut sink = [0u8; 512];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
        };
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request (head + Content-Length body); None on EOF or garbage.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, target) = (start.next()?.to_owned(), start.next()?.to_owned());
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    Some(Seen { method, target, headers, body })
}

fn fast(attempts: u32) -> Policy {
    Policy { timeout: Duration::from_secs(5), attempts, backoff: Duration::from_millis(10) }
}

fn event() -> Event {
    Event::new(
        "E_UL_CONTACT_INSERT",
        Params::new()
            .with("aor", "alice@example.com")
            .with("expires", 3600)
            .with("note", "quote \" and \\ and é")
            .with("callid", crate::events::Value::Null),
    )
}

#[tokio::test]
async fn posts_the_jsonrpc_notification_and_reuses_the_connection() {
    let mut rx = Receiver::start(&[]).await;
    let sink = parse_socket(
        &rx.url("/hooks/sip?token=a%20b"),
        &SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default())),
    )
    .expect("parse via the dispatcher");
    assert!(sink.supports_expire());
    assert!(!sink.retry_on_error(), "the sink retries itself; its failures are final");
    let ev = event();
    sink.deliver(&ev).await.expect("delivered");
    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/hooks/sip?token=a%20b");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("user-agent").is_some_and(|u| u.starts_with("sipbox/")), "{req:?}");
    // Byte-exact OpenSIPS payload, params in raise order.
    assert_eq!(
        String::from_utf8(req.body.clone()).expect("utf8"),
        r#"{"jsonrpc":"2.0","method":"E_UL_CONTACT_INSERT","params":{"aor":"alice@example.com","expires":3600,"note":"quote \" and \\ and é","callid":null}}"#
    );
    let json: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
    assert_eq!(json, ev.to_jsonrpc());

    // Positional params travel as an array; the keep-alive connection is reused.
    let mut p = Params::new();
    p.push_positional("x");
    p.push_positional(7);
    sink.deliver(&Event::new("E_CUSTOM", p)).await.expect("second");
    let req = rx.next().await;
    assert_eq!(String::from_utf8(req.body).expect("utf8"), r#"{"jsonrpc":"2.0","method":"E_CUSTOM","params":["x",7]}"#);
    assert_eq!(rx.connections.load(Ordering::SeqCst), 1, "one pooled connection for both events");
}

#[tokio::test]
async fn retries_5xx_with_the_same_body_then_succeeds() {
    let mut rx = Receiver::start(&[Reply::Status(503), Reply::Status(503), Reply::Status(200)]).await;
    let sink = HttpSink::new(&rx.url("/e"), fast(3)).expect("sink");
    sink.deliver(&event()).await.expect("third attempt succeeds");
    let bodies: Vec<Vec<u8>> =
        [rx.next().await, rx.next().await, rx.next().await].into_iter().map(|s| s.body).collect();
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(rx.count_pending(), 0);
}

#[tokio::test]
async fn gives_up_after_the_bounded_attempts() {
    let mut rx = Receiver::start(&[Reply::Status(500); 5]).await;
    let sink = HttpSink::new(&rx.url("/e"), fast(3)).expect("sink");
    let err = sink.deliver(&event()).await.expect_err("always 500");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(rx.count_pending(), 3, "exactly 3 attempts");
}

#[tokio::test]
async fn client_errors_and_redirects_are_not_retried() {
    for code in [400u16, 404, 302] {
        let mut rx = Receiver::start(&[Reply::Status(code)]).await;
        let sink = HttpSink::new(&rx.url("/e"), fast(3)).expect("sink");
        let err = sink.deliver(&event()).await.expect_err("refused");
        assert!(err.to_string().contains(&code.to_string()), "{err}");
        assert_eq!(rx.count_pending(), 1, "HTTP {code} must not be retried");
    }
    // 429 and 408 are retried.
    let mut rx = Receiver::start(&[Reply::Status(429), Reply::Status(408)]).await;
    let sink = HttpSink::new(&rx.url("/e"), fast(3)).expect("sink");
    sink.deliver(&event()).await.expect("third attempt gets 200");
    assert_eq!(rx.count_pending(), 3);
}

#[tokio::test]
async fn honours_retry_after() {
    let mut rx = Receiver::start(&[Reply::RetryAfter(503, 1)]).await;
    let sink = HttpSink::new(&rx.url("/e"), fast(2)).expect("sink");
    let t0 = Instant::now();
    sink.deliver(&event()).await.expect("second attempt");
    assert!(t0.elapsed() >= Duration::from_secs(1), "waited {:?}", t0.elapsed());
    assert_eq!(rx.count_pending(), 2);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_per_attempt() {
    let mut rx = Receiver::start(&[Reply::Hang, Reply::Hang]).await;
    let policy = Policy { timeout: Duration::from_millis(300), attempts: 2, backoff: Duration::from_millis(10) };
    let sink = HttpSink::new(&rx.url("/slow"), policy).expect("sink");
    let t0 = Instant::now();
    let err = sink.deliver(&event()).await.expect_err("times out");
    let took = t0.elapsed();
    assert!(matches!(err, SinkError::Timeout), "{err:?}");
    assert!(took >= Duration::from_millis(600), "two 300 ms attempts took {took:?}");
    assert!(took < Duration::from_secs(4), "bounded: {took:?}");
    rx.next().await;
    rx.next().await;
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let sink = HttpSink::new(&format!("http://127.0.0.1:{port}/x"), fast(2)).expect("sink");
    let t0 = Instant::now();
    let err = sink.deliver(&event()).await.expect_err("nobody listens");
    assert!(t0.elapsed() < Duration::from_secs(4));
    let text = err.to_string();
    assert!(text.contains(&format!("POST http://127.0.0.1:{port}/x")), "{text}");
    assert!(text.to_lowercase().contains("connect"), "names the cause: {text}");
}

#[tokio::test]
async fn url_credentials_become_basic_auth_and_are_masked() {
    let mut rx = Receiver::start(&[]).await;
    let url = format!("http://alice:s3cret@{}/hook", rx.addr);
    let sink = HttpSink::new(&url, fast(1)).expect("sink");
    assert_eq!(sink.socket(), format!("http://alice:***@{}/hook", rx.addr));
    sink.deliver(&event()).await.expect("delivered");
    let req = rx.next().await;
    assert_eq!(req.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
    assert_eq!(req.target, "/hook");
}

#[tokio::test]
async fn https_to_a_plain_http_peer_fails_cleanly() {
    // A peer that answers plain HTTP to the TLS ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        }
    });
    let sink = HttpSink::new(&format!("https://{addr}/e"), fast(1)).expect("https sink (TLS provider ready)");
    let err = sink.deliver(&event()).await.expect_err("no TLS on the other side");
    assert!(err.to_string().starts_with(&format!("POST https://{addr}/e")), "{err}");
}

#[test]
fn malformed_urls_name_the_problem() {
    let ctx = SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default()));
    for (socket, want) in [
        ("http://", "empty host"),
        ("https://exa mple.com/", "invalid"),
        ("http://h:99999/", "invalid port"),
        ("http://h/#frag", "fragment"),
    ] {
        let err = parse_socket(socket, &ctx).map(|_| ()).expect_err(socket);
        assert!(matches!(err, EventError::BadSocket(_)), "{socket}: {err:?}");
        assert!(err.to_string().to_lowercase().contains(want), "{socket}: {err}");
    }
    assert!(HttpSink::new("ftp://h/x", Policy::default()).is_err_and(|e| e.to_string().contains("scheme")));
    // Canonical form: normalised URL (default port dropped, host lower-cased).
    let s = HttpSink::new("HTTP://Hooks.Example.COM:80/a", Policy::default()).expect("sink");
    assert_eq!(s.socket(), "http://hooks.example.com/a");
}

/// Issue 17, DNS tricks: a host name is checked after it resolves, each time
/// the client connects. With an allow-list leaving out loopback,
/// `localhost` is refused at delivery (the receiver sees nothing) and counted;
/// the configured timeouts come from `[events]`.
#[tokio::test]
async fn host_names_are_checked_after_resolution() {
    let mut rx = Receiver::start(&[]).await;
    let url = rx.url("/e").replace("127.0.0.1", "localhost");
    let cfg =
        EventsConfig { allow_destinations: vec!["10.0.0.0/8".into()], http_timeout_ms: 700, ..EventsConfig::default() };
    let ctx = SinkContext::detached(&cfg, schemes(None, &Flatstore::default()));
    let sink = parse_socket(&url, &ctx).expect("a name parses");
    sink.check().expect("a name is not refused before it resolves");
    let err = sink.deliver(&event()).await.expect_err("localhost resolves to loopback, not in the allow-list");
    assert!(err.to_string().contains("resolved to a refused address"), "{err}");
    assert!(ctx.destinations().refused_deliveries() >= 1);
    assert_eq!(rx.count_pending(), 0, "nothing reached the receiver");
    // A literal is refused at subscribe time.
    let lit = parse_socket(&rx.url("/e"), &ctx).expect("parses");
    assert!(lit.check().expect_err("127.0.0.1").to_string().contains("allow_destinations"));
}
