//! Transport tests over real sockets on 127.0.0.1 (bounded waits, no sleeps).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::tcp::test_support::drain_for_test;
use super::*;
use crate::shutdown::Shutdown;

/// What the collecting handler saw.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "a test collector")]
enum Seen {
    Msg(Inbound),
    Bad(Bytes, SocketAddr, Proto),
}

struct Collect(mpsc::UnboundedSender<Seen>);

impl InboundHandler for Collect {
    fn on_message(&self, inbound: Inbound) {
        let _ = self.0.send(Seen::Msg(inbound));
    }
    fn on_malformed(&self, raw: Bytes, _err: sip::ParseError, src: SocketAddr, proto: Proto) {
        let _ = self.0.send(Seen::Bad(raw, src, proto));
    }
}

const WAIT: Duration = Duration::from_secs(5);

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: c-{branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("handler saw nothing in time").expect("channel open")
}

async fn bind(specs: &[&str]) -> (Transports, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let specs: Vec<ListenSpec> = specs.iter().map(|s| s.parse().expect("spec")).collect();
    let (t, listeners) = Transports::bind(&specs).await.expect("bind");
    // Never stopped: the loops end with the test's runtime.
    listeners.start(Arc::new(Collect(tx)), &Shutdown::new());
    (t, rx)
}

#[test]
fn listen_spec_parsing() {
    let s: ListenSpec = "udp:127.0.0.1:5060".parse().expect("udp");
    assert_eq!((s.proto, s.addr), (Proto::Udp, "127.0.0.1:5060".parse().expect("addr")));
    let s: ListenSpec = "TCP:[::1]:5070".parse().expect("tcp v6");
    assert_eq!((s.proto, s.addr.port(), s.addr.is_ipv6()), (Proto::Tcp, 5070, true));
    assert_eq!(s.to_string(), "tcp:[::1]:5070");
    assert!(matches!("127.0.0.1:5060".parse::<ListenSpec>(), Err(ListenSpecError::Proto(_))));
    assert!(matches!("tls:127.0.0.1:5061".parse::<ListenSpec>(), Err(ListenSpecError::Proto(p)) if p == "tls"));
    assert!(matches!("udp:127.0.0.1".parse::<ListenSpec>(), Err(ListenSpecError::Addr(_))));
    assert!(matches!("udp:::1:5060".parse::<ListenSpec>(), Err(ListenSpecError::Addr(_))));
    assert!(matches!("udp".parse::<ListenSpec>(), Err(ListenSpecError::Shape(_))));
    let err = "sctp:1.2.3.4:5".parse::<ListenSpec>().expect_err("sctp").to_string();
    assert!(err.contains("sctp"), "{err}");
}

#[tokio::test]
async fn sent_by_and_is_local() {
    let (t, _rx) = bind(&["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]).await;
    let udp = t.listeners()[0].addr;
    let tcp = t.listeners()[1].addr;
    assert_ne!(udp.port(), 0);
    assert_eq!(t.sent_by(Proto::Udp), ("127.0.0.1".to_owned(), udp.port()));
    assert_eq!(t.sent_by(Proto::Tcp), ("127.0.0.1".to_owned(), tcp.port()));
    assert!(t.is_local("127.0.0.1", Some(udp.port())));
    assert!(t.is_local("localhost", Some(tcp.port())));
    assert!(t.is_local("LOCALHOST", Some(udp.port())));
    assert!(!t.is_local("127.0.0.2", Some(udp.port())));
    assert!(!t.is_local("127.0.0.1", Some(1)));
    assert!(!t.is_local("example.com", Some(udp.port())));
    // Port absent means 5060.
    assert_eq!(t.is_local("127.0.0.1", None), udp.port() == 5060 || tcp.port() == 5060);
}

#[tokio::test]
async fn ipv6_sent_by_is_bracketed() {
    let Ok(probe) = UdpSocket::bind("[::1]:0").await else { return }; // no IPv6 here
    drop(probe);
    let (t, _rx) = bind(&["udp:[::1]:0"]).await;
    let port = t.listeners()[0].addr.port();
    assert_eq!(t.sent_by(Proto::Udp), ("[::1]".to_owned(), port));
    assert!(t.is_local("[::1]", Some(port)));
    assert!(t.is_local("::1", Some(port)));
}

#[tokio::test]
async fn udp_receive_send_and_malformed() {
    let (t, mut rx) = bind(&["udp:127.0.0.1:0"]).await;
    let me = t.listeners()[0].addr;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    peer.send_to(options("u1").as_bytes(), me).await.expect("send");
    let Seen::Msg(inb) = next(&mut rx).await else { panic!("expected a message") };
    assert_eq!(inb.proto, Proto::Udp);
    assert_eq!(inb.src, peer.local_addr().expect("addr"));
    assert_eq!(inb.local, me);
    assert_eq!(inb.msg.raw().len(), options("u1").len());

    // Keep-alives are ignored; garbage goes to on_malformed with exactly its bytes.
    peer.send_to(b"\r\n\r\n", me).await.expect("send");
    peer.send_to(b"NOT SIP AT ALL\r\n\r\n", me).await.expect("send");
    match next(&mut rx).await {
        Seen::Bad(raw, src, proto) => {
            assert_eq!(&raw[..], b"NOT SIP AT ALL\r\n\r\n");
            assert_eq!((src, proto), (peer.local_addr().expect("addr"), Proto::Udp));
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    assert_eq!(t.stats().malformed, 1);

    t.send(Proto::Udp, peer.local_addr().expect("addr"), Bytes::from_static(b"hello")).expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf)).await.expect("in time").expect("recv");
    assert_eq!((&buf[..n], from), (&b"hello"[..], me));
    assert_eq!(t.send(Proto::Tcp, me, Bytes::new()), Err(SendError::NoListener(Proto::Tcp)));
}

#[tokio::test]
async fn tcp_framing_and_connection_reuse() {
    let (t, mut rx) = bind(&["tcp:127.0.0.1:0"]).await;
    let me = t.listeners()[0].addr;
    let mut c = TcpStream::connect(me).await.expect("connect");
    let msg = options("t1");
    let (a, b) = msg.as_bytes().split_at(40);
    // Keep-alive, then a message in two writes, then a second one glued to it.
    c.write_all(b"\r\n").await.expect("w");
    c.write_all(a).await.expect("w");
    c.flush().await.expect("f");
    c.write_all(b).await.expect("w");
    c.write_all(options("t2").as_bytes()).await.expect("w");
    for want in ["c-t1", "c-t2"] {
        let Seen::Msg(inb) = next(&mut rx).await else { panic!("expected a message") };
        assert_eq!(inb.proto, Proto::Tcp);
        assert_eq!(inb.msg.call_id().expect("call-id"), want);
        assert_eq!(inb.src, c.local_addr().expect("addr"));
    }
    assert_eq!(t.stats().tcp_connections, 1);
    // A send to the client's address reuses its connection.
    t.send(Proto::Tcp, c.local_addr().expect("addr"), Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n")).expect("send");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, c.read(&mut buf)).await.expect("in time").expect("read");
    assert_eq!(&buf[..n], b"SIP/2.0 200 OK\r\n\r\n");
    // RFC 5626 ping gets a pong.
    c.write_all(b"\r\n\r\n").await.expect("ping");
    let n = tokio::time::timeout(WAIT, c.read(&mut buf)).await.expect("in time").expect("read");
    assert_eq!(&buf[..n], b"\r\n");
    // A clean close removes the connection.
    drop(c);
    let deadline = tokio::time::Instant::now() + WAIT;
    while t.stats().tcp_connections != 0 {
        assert!(tokio::time::Instant::now() < deadline, "connection not removed");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn tcp_send_opens_a_connection() {
    let (t, mut rx) = bind(&["tcp:127.0.0.1:0"]).await;
    let peer = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let dst = peer.local_addr().expect("addr");
    t.send(Proto::Tcp, dst, Bytes::from(options("o1"))).expect("queued");
    t.send(Proto::Tcp, dst, Bytes::from(options("o2"))).expect("queued on the same connection");
    let (mut s, _) = tokio::time::timeout(WAIT, peer.accept()).await.expect("in time").expect("accept");
    let want = options("o1").len() + options("o2").len();
    let mut got = Vec::new();
    while got.len() < want {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("in time").expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, format!("{}{}", options("o1"), options("o2")).into_bytes());
    // What the peer sends back on that connection reaches the handler.
    s.write_all(options("back").as_bytes()).await.expect("w");
    let Seen::Msg(inb) = next(&mut rx).await else { panic!("expected a message") };
    assert_eq!((inb.src, inb.msg.call_id().expect("cid")), (dst, "c-back"));
}

#[tokio::test]
async fn refused_tcp_connect_is_reported_to_every_sender_queued_behind_it() {
    let (t, _rx) = bind(&["tcp:127.0.0.1:0"]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let (failed, mut reports) = mpsc::unbounded_channel();
    for id in ["o1", "o2"] {
        let failed = failed.clone();
        t.send_or_report(Proto::Tcp, closed, Bytes::from(options(id)), move || {
            let _ = failed.send(id);
        })
        .expect("queued while connecting");
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(tokio::time::timeout(WAIT, reports.recv()).await.expect("reported in time").expect("report"));
    }
    got.sort();
    assert_eq!(got, ["o1", "o2"]);
    // The failed connection is gone: a later send opens a new one.
    assert_eq!(t.stats().tcp_connections, 0);
}

#[tokio::test]
async fn tcp_oversized_message_closes_the_connection() {
    let (t, _rx) = bind(&["tcp:127.0.0.1:0"]).await;
    let mut c = TcpStream::connect(t.listeners()[0].addr).await.expect("connect");
    let junk = vec![b'a'; sip::MAX_MESSAGE_SIZE + 10];
    let _ = c.write_all(b"OPTIONS sip:x SIP/2.0\r\nX: ").await;
    let _ = c.write_all(&junk).await;
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(WAIT, c.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)), "expected close, got {r:?}");
}

#[test]
fn framer_handles_keepalive_garbage_and_partial() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let h = Collect(tx);
    let mut buf = BytesMut::from(&b"\r\n\r\n"[..]);
    assert_eq!(drain_for_test(&mut buf, &h), "pong");
    assert!(buf.is_empty());
    let msg = options("f1");
    let mut buf = BytesMut::from(&msg.as_bytes()[..30]);
    assert_eq!(drain_for_test(&mut buf, &h), "more");
    assert_eq!(buf.len(), 30);
    buf.extend_from_slice(&msg.as_bytes()[30..]);
    assert_eq!(drain_for_test(&mut buf, &h), "more");
    assert!(buf.is_empty());
    assert!(matches!(rx.try_recv(), Ok(Seen::Msg(_))));
    let mut buf = BytesMut::from(&b"OPTIONS sip:x SIP/2.0\r\nContent-Length: nope\r\n\r\n"[..]);
    assert_eq!(drain_for_test(&mut buf, &h), "close");
    assert!(matches!(rx.try_recv(), Ok(Seen::Bad(..))));
}

#[tokio::test]
async fn what_arrives_before_start_is_read_once_started() {
    let specs: Vec<ListenSpec> =
        ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"].iter().map(|s| s.parse().expect("spec")).collect();
    let (t, listeners) = Transports::bind(&specs).await.expect("bind");
    let (udp, tcp) = (t.listeners()[0].addr, t.listeners()[1].addr);
    // Bound but not started: the ports are known and the sending side works already.
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    peer.send_to(options("before-u").as_bytes(), udp).await.expect("send");
    let mut c = TcpStream::connect(tcp).await.expect("connect (listen backlog)");
    c.write_all(options("before-t").as_bytes()).await.expect("w");
    // (After an await that ran the I/O driver: a UDP send on a socket the driver has not seen
    // yet finds it not writable and is dropped as a full buffer would be.)
    t.send(Proto::Udp, peer.local_addr().expect("addr"), Bytes::from_static(b"early")).expect("send");
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf)).await.expect("in time").expect("recv");
    assert_eq!(&buf[..n], b"early");

    let (tx, mut rx) = mpsc::unbounded_channel();
    listeners.start(Arc::new(Collect(tx)), &Shutdown::new());
    let mut got = Vec::new();
    for _ in 0..2 {
        let Seen::Msg(inb) = next(&mut rx).await else { panic!("expected a message") };
        got.push(inb.msg.call_id().expect("call-id").to_owned());
    }
    got.sort();
    assert_eq!(got, ["c-before-t", "c-before-u"]);
}

#[tokio::test]
async fn receive_loops_stop_on_the_signal_and_let_go_of_their_sockets() {
    let specs: Vec<ListenSpec> =
        ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"].iter().map(|s| s.parse().expect("spec")).collect();
    let (t, listeners) = Transports::bind(&specs).await.expect("bind");
    let (udp, tcp) = (t.listeners()[0].addr, t.listeners()[1].addr);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = Shutdown::new();
    listeners.start(Arc::new(Collect(tx)), &shutdown);

    // Serving: a datagram, a message on an accepted connection, and an outbound connection.
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    peer.send_to(options("s-u").as_bytes(), udp).await.expect("send");
    assert!(matches!(next(&mut rx).await, Seen::Msg(_)));
    let mut inbound = TcpStream::connect(tcp).await.expect("connect");
    inbound.write_all(options("s-t").as_bytes()).await.expect("w");
    assert!(matches!(next(&mut rx).await, Seen::Msg(_)));
    let far = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let far_addr = far.local_addr().expect("addr");
    t.send(Proto::Tcp, far_addr, Bytes::from(options("s-o"))).expect("queued");
    let (mut outbound, _) = tokio::time::timeout(WAIT, far.accept()).await.expect("in time").expect("accept");
    let mut got = vec![0u8; options("s-o").len()];
    tokio::time::timeout(WAIT, outbound.read_exact(&mut got)).await.expect("in time").expect("read");
    assert_eq!(t.stats().tcp_connections, 2);

    tokio::time::timeout(WAIT, shutdown.stop()).await.expect("every receive loop and connection ended in time");

    // Both connections were closed from our side.
    let mut buf = [0u8; 16];
    for conn in [&mut inbound, &mut outbound] {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf)).await.expect("closed in time").expect("read");
        assert_eq!(n, 0, "expected the connection to be closed");
    }
    assert_eq!(t.stats().tcp_connections, 0);
    // The sockets are closed although `t` is still alive: the ports are free, sends fail.
    drop((inbound, outbound));
    UdpSocket::bind(udp).await.expect("the UDP port is free again");
    TcpListener::bind(tcp).await.expect("the TCP port is free again");
    let to_peer = peer.local_addr().expect("addr");
    assert_eq!(t.send(Proto::Udp, to_peer, Bytes::from_static(b"x")), Err(SendError::Stopped(Proto::Udp)));
    assert_eq!(t.send(Proto::Tcp, far_addr, Bytes::from_static(b"x")), Err(SendError::Stopped(Proto::Tcp)));
}
