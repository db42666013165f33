//! The core's limits and RFC 3261 16.3 checks over real UDP sockets: the cap on live
//! server transactions (503 with Retry-After), 416 and 420 before any route runs, client
//! branches unique per server transaction, unusable fork targets, and 2xx responses still
//! queued when a response context ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tests::{Net, WAIT, fast_timers, request, response_to, until};
use super::*;
use crate::sip::{Message, Method};

fn branch_of(m: &Message) -> String {
    m.top_via().expect("via").branch.expect("branch").to_owned()
}

/// Answers every request 200 itself, as the default route answers OPTIONS for the proxy.
fn answer_200(net: &Net) {
    *net.router.on_request.lock().expect("lock") = Some(Box::new(|tx: ServerTx| {
        let _ = tx.reply(200, "OK", &[], None);
    }));
}

#[tokio::test]
async fn over_the_transaction_cap_new_requests_get_503_and_live_ones_go_on() {
    let net = Net::new(fast_timers()).await;
    net.core.set_limits(1, 7);
    net.relay_to(vec![net.uas.uri()], false);
    let first = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "cap1", "call-cap1", 1, "");
    net.uac.send(net.proxy, &first).await;
    let fwd = net.uas.recv().await;

    // A new request beyond the cap: 503 with Retry-After, no transaction, not routed.
    let second = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "cap2", "call-cap2", 1, "");
    net.uac.send(net.proxy, &second).await;
    let busy = net.uac.recv().await;
    assert_eq!(busy.status(), Some(503));
    assert_eq!(busy.header_by_name("Retry-After"), Some("7"));
    assert_eq!(branch_of(&busy), "z9hG4bKcap2");
    assert_eq!(net.core.stats().rejected_overload, 1);
    assert_eq!(net.core.stats().server, 1);

    // The live transaction's retransmission is absorbed (not answered 503), and its
    // response still comes back.
    net.uac.send(net.proxy, &first).await;
    net.uas.send(net.proxy, &response_to(&fwd, 200, "u")).await;
    let ok = net.uac.recv().await;
    assert_eq!((ok.status(), branch_of(&ok).as_str()), (Some(200), "z9hG4bKcap1"));
    assert_eq!(net.core.stats().rejected_overload, 1);

    // An ACK is never refused: it is routed (and relayed statelessly).
    let ack = request("ACK", &net.uas.uri(), net.uac.addr, "cap-ack", "call-cap3", 1, "");
    net.uac.send(net.proxy, &ack).await;
    // The UAS may still see the OPTIONS retransmitted by Timer E before it: skip those.
    loop {
        let m = net.uas.recv().await;
        if m.method() == Some(&Method::Ack) {
            break;
        }
    }

    // Once the first transaction has ended there is room again.
    until(|| net.core.stats().server == 0).await;
    let third = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "cap4", "call-cap4", 1, "");
    net.uac.send(net.proxy, &third).await;
    let fwd = loop {
        let m = net.uas.recv().await;
        if m.call_id().ok() == Some("call-cap4") {
            break m;
        }
    };
    net.uas.send(net.proxy, &response_to(&fwd, 200, "u")).await;
    assert_eq!(net.uac.recv().await.status(), Some(200));
}

#[tokio::test]
async fn proxy_require_gets_420_listing_the_options() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    let req = request(
        "OPTIONS",
        "sip:bob@example.com",
        net.uac.addr,
        "pr1",
        "call-pr1",
        1,
        "Proxy-Require: foo\r\nProxy-Require: bar, baz\r\n",
    );
    net.uac.send(net.proxy, &req).await;
    let r = net.uac.recv().await;
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.header_by_name("Unsupported"), Some("foo, bar, baz"));
    net.uas.expect_silence(Duration::from_millis(30)).await;
}

#[tokio::test]
async fn foreign_uri_scheme_gets_416_before_the_route() {
    let net = Net::new(fast_timers()).await;
    answer_200(&net);
    for ruri in ["mailto:bob@example.com", "http://example.com/"] {
        let req = request("OPTIONS", ruri, net.uac.addr, "us1", "call-us1", 1, "");
        net.uac.send(net.proxy, &req).await;
        assert_eq!(net.uac.recv().await.status(), Some(416), "{ruri}");
    }
    // sip, sips and tel (a route may rewrite it) reach the route.
    for (i, ruri) in ["sip:bob@example.com", "SIPS:bob@example.com", "tel:+15551234"].iter().enumerate() {
        let req = request("OPTIONS", ruri, net.uac.addr, &format!("us-ok{i}"), "call-us2", 1, "");
        net.uac.send(net.proxy, &req).await;
        assert_eq!(net.uac.recv().await.status(), Some(200), "{ruri}");
    }
}

#[tokio::test]
async fn requests_differing_only_in_their_top_via_get_their_own_client_branches() {
    let net = Net::new(fast_timers()).await;
    net.relay_to(vec![net.uas.uri()], false);
    let a = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "va", "call-v", 1, "");
    let b = request("OPTIONS", "sip:bob@example.com", net.uac.addr, "vb", "call-v", 1, "");
    net.uac.send(net.proxy, &a).await;
    let fa = net.uas.recv().await;
    net.uac.send(net.proxy, &b).await;
    let fb = loop {
        let m = net.uas.recv().await;
        if m.vias().expect("vias")[1].branch == Some("z9hG4bKvb") {
            break m;
        }
    };
    assert_ne!(branch_of(&fa), branch_of(&fb), "16.6 step 8: the top Via is part of the branch");
    net.uas.send(net.proxy, &response_to(&fb, 200, "u")).await;
    net.uas.send(net.proxy, &response_to(&fa, 200, "u")).await;
    let mut got = vec![];
    for _ in 0..2 {
        let r = net.uac.recv().await;
        got.push((r.status(), branch_of(&r)));
    }
    got.sort();
    assert_eq!(got, vec![(Some(200), "z9hG4bKva".to_owned()), (Some(200), "z9hG4bKvb".to_owned())]);
}

#[tokio::test]
async fn contact_uri_headers_are_dropped_and_an_unusable_branch_fails_alone() {
    let net = Net::new(fast_timers()).await;
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let res = results.clone();
    let targets = [format!("<{}?Subject=hi&X-A=b>", net.uas.uri()), "mailto:bob@example.com".into(), net.uas2.uri()];
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        let fwd = Forward { targets: targets.iter().cloned().map(Target::uri).collect(), ..Forward::default() };
        res.lock().expect("lock").push(format!("{:?}", tx.relay(fwd)));
    }));
    net.uac.send(net.proxy, &net.invite("uh1", "call-uh1")).await;
    let f1 = net.uas.recv().await;
    assert_eq!(f1.request_uri(), Some(net.uas.uri().as_str()), "URI headers dropped (19.1.5)");
    assert!(f1.header_by_name("Subject").is_none());
    let f2 = net.uas2.recv().await;
    assert_eq!(results.lock().expect("lock").clone(), vec!["Ok(())".to_owned()]);
    net.uas.send(net.proxy, &response_to(&f1, 486, "one")).await;
    net.uas2.send(net.proxy, &response_to(&f2, 486, "two")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(486));
}

#[tokio::test]
async fn a_2xx_queued_when_the_response_context_ends_is_still_forwarded() {
    let net = Net::new(fast_timers()).await;
    let held: Arc<Mutex<Option<ServerTx>>> = Arc::default();
    let keep = held.clone();
    let targets = [net.uas.uri(), net.uas2.uri()];
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        *keep.lock().expect("lock") = Some(tx.clone());
        let fwd = Forward {
            targets: targets.iter().cloned().map(Target::uri).collect(),
            on_reply: Some(Arc::from("reply")),
            ..Forward::default()
        };
        let _ = tx.relay(fwd);
    }));
    // Reply hooks wait for permits: the context stops while the responses queue behind it.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *net.router.reply_gate.lock().expect("lock") = Some(gate.clone());
    net.uac.send(net.proxy, &net.invite("late1", "call-late1")).await;
    let f1 = net.uas.recv().await;
    let f2 = net.uas2.recv().await;
    let tx = held.lock().expect("lock").clone().expect("routed");
    let inbox = tx.tu().proxy.clone().expect("relayed");

    // UAS 1 answers; the context runs the reply hook, which waits.
    net.uas.send(net.proxy, &response_to(&f1, 200, "one")).await;
    until(|| net.router.replies.lock().expect("lock").len() == 1).await;
    // Then UAS 2 answers too (a second UAS behind a forking proxy), and UAS 1 retransmits:
    // both wait in the context's inbox, in this order.
    net.uas2.send(net.proxy, &response_to(&f2, 200, "two")).await;
    until(|| inbox.len() == 1).await;
    net.uas.send(net.proxy, &response_to(&f1, 200, "one")).await;
    until(|| inbox.len() == 2).await;
    gate.add_permits(2);

    // UAS 2's 200 ends the context (every branch has its final); the retransmission queued
    // behind it still goes upstream.
    let mut tags = vec![];
    for _ in 0..3 {
        let r = tokio::time::timeout(WAIT, net.uac.recv_skip_100()).await.expect("in time");
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.vias().expect("vias").len(), 1, "our Via popped");
        tags.push(r.to().expect("to").tag().expect("tag").to_owned());
    }
    // The stateless one may overtake the one the server transaction sends.
    tags.sort();
    assert_eq!(tags, vec!["one", "one", "two"]);
}
