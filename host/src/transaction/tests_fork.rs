//! Proxy core tests for CANCEL, forking, best response, Timer C and TCP (real sockets,
//! short timers, bounded waits).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tests::{Net, WAIT, fast_timers, request, response_to, until};
use super::*;
use crate::sip::{HeaderName, Message, Method};
use crate::transport::Proto;

fn branch_of(m: &Message) -> String {
    m.top_via().expect("via").branch.expect("branch").to_owned()
}

#[tokio::test]
async fn cancel_answers_200_cancels_downstream_and_487_upstream() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("c1", "call-c1")).await;
    let fwd = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&fwd, 180, "t")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(180));

    let cancel = request("CANCEL", &format!("sip:bob@{}", net.proxy), net.uac.addr, "c1", "call-c1", 1, "");
    net.uac.send(net.proxy, &cancel).await;
    let ok = net.uac.recv().await;
    assert_eq!((ok.status(), ok.cseq().expect("cseq").method), (Some(200), Method::Cancel));

    // 9.1: the CANCEL downstream copies the forwarded INVITE's R-URI, Call-ID, From, To,
    // CSeq number and has one Via equal to the INVITE's.
    let c = net.uas.recv().await;
    assert_eq!(c.method(), Some(&Method::Cancel));
    assert_eq!(c.request_uri(), fwd.request_uri());
    assert_eq!(c.vias().expect("vias").len(), 1);
    assert_eq!(branch_of(&c), branch_of(&fwd));
    assert_eq!(c.cseq().expect("cseq").seq, 1);
    assert_eq!(c.call_id().expect("cid"), "call-c1");
    assert_eq!(c.header(HeaderName::From), fwd.header(HeaderName::From));

    net.uas.send(net.proxy, &response_to(&c, 200, "t")).await;
    net.uas.send(net.proxy, &response_to(&fwd, 487, "t")).await;
    let ack = net.uas.recv().await;
    assert_eq!(ack.method(), Some(&Method::Ack));
    let r = net.uac.recv().await;
    assert_eq!(r.status(), Some(487));
    assert_eq!(r.cseq().expect("cseq").method, Method::Invite);
    until(|| net.core.stats() == TmStats { server: 0, client: 0, ..net.core.stats() }).await;
}

#[tokio::test]
async fn cancel_before_any_provisional_waits_for_one() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("c2", "call-c2")).await;
    let fwd = net.uas.recv().await;
    let cancel = request("CANCEL", &format!("sip:bob@{}", net.proxy), net.uac.addr, "c2", "call-c2", 1, "");
    net.uac.send(net.proxy, &cancel).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(200));
    // 9.1: no CANCEL until the branch answered provisionally (the INVITE is retransmitted meanwhile).
    loop {
        let m = net.uas.recv().await;
        assert_eq!(m.method(), Some(&Method::Invite), "CANCEL sent before a provisional");
        if m.raw() == fwd.raw() {
            break;
        }
    }
    net.uas.send(net.proxy, &response_to(&fwd, 100, "t")).await;
    let c = loop {
        let m = net.uas.recv().await;
        if m.method() == Some(&Method::Cancel) {
            break m;
        }
    };
    assert_eq!(branch_of(&c), branch_of(&fwd));
    net.uas.send(net.proxy, &response_to(&fwd, 487, "t")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(487));
}

#[tokio::test]
async fn cancel_while_the_route_decides_answers_487_and_relay_fails() {
    let net = Net::new(fast_timers()).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    *net.router.gate.lock().expect("lock") = Some(gate.clone());
    let held: Arc<std::sync::Mutex<Option<ServerTx>>> = Arc::default();
    let h = held.clone();
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        *h.lock().expect("lock") = Some(tx);
    }));
    net.uac.send(net.proxy, &net.invite("c3", "call-c3")).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    let cancel = request("CANCEL", &format!("sip:bob@{}", net.proxy), net.uac.addr, "c3", "call-c3", 1, "");
    net.uac.send(net.proxy, &cancel).await;
    let mut codes = vec![net.uac.recv().await.status(), net.uac.recv().await.status()];
    codes.sort();
    assert_eq!(codes, vec![Some(200), Some(487)]);
    let tx = held.lock().expect("lock").clone().expect("routed");
    let r = tx.relay(Forward { targets: vec![Target::uri(net.uas.uri())], ..Forward::default() });
    assert!(matches!(r, Err(TmError::AlreadyAnswered) | Err(TmError::Completed)), "{r:?}");
    gate.notify_one();
    net.uas.expect_silence(Duration::from_millis(30)).await;
}

#[tokio::test]
async fn parallel_fork_first_2xx_wins_and_others_are_cancelled() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri(), net.uas2.uri()], false);
    net.uac.send(net.proxy, &net.invite("p1", "call-p1")).await;
    let f1 = net.uas.recv().await;
    let f2 = net.uas2.recv().await;
    assert_ne!(branch_of(&f1), branch_of(&f2), "one branch parameter per fork");
    assert_eq!(f2.request_uri(), Some(net.uas2.uri().as_str()));
    net.uas.send(net.proxy, &response_to(&f1, 180, "one")).await;
    net.uas2.send(net.proxy, &response_to(&f2, 180, "two")).await;
    let mut tags = vec![];
    for _ in 0..2 {
        let r = net.uac.recv_skip_100().await;
        assert_eq!(r.status(), Some(180));
        tags.push(r.to().expect("to").tag().expect("tag").to_owned());
    }
    tags.sort();
    assert_eq!(tags, vec!["one", "two"]);
    net.uas.send(net.proxy, &response_to(&f1, 200, "one")).await;
    assert_eq!(net.uac.recv().await.status(), Some(200));
    let c = net.uas2.recv().await;
    assert_eq!(c.method(), Some(&Method::Cancel));
    assert_eq!(branch_of(&c), branch_of(&f2));
    net.uas2.send(net.proxy, &response_to(&c, 200, "two")).await;
    net.uas2.send(net.proxy, &response_to(&f2, 487, "two")).await;
    assert_eq!(net.uas2.recv().await.method(), Some(&Method::Ack));
    // The cancelled branch's 487 does not go upstream after the 200.
    net.uac.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn serial_fork_from_on_failure() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], true);
    let next = net.uas2.uri();
    *net.router.on_failure.lock().expect("lock") = Some(Box::new(move |tx: ServerTx, best: Message| {
        assert_eq!(best.status(), Some(486));
        tx.relay(Forward { targets: vec![Target::uri(next.clone())], ..Forward::default() }).expect("second stage");
    }));
    net.uac.send(net.proxy, &net.invite("s1", "call-s1")).await;
    let f1 = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f1, 486, "busy")).await;
    assert_eq!(net.uas.recv().await.method(), Some(&Method::Ack));
    let f2 = net.uas2.recv().await;
    assert_eq!(f2.method(), Some(&Method::Invite));
    assert_ne!(branch_of(&f1), branch_of(&f2));
    net.uas2.send(net.proxy, &response_to(&f2, 200, "ok")).await;
    let r = net.uac.recv_skip_100().await;
    assert_eq!(r.status(), Some(200), "the 486 of the first stage must not go upstream");
    assert_eq!(r.to().expect("to").tag(), Some("ok"));
}

#[tokio::test]
async fn on_failure_doing_nothing_sends_the_best_response() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], true);
    *net.router.on_failure.lock().expect("lock") = Some(Box::new(|_tx: ServerTx, _best: Message| {}));
    net.uac.send(net.proxy, &net.invite("s2", "call-s2")).await;
    let f1 = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f1, 404, "nf")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(404));
}

#[tokio::test]
async fn six_xx_cancels_other_branches() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri(), net.uas2.uri()], false);
    net.uac.send(net.proxy, &net.invite("x1", "call-x1")).await;
    let f1 = net.uas.recv().await;
    let f2 = net.uas2.recv().await;
    net.uas.send(net.proxy, &response_to(&f1, 180, "one")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(180));
    net.uas2.send(net.proxy, &response_to(&f2, 603, "two")).await;
    assert_eq!(net.uas2.recv().await.method(), Some(&Method::Ack));
    let c = net.uas.recv().await;
    assert_eq!(c.method(), Some(&Method::Cancel));
    net.uas.send(net.proxy, &response_to(&f1, 487, "one")).await;
    let r = net.uac.recv().await;
    assert_eq!(r.status(), Some(603));
}

#[tokio::test]
async fn best_response_aggregates_challenges_and_hides_503() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri(), net.uas2.uri()], false);
    net.uac.send(net.proxy, &net.invite("a1", "call-a1")).await;
    let f1 = net.uas.recv().await;
    let f2 = net.uas2.recv().await;
    let with = |m: &Message, realm: &str| {
        response_to(m, 401, "x").replace(
            "Content-Length: 0",
            &format!("WWW-Authenticate: Digest realm=\"{realm}\", nonce=\"n\"\r\nContent-Length: 0"),
        )
    };
    net.uas.send(net.proxy, &with(&f1, "one")).await;
    net.uas2.send(net.proxy, &with(&f2, "two")).await;
    let r = net.uac.recv_skip_100().await;
    assert_eq!(r.status(), Some(401));
    let mut realms: Vec<&str> = r.headers().filter(|h| h.raw_name == "WWW-Authenticate").map(|h| h.value).collect();
    realms.sort();
    assert_eq!(realms.len(), 2, "{realms:?}");
    assert!(realms[0].contains("realm=\"one\"") && realms[1].contains("realm=\"two\""), "{realms:?}");

    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("a2", "call-a2")).await;
    let f1 = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f1, 503, "x")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(500));
}

#[tokio::test]
async fn timer_c_cancels_a_ringing_branch() {
    let net = Net::new(Timers { timer_c_s: 1, ..fast_timers() }).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("tc1", "call-tc1")).await;
    let f1 = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f1, 180, "r")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(180));
    let c = net.uas.recv().await;
    assert_eq!(c.method(), Some(&Method::Cancel));
    net.uas.send(net.proxy, &response_to(&f1, 487, "r")).await;
    assert_eq!(net.uac.recv().await.status(), Some(487));
}

#[tokio::test]
async fn timer_c_without_provisional_is_408() {
    // Timer B (64*T1 = 6.4 s) is longer than Timer C (1 s) here.
    let net = Net::new(Timers { t1_ms: 100, t2_ms: 400, timer_c_s: 1, ..fast_timers() }).await;
    net.relay_to(vec![net.uas.uri()], false);
    net.uac.send(net.proxy, &net.invite("tc2", "call-tc2")).await;
    let _ = net.uas.recv().await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(408));
}

#[tokio::test]
async fn transport_error_counts_as_503_sent_as_500() {
    let net = Net::new(fast_timers()).await;
    // No TCP listener: the branch cannot be sent.
    net.relay_to(vec![format!("sip:x@127.0.0.1:9;transport=tcp")], false);
    let req = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "te1", "call-te1", 1, "");
    net.uac.send(net.proxy, &req).await;
    assert_eq!(net.uac.recv().await.status(), Some(500));
}

#[tokio::test]
async fn refused_tcp_connect_is_a_transport_error_not_a_timeout() {
    // RFC 3261 timers (Timer F = 32 s): within the 5 s bound only the connect failure's
    // report can end the branch; before it was reported the caller waited for the 408.
    let net = Net::with_listeners(Timers::default(), &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    net.relay_to(vec![format!("sip:x@{closed};transport=tcp")], false);
    for (i, method) in ["OPTIONS", "INVITE"].iter().enumerate() {
        let req =
            request(method, "sip:bob@example.com", net.uac.addr, &format!("rc{i}"), &format!("call-rc{i}"), 1, "");
        net.uac.send(net.proxy, &req).await;
        assert_eq!(net.uac.recv_skip_100().await.status(), Some(500), "{method}");
    }
}

#[tokio::test]
async fn bad_target_is_refused_without_side_effects() {
    let net = Net::new(fast_timers()).await;
    let results: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let res = results.clone();
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        let r = tx.relay(Forward { targets: vec![Target::uri("mailto:bob@example.com")], ..Forward::default() });
        res.lock().expect("lock").push(format!("{r:?}"));
        let _ = tx.reply(404, "Not Found", &[], None);
    }));
    let req = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "bt1", "call-bt1", 1, "");
    net.uac.send(net.proxy, &req).await;
    assert_eq!(net.uac.recv().await.status(), Some(404));
    let r = results.lock().expect("lock").clone();
    assert!(r[0].contains("BadTarget"), "{r:?}");
}

#[tokio::test]
async fn on_reply_hook_sees_each_non_100_reply() {
    let net = Net::new(fast_timers()).await;
    let uri = net.uas.uri();
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        let fwd = Forward {
            targets: vec![Target::uri(uri.clone())],
            on_reply: Some(Arc::from("r")),
            record_route: true,
            ..Forward::default()
        };
        tx.relay(fwd).expect("relay");
    }));
    net.uac.send(net.proxy, &net.invite("h1", "call-h1")).await;
    let f1 = net.uas.recv().await;
    let rr = f1.record_routes().expect("rr");
    assert_eq!(rr.len(), 1);
    assert_eq!(rr[0].uri, format!("sip:{};lr", net.proxy));
    net.uas.send(net.proxy, &response_to(&f1, 100, "r")).await;
    net.uas.send(net.proxy, &response_to(&f1, 183, "r")).await;
    net.uas.send(net.proxy, &response_to(&f1, 200, "r")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(183));
    assert_eq!(net.uac.recv().await.status(), Some(200));
    assert_eq!(*net.router.replies.lock().expect("lock"), vec![183, 200]);
}

#[tokio::test]
async fn tcp_uac_gets_responses_on_its_connection() {
    let net = Net::with_listeners(fast_timers(), &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]).await;
    net.relay_to(vec![net.uas.uri()], false);
    let tcp_addr = net.listeners.iter().find(|l| l.proto == Proto::Tcp).expect("tcp").addr;
    let mut c = TcpStream::connect(tcp_addr).await.expect("connect");
    let me = c.local_addr().expect("addr");
    let inv = request("INVITE", &format!("sip:bob@{tcp_addr}"), me, "tcp1", "call-tcp1", 1, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    c.write_all(inv.as_bytes()).await.expect("write");
    let f1 = net.uas.recv().await;
    assert_eq!(f1.vias().expect("vias")[1].transport, "TCP");
    net.uas.send(net.proxy, &response_to(&f1, 486, "b")).await;
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("486 Busy Here") {
        let n = tokio::time::timeout(WAIT, c.read(&mut buf)).await.expect("in time").expect("read");
        assert!(n > 0, "connection closed");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("SIP/2.0 100 Trying\r\n"), "{got}");
}
