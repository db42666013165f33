//! `[tcp]` limits over real sockets on loopback: connections per source IP, the read
//! timeout of a started message (slowloris), and keep-alives that alone do not keep a
//! connection open. Timeouts are configured at 1 s; every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::shutdown::Shutdown;

const WAIT: Duration = Duration::from_secs(5);

struct Collect(mpsc::UnboundedSender<String>);

impl InboundHandler for Collect {
    fn on_message(&self, inbound: Inbound) {
        let _ = self.0.send(inbound.msg.call_id().unwrap_or_default().to_owned());
    }
    fn on_malformed(&self, _raw: bytes::Bytes, _err: sip::ParseError, _src: SocketAddr, _proto: Proto) {}
}

fn options(call: &str) -> String {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {call}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn serve(cfg: TcpConfig) -> (Transports, SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let specs = ["tcp:127.0.0.1:0".parse::<ListenSpec>().expect("spec")];
    let (t, listeners) = Transports::bind_with(&specs, &cfg).await.expect("bind");
    listeners.start(Arc::new(Collect(tx)), &Shutdown::new());
    let addr = t.listeners()[0].addr;
    (t, addr, rx)
}

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{ip}:0").parse().expect("addr")).expect("bind");
    sock.connect(to).await.expect("connect")
}

/// Sends a message and waits for the server to hand it over: the connection is served.
async fn served(c: &mut TcpStream, call: &str, rx: &mut mpsc::UnboundedReceiver<String>) {
    c.write_all(options(call).as_bytes()).await.expect("write");
    let got = tokio::time::timeout(WAIT, rx.recv()).await.expect("served in time").expect("open");
    assert_eq!(got, call);
}

/// Waits (bounded by `within`) for the server to close `c`: EOF or a reset.
async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let until = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // a pong
        }
    }
}

fn cfg() -> TcpConfig {
    TcpConfig {
        max_connections_per_ip: 2,
        msg_read_timeout_s: 1,
        connection_lifetime_s: 60,
        keepalive_only_lifetime_s: 0,
    }
}

#[tokio::test]
async fn one_ip_cannot_take_every_tcp_connection() {
    let (t, addr, mut rx) = serve(cfg()).await;
    let mut a = connect_from("127.0.0.1", addr).await;
    served(&mut a, "a", &mut rx).await;
    let mut b = connect_from("127.0.0.1", addr).await;
    served(&mut b, "b", &mut rx).await;
    // A third from the same IP is closed at once; another IP is still served.
    let mut c = connect_from("127.0.0.1", addr).await;
    assert!(closed_within(&mut c, WAIT).await, "the third connection from one IP stays open");
    assert_eq!(t.stats().tcp_refused_per_ip, 1);
    let mut other = connect_from("127.0.0.2", addr).await;
    served(&mut other, "other", &mut rx).await;
    // A closed connection gives its IP the slot back.
    drop(a);
    let deadline = Instant::now() + WAIT;
    while t.stats().tcp_connections != 2 {
        assert!(Instant::now() < deadline, "connection not removed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut d = connect_from("127.0.0.1", addr).await;
    served(&mut d, "d", &mut rx).await;
}

#[tokio::test]
async fn a_message_sent_a_byte_at_a_time_is_timed_out() {
    let (t, addr, mut rx) = serve(cfg()).await;
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    // A whole message first: the connection is in use, then one crawls in.
    served(&mut slow, "fast", &mut rx).await;
    let (mut rd, mut wr) = slow.into_split();
    let started = Instant::now();
    let crawl = tokio::spawn(async move {
        for b in options("slow").bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, rd.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the slow message was not timed out: {closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the timeout");
    assert_eq!(t.stats().tcp_timeouts, 1);
    crawl.abort();
}

#[tokio::test]
async fn keepalives_alone_do_not_keep_a_connection_for_ever() {
    let (_t, addr, mut rx) = serve(TcpConfig { keepalive_only_lifetime_s: 1, ..cfg() }).await;
    let mut c = TcpStream::connect(addr).await.expect("connect");
    served(&mut c, "ka", &mut rx).await;
    let started = Instant::now();
    let (mut rd, mut wr) = c.into_split();
    let pinging = tokio::spawn(async move {
        while wr.write_all(b"\r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, rd.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "keep-alives kept the connection: {closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the lifetime");
    pinging.abort();
}
