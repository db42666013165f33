//! [`run`] under a test's shutdown future: it serves until the future completes, then returns
//! having let go of every socket, so the SIP and MI ports can be bound again. Bounded waits.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

use super::*;
use crate::mi::MiConfig;

/// Until the server answers: it compiles the embedded route first, on a busy machine.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Every other wait.
const WAIT: Duration = Duration::from_secs(10);

/// A port free for UDP and TCP alike on 127.0.0.1, for a listener that must name its port
/// (released again at once, so another process could take it meanwhile, as with any probe).
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn options(to: SocketAddr, from: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{from}>;tag={branch}\r\nTo: <sip:{to}>\r\n\
         Call-ID: {branch}@server-test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends OPTIONS until a response with its branch comes back (the listener may not be up yet,
/// so each try waits 200 ms for the answer before sending again).
async fn answers_options(sip: SocketAddr) -> bool {
    let probe = UdpSocket::bind("127.0.0.1:0").await.expect("probe");
    let from = probe.local_addr().expect("addr");
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut buf = vec![0u8; 65_536];
    for attempt in 0.. {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let branch = format!("probe{attempt}");
        probe.send_to(options(sip, from, &branch).as_bytes(), sip).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_millis(200), probe.recv_from(&mut buf)).await;
        if let Ok(Ok((n, _))) = reply {
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("SIP/2.0 ") && text.contains(&branch) {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_when_its_shutdown_future_completes_and_frees_every_port() {
    let port = free_port();
    let sip = SocketAddr::from(([127, 0, 0, 1], port));
    let mi_http = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("MI HTTP port");
    let mi_udp = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("MI UDP port");
    let mut config = Config::default();
    config.server.listen = vec![format!("udp:{sip}"), format!("tcp:{sip}")];
    config.location.db_path = None;
    config.mi = MiConfig { http: mi_http.to_string(), udp: mi_udp.to_string(), ..MiConfig::default() };

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run(config, async move {
        let _ = stopped.await;
    }));
    assert!(answers_options(sip).await, "the server did not answer OPTIONS within {READY_WITHIN:?}");
    let url = format!("http://{mi_http}/mi");
    crate::mi::client::call(&url, "ps", None).await.expect("the MI answers");
    // A TCP connection open across the stop is closed by it.
    let mut open = TcpStream::connect(sip).await.expect("the TCP listener accepts");
    assert!(!server.is_finished(), "run returned before its shutdown future completed");

    let _ = stop.send(());
    tokio::time::timeout(WAIT, server).await.expect("run returned in time").expect("joined").expect("run ended Ok");

    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(WAIT, open.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "the connection is still open: {closed:?}");
    drop(open);
    UdpSocket::bind(sip).await.expect("the SIP UDP port is free again");
    TcpListener::bind(sip).await.expect("the SIP TCP port is free again");
    TcpListener::bind(mi_http).await.expect("the MI HTTP port is free again");
    UdpSocket::bind(mi_udp).await.expect("the MI datagram port is free again");
}
