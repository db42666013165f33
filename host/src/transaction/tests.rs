//! Proxy core tests over real UDP sockets on 127.0.0.1 with a tiny test router. Timers are
//! shortened (T1 = 10 ms) instead of paused, and every wait is bounded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;
use crate::shutdown::Shutdown;
use crate::sip::{Message, Method};
use crate::transport::{ListenSpec, Transports};

pub(crate) const WAIT: Duration = Duration::from_secs(5);

type OnRequest = Box<dyn Fn(ServerTx) + Send + Sync>;
type OnFailure = Box<dyn Fn(ServerTx, sip::Message) + Send + Sync>;

/// A router whose behaviour each test sets with closures; it records the hooks it ran.
pub(crate) struct TestRouter {
    pub(crate) on_request: Mutex<Option<OnRequest>>,
    pub(crate) on_failure: Mutex<Option<OnFailure>>,
    pub(crate) replies: Mutex<Vec<u16>>,
    /// When set, `on_request` does not return until notified (a route still deciding).
    pub(crate) gate: Mutex<Option<Arc<tokio::sync::Notify>>>,
    /// When set, each reply hook takes a permit first (a hook still running).
    pub(crate) reply_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

impl Router for TestRouter {
    fn on_request(&self, tx: ServerTx) -> BoxFut {
        if let Some(f) = &*self.on_request.lock().expect("lock") {
            f(tx);
        }
        let gate = self.gate.lock().expect("lock").clone();
        Box::pin(async move {
            if let Some(g) = gate {
                g.notified().await;
            }
        })
    }
    fn on_reply(&self, _tx: ServerTx, _hook: Arc<str>, reply: sip::Message) -> BoxFut {
        self.replies.lock().expect("lock").push(reply.status().unwrap_or(0));
        let gate = self.reply_gate.lock().expect("lock").clone();
        Box::pin(async move {
            if let Some(g) = gate {
                g.acquire().await.expect("open").forget();
            }
        })
    }
    fn on_failure(&self, tx: ServerTx, _hook: Arc<str>, best: sip::Message) -> BoxFut {
        if let Some(f) = &*self.on_failure.lock().expect("lock") {
            f(tx, best);
        }
        Box::pin(async {})
    }
}

/// A proxy on 127.0.0.1 and three peers: a UAC and two UASes.
pub(crate) struct Net {
    pub(crate) core: Core,
    pub(crate) proxy: SocketAddr,
    pub(crate) listeners: Vec<ListenSpec>,
    pub(crate) router: Arc<TestRouter>,
    pub(crate) uac: Peer,
    pub(crate) uas: Peer,
    pub(crate) uas2: Peer,
}

pub(crate) struct Peer {
    pub(crate) sock: UdpSocket,
    pub(crate) addr: SocketAddr,
}

impl Peer {
    async fn new() -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind peer");
        let addr = sock.local_addr().expect("addr");
        Peer { sock, addr }
    }

    pub(crate) async fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).await.expect("send");
    }

    /// The next message, parsed; panics after [`WAIT`].
    pub(crate) async fn recv(&self) -> Message {
        self.try_recv(WAIT).await.expect("expected a message in time")
    }

    pub(crate) async fn try_recv(&self, wait: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await.ok()?.expect("recv");
        Some(Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).expect("proxy sent a parsable message"))
    }

    /// The next datagram, unparsed.
    pub(crate) async fn recv_raw(&self) -> String {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf)).await.expect("in time").expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next message that is not a `100 Trying`.
    pub(crate) async fn recv_skip_100(&self) -> Message {
        loop {
            let m = self.recv().await;
            if m.status() != Some(100) {
                return m;
            }
        }
    }

    /// Asserts nothing arrives within `wait` (absence can only be checked with a bound).
    pub(crate) async fn expect_silence(&self, wait: Duration) {
        if let Some(m) = self.try_recv(wait).await {
            panic!("unexpected message: {}", String::from_utf8_lossy(m.raw()));
        }
    }

    pub(crate) fn uri(&self) -> String {
        format!("sip:uas@{}", self.addr)
    }
}

pub(crate) fn fast_timers() -> Timers {
    Timers { t1_ms: 10, t2_ms: 40, t4_ms: 50, timer_c_s: 180, timer_d_ms: 320 }
}

impl Net {
    pub(crate) async fn new(timers: Timers) -> Net {
        Net::with_listeners(timers, &["udp:127.0.0.1:0"]).await
    }

    /// The first listener must be UDP (`proxy` is its address).
    pub(crate) async fn with_listeners(timers: Timers, listen: &[&str]) -> Net {
        let specs: Vec<ListenSpec> = listen.iter().map(|s| s.parse().expect("spec")).collect();
        let (transports, receiving) = Transports::bind(&specs).await.expect("bind");
        let proxy = transports.listeners()[0].addr;
        let listeners = transports.listeners().to_vec();
        let router = Arc::new(TestRouter {
            on_request: Mutex::new(None),
            on_failure: Mutex::new(None),
            replies: Mutex::new(vec![]),
            gate: Mutex::new(None),
            reply_gate: Mutex::new(None),
        });
        let core = Core::new(transports, timers, router.clone());
        // Never stopped: the loops end with the test's runtime.
        receiving.start(Arc::new(core.clone()), &Shutdown::new());
        Net { core, proxy, listeners, router, uac: Peer::new().await, uas: Peer::new().await, uas2: Peer::new().await }
    }

    /// Routes every request to `targets` (ACKs statelessly to the first).
    pub(crate) fn relay_to(&self, targets: Vec<String>, on_failure: bool) {
        *self.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
            let fwd = Forward {
                targets: targets.iter().cloned().map(Target::uri).collect(),
                on_failure: on_failure.then(|| Arc::from("failure")),
                ..Forward::default()
            };
            let _ = tx.relay(fwd);
        }));
    }

    /// The INVITE a UAC sends, with its Via branch.
    pub(crate) fn invite(&self, branch: &str, call: &str) -> String {
        request("INVITE", &format!("sip:bob@{}", self.proxy), self.uac.addr, branch, call, 1, "")
    }
}

/// A request from `from` with one Via.
pub(crate) fn request(
    method: &str,
    ruri: &str,
    from: SocketAddr,
    branch: &str,
    call: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call}\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:alice@{from}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// A response to `req` as a UAS would send it: all Vias, From, To (+tag), Call-ID, CSeq.
pub(crate) fn response_to(req: &Message, code: u16, tag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {}\r\n", sip::reason_phrase(code));
    for v in req.values(sip::HeaderName::Via) {
        s.push_str(&format!("Via: {}\r\n", v.trim()));
    }
    let to = req.header(sip::HeaderName::To).expect("To");
    let to = if code > 100 && !to.contains("tag=") { format!("{to};tag={tag}") } else { to.to_owned() };
    s.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        req.header(sip::HeaderName::From).expect("From"),
        req.call_id().expect("Call-ID"),
        req.header(sip::HeaderName::CSeq).expect("CSeq"),
    ));
    s
}

/// Waits until `f` holds (bounded).
pub(crate) async fn until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn invite_relayed_with_via_and_responses_come_back() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("inv1", "call-1")).await;

    let trying = net.uac.recv().await;
    assert_eq!(trying.status(), Some(100));
    // RFC 3581: the UAC's bare rport comes back filled in, with received.
    let stamped = |m: &Message| {
        let v = m.top_via().expect("via");
        (v.rport, v.received.map(str::to_owned))
    };
    let source = (Some(Some(net.uac.addr.port())), Some(net.uac.addr.ip().to_string()));
    assert_eq!(stamped(&trying), source);

    let fwd = net.uas.recv().await;
    assert_eq!(fwd.method(), Some(&Method::Invite));
    assert_eq!(fwd.request_uri(), Some(net.uas.uri().as_str()));
    assert_eq!(fwd.max_forwards().expect("mf"), Some(69));
    let vias = fwd.vias().expect("vias");
    assert_eq!(vias.len(), 2);
    assert_eq!((vias[0].host, vias[0].port), ("127.0.0.1", Some(net.proxy.port())));
    assert!(vias[0].branch.expect("branch").starts_with("z9hG4bK"));
    assert!(vias[0].rport.is_some());
    assert_eq!(vias[1].branch, Some("z9hG4bKinv1"));
    assert_eq!((vias[1].rport, vias[1].received.map(str::to_owned)), source, "stamp relayed downstream");

    net.uas.send(net.proxy, &response_to(&fwd, 180, "b1")).await;
    let ringing = net.uac.recv_skip_100().await;
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.vias().expect("vias").len(), 1, "our Via popped");
    assert_eq!(stamped(&ringing), source, "stamp relayed back upstream");
    assert_eq!(ringing.to().expect("to").tag(), Some("b1"));

    net.uas.send(net.proxy, &response_to(&fwd, 200, "b1")).await;
    let ok = net.uac.recv().await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.vias().expect("vias").len(), 1);
    // A 2xx retransmission from the UAS is forwarded too (RFC 6026).
    net.uas.send(net.proxy, &response_to(&fwd, 200, "b1")).await;
    assert_eq!(net.uac.recv().await.status(), Some(200));

    // The ACK for the 2xx is a new transaction, routed and forwarded statelessly.
    let ack = request("ACK", &net.uas.uri(), net.uac.addr, "ack1", "call-1", 1, "");
    net.uac.send(net.proxy, &ack).await;
    let got = net.uas.recv().await;
    assert_eq!(got.method(), Some(&Method::Ack));
    assert_eq!(got.vias().expect("vias").len(), 2);
    assert_eq!(got.max_forwards().expect("mf"), Some(69));
    // Timers L and M (64*T1) end both transactions; nothing is left behind.
    until(|| {
        let s = net.core.stats();
        s.server == 0 && s.client == 0
    })
    .await;
}

#[tokio::test]
async fn retransmitted_invite_is_absorbed() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    let inv = net.invite("re1", "call-re");
    net.uac.send(net.proxy, &inv).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    let fwd = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&fwd, 100, "x")).await;
    // The retransmission gets the last provisional again and is not forwarded.
    net.uac.send(net.proxy, &inv).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    net.uas.expect_silence(Duration::from_millis(5)).await; // T1 = 10 ms: no retransmission after a 100
    assert_eq!(net.core.stats().server, 1);
}

#[tokio::test]
async fn non_2xx_is_acked_hop_by_hop_and_forwarded() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("busy1", "call-busy")).await;
    let fwd = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&fwd, 486, "u")).await;
    // Downstream gets the proxy's ACK (17.1.1.3): same branch, CSeq ACK, To with tag.
    let ack = net.uas.recv().await;
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.top_via().expect("via").branch, fwd.top_via().expect("via").branch);
    assert_eq!(ack.cseq().expect("cseq").method, Method::Ack);
    assert_eq!(ack.to().expect("to").tag(), Some("u"));
    let busy = net.uac.recv_skip_100().await;
    assert_eq!(busy.status(), Some(486));
    // The UAC's ACK matches the server transaction and is absorbed (not routed).
    let mut ack_up = request("ACK", &format!("sip:bob@{}", net.proxy), net.uac.addr, "busy1", "call-busy", 1, "");
    ack_up = ack_up.replace("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=u");
    net.uac.send(net.proxy, &ack_up).await;
    net.uas.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn max_forwards_zero_gets_483() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    let req = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "mf0", "call-mf", 1, "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    net.uac.send(net.proxy, &req).await;
    let r = net.uac.recv().await;
    assert_eq!(r.status(), Some(483));
    net.uas.expect_silence(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn loop_gets_482() {
    let net = Net::new(fast_timers()).await;
    // The route sends the request back to this very proxy with the same Request-URI.
    let me = format!("sip:bob@{}", net.proxy);
    net.relay_to(vec![me.clone()], false);
    let req = request("OPTIONS", &me, net.uac.addr, "loop1", "call-loop", 1, "");
    net.uac.send(net.proxy, &req).await;
    let r = net.uac.recv().await;
    assert_eq!(r.status(), Some(482));
}

#[tokio::test]
async fn non_invite_timeout_gives_408() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    let req = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "to1", "call-to", 1, "");
    net.uac.send(net.proxy, &req).await;
    // Timer E retransmits (UDP) ...
    let first = net.uas.recv().await;
    let again = net.uas.recv().await;
    assert_eq!(first.raw(), again.raw());
    // ... and Timer F (64*T1 = 640 ms) ends it with 408 upstream.
    let r = net.uac.recv().await;
    assert_eq!(r.status(), Some(408));
    until(|| net.core.stats().client == 0).await;
}

#[tokio::test]
async fn malformed_request_gets_400_and_unmatched_cancel_481() {
    let net = Net::new(fast_timers()).await;
    let bad = format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbad\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:b@b>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        net.uac.addr
    );
    net.uac.send(net.proxy, &bad).await;
    let r = net.uac.recv_raw().await;
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    assert!(r.contains("z9hG4bKbad"), "{r}");
    assert_eq!(net.core.stats().malformed, 1);

    let cancel = request("CANCEL", "sip:bob@example.com", net.uac.addr, "nope", "call-nope", 1, "");
    net.uac.send(net.proxy, &cancel).await;
    assert_eq!(net.uac.recv().await.status(), Some(481));
}

#[tokio::test]
async fn route_reply_and_provisional_rules() {
    let net = Net::new(fast_timers()).await;
    *net.router.on_request.lock().expect("lock") = Some(Box::new(|tx: ServerTx| {
        assert!(tx.reply(180, "Ringing", &[], None).is_ok());
        assert!(tx.reply(404, "Not Found", &[("X-Why", "test")], None).is_ok());
        assert!(matches!(tx.reply(500, "Again", &[], None), Err(TmError::AlreadyAnswered)));
        assert!(matches!(
            tx.relay(Forward { targets: vec![Target::uri("sip:x@127.0.0.1")], ..Forward::default() }),
            Err(TmError::AlreadyAnswered)
        ));
        assert!(tx.is_answered());
    }));
    net.uac.send(net.proxy, &net.invite("rr1", "call-rr")).await;
    let ringing = net.uac.recv_skip_100().await;
    assert_eq!(ringing.status(), Some(180));
    let tag = ringing.to().expect("to").tag().expect("tag").to_owned();
    let nf = net.uac.recv().await;
    assert_eq!(nf.status(), Some(404));
    assert_eq!(nf.to().expect("to").tag(), Some(tag.as_str()), "one To tag per transaction");
    assert_eq!(nf.header_by_name("X-Why"), Some("test"));
    // Timer G retransmits the 404 until the ACK.
    assert_eq!(net.uac.recv().await.status(), Some(404));
}
