//! Tests of branch injection (`wait_for_new_branches`, `inject`, `find_tx`) and explicit
//! next hops, over real UDP sockets with short timers and bounded waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tests::{Net, fast_timers, request, response_to, until};
use super::*;
use crate::sip::{HeaderName, Message, Method};
use crate::transport::{NextHop, Proto};

type Held = Arc<Mutex<Option<ServerTx>>>;

/// Routes every INVITE with `f` and keeps its transaction for the test.
fn hold(net: &Net, f: impl Fn(&ServerTx) + Send + Sync + 'static) -> Held {
    let held: Held = Arc::default();
    let h = held.clone();
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        f(&tx);
        *h.lock().expect("lock") = Some(tx);
    }));
    held
}

/// Waits for the route to have run and returns its transaction.
async fn held_tx(held: &Held) -> ServerTx {
    until(|| held.lock().expect("lock").is_some()).await;
    held.lock().expect("lock").clone().expect("held")
}

fn wait_all(tx: &ServerTx) {
    tx.wait_for_new_branches(Forward::default(), None).expect("wait");
}

fn branch_of(m: &Message) -> String {
    m.top_via().expect("via").branch.expect("branch").to_owned()
}

/// The next request on a peer that is not a retransmission of `seen` (UDP, T1 = 10 ms).
async fn next_new(peer: &super::tests::Peer, seen: &Message) -> Message {
    loop {
        let m = peer.recv().await;
        if m.raw() != seen.raw() {
            return m;
        }
    }
}

#[tokio::test]
async fn wait_then_inject_one_target_that_answers() {
    let net = Net::new(fast_timers()).await;
    let held = hold(&net, |tx| {
        tx.wait_for_new_branches(Forward { record_route: true, ..Forward::default() }, None).expect("wait");
    });
    net.uac.send(net.proxy, &net.invite("w1", "call-w1")).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    let tx = held_tx(&held).await;
    assert!(tx.is_waiting());
    // The route returned without relay or reply: the transaction stays.
    net.uac.expect_silence(Duration::from_millis(60)).await;
    let found = net.core.find_tx(tx.id()).expect("live transaction found by id");
    assert_eq!(found.id(), tx.id());

    assert_eq!(found.inject(vec![Target::uri(net.uas.uri())], false).expect("inject"), 1);
    let f = net.uas.recv().await;
    assert_eq!(f.method(), Some(&Method::Invite));
    assert_eq!(f.request_uri(), Some(net.uas.uri().as_str()));
    assert_eq!(f.record_routes().expect("rr").len(), 1, "the wait template's Record-Route");
    net.uas.send(net.proxy, &response_to(&f, 180, "d")).await;
    assert_eq!(net.uac.recv().await.status(), Some(180));
    net.uas.send(net.proxy, &response_to(&f, 200, "d")).await;
    assert_eq!(net.uac.recv().await.status(), Some(200));
    assert!(matches!(tx.inject(vec![Target::uri(net.uas2.uri())], false), Err(TmError::AlreadyAnswered)));
    // find_tx stops finding it once the transaction ended (Timer L, 64*T1 = 640 ms here).
    until(|| net.core.find_tx(tx.id()).is_none()).await;
}

#[tokio::test]
async fn waiting_transaction_outlives_failed_branches() {
    let net = Net::new(fast_timers()).await;
    let uri = net.uas.uri();
    let held = hold(&net, move |tx| {
        tx.relay(Forward { targets: vec![Target::uri(uri.clone())], ..Forward::default() }).expect("relay");
        wait_all(tx);
    });
    net.uac.send(net.proxy, &net.invite("w2", "call-w2")).await;
    let f1 = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f1, 486, "desk")).await;
    assert_eq!(net.uas.recv().await.method(), Some(&Method::Ack));
    // All branches failed, but the transaction waits for injections.
    assert_eq!(net.uac.recv().await.status(), Some(100));
    net.uac.expect_silence(Duration::from_millis(80)).await;
    let tx = held_tx(&held).await;
    // The desk phone was forked already: injecting it again starts nothing.
    assert_eq!(tx.inject(vec![Target::uri(format!("<{}>", net.uas.uri()))], false).expect("inject"), 0);
    assert_eq!(tx.inject(vec![Target::uri(net.uas2.uri())], false).expect("inject"), 1);
    let f2 = net.uas2.recv().await;
    net.uas2.send(net.proxy, &response_to(&f2, 200, "mobile")).await;
    let r = net.uac.recv().await;
    assert_eq!((r.status(), r.to().expect("to").tag()), (Some(200), Some("mobile")));
}

#[tokio::test]
async fn injecting_the_same_uri_twice_forks_once() {
    let net = Net::new(fast_timers()).await;
    let held = hold(&net, wait_all);
    net.uac.send(net.proxy, &net.invite("d1", "call-d1")).await;
    let tx = held_tx(&held).await;
    let uri = net.uas.uri();
    assert_eq!(tx.inject(vec![Target::uri(uri.clone()), Target::uri(uri.clone())], false).expect("inject"), 1);
    assert_eq!(tx.inject(vec![Target::uri(uri.clone())], false).expect("inject"), 0);
    // Another next hop for the same URI is another branch (another flow of the contact).
    let hop = Target { uri: uri.clone(), next_hop: Some(NextHop::from_addr(Proto::Udp, net.uas2.addr)) };
    assert_eq!(tx.inject(vec![hop.clone()], false).expect("inject"), 1);
    assert_eq!(tx.inject(vec![hop], false).expect("inject"), 0);
    let f = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f, 180, "r")).await;
    // Only retransmissions of the one INVITE (same branch) may follow.
    while let Some(m) = net.uas.try_recv(Duration::from_millis(80)).await {
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(branch_of(&m), branch_of(&f), "a second INVITE was forked");
    }
    assert_eq!(net.uas2.recv().await.request_uri(), Some(uri.as_str()));
}

#[tokio::test]
async fn inject_with_cancel_existing_replaces_a_ringing_branch() {
    let net = Net::new(fast_timers()).await;
    let uri = net.uas.uri();
    // Call pickup: Alice's call rings Bob (no wait), Charlie's branch is injected.
    let held = hold(&net, move |tx| {
        tx.relay(Forward { targets: vec![Target::uri(uri.clone())], ..Forward::default() }).expect("relay");
    });
    net.uac.send(net.proxy, &net.invite("pk1", "call-pk1")).await;
    let bob = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&bob, 180, "bob")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(180));
    let tx = held_tx(&held).await;
    let found = net.core.find_tx(tx.id()).expect("found");
    assert_eq!(found.inject(vec![Target::uri(net.uas2.uri())], true).expect("inject"), 1);

    let c = next_new(&net.uas, &bob).await;
    assert_eq!(c.method(), Some(&Method::Cancel));
    assert_eq!(branch_of(&c), branch_of(&bob));
    assert!(c.header_by_name("Reason").is_some_and(|r| r.contains("cause=200")), "{:?}", c.header_by_name("Reason"));
    net.uas.send(net.proxy, &response_to(&c, 200, "bob")).await;
    net.uas.send(net.proxy, &response_to(&bob, 487, "bob")).await;

    let charlie = net.uas2.recv().await;
    assert_eq!(charlie.method(), Some(&Method::Invite));
    net.uas2.send(net.proxy, &response_to(&charlie, 180, "charlie")).await;
    assert_eq!(net.uac.recv().await.status(), Some(180));
    net.uas2.send(net.proxy, &response_to(&charlie, 200, "charlie")).await;
    let r = net.uac.recv().await;
    assert_eq!((r.status(), r.to().expect("to").tag()), (Some(200), Some("charlie")), "Bob's 487 must not go upstream");
}

#[tokio::test]
async fn waiting_transaction_times_out_with_408() {
    let net = Net::new(Timers { timer_c_s: 1, ..fast_timers() }).await;
    let held = hold(&net, wait_all);
    net.uac.send(net.proxy, &net.invite("to1", "call-to1")).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    let tx = held_tx(&held).await;
    assert_eq!(net.uac.recv().await.status(), Some(408));
    assert!(!tx.is_waiting());
    assert!(matches!(tx.inject(vec![Target::uri(net.uas.uri())], false), Err(TmError::AlreadyAnswered)));
}

#[tokio::test]
async fn wait_timeout_runs_the_failure_hook() {
    let net = Net::new(Timers { timer_c_s: 1, ..fast_timers() }).await;
    let seen: Arc<Mutex<Vec<u16>>> = Arc::default();
    let s = seen.clone();
    *net.router.on_failure.lock().expect("lock") = Some(Box::new(move |tx: ServerTx, best: Message| {
        s.lock().expect("lock").push(best.status().unwrap_or(0));
        tx.reply(480, "Temporarily Unavailable", &[], None).expect("reply");
    }));
    let _held = hold(&net, |tx| {
        let template = Forward { on_failure: Some(Arc::from("no_push")), ..Forward::default() };
        tx.wait_for_new_branches(template, None).expect("wait");
    });
    net.uac.send(net.proxy, &net.invite("to2", "call-to2")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(480));
    assert_eq!(*seen.lock().expect("lock"), vec![408]);
}

#[tokio::test]
async fn cancel_while_waiting_answers_487() {
    let net = Net::new(fast_timers()).await;
    let held = hold(&net, wait_all);
    net.uac.send(net.proxy, &net.invite("cw1", "call-cw1")).await;
    let tx = held_tx(&held).await;
    let cancel = request("CANCEL", &format!("sip:bob@{}", net.proxy), net.uac.addr, "cw1", "call-cw1", 1, "");
    net.uac.send(net.proxy, &cancel).await;
    let mut got = vec![];
    while got.len() < 2 {
        let m = net.uac.recv_skip_100().await;
        got.push((m.status(), m.cseq().expect("cseq").method));
    }
    got.sort_by_key(|(s, _)| *s);
    assert_eq!(got, vec![(Some(200), Method::Cancel), (Some(487), Method::Invite)]);
    assert!(matches!(tx.inject(vec![Target::uri(net.uas.uri())], false), Err(TmError::AlreadyAnswered)));
    net.uas.expect_silence(Duration::from_millis(30)).await;
}

#[tokio::test]
async fn cancel_while_waiting_cancels_injected_branches() {
    let net = Net::new(fast_timers()).await;
    let held = hold(&net, wait_all);
    net.uac.send(net.proxy, &net.invite("cw2", "call-cw2")).await;
    let tx = held_tx(&held).await;
    tx.inject(vec![Target::uri(net.uas.uri())], false).expect("inject");
    let f = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f, 180, "m")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(180));
    let cancel = request("CANCEL", &format!("sip:bob@{}", net.proxy), net.uac.addr, "cw2", "call-cw2", 1, "");
    net.uac.send(net.proxy, &cancel).await;
    assert_eq!(net.uac.recv().await.status(), Some(200));
    let c = next_new(&net.uas, &f).await;
    assert_eq!(c.method(), Some(&Method::Cancel));
    assert!(c.header_by_name("Reason").is_none(), "a caller's CANCEL is not 'completed elsewhere'");
    net.uas.send(net.proxy, &response_to(&f, 487, "m")).await;
    assert_eq!(net.uac.recv().await.status(), Some(487));
}

#[tokio::test]
async fn expected_injection_ends_the_wait() {
    let net = Net::new(fast_timers()).await;
    let held = hold(&net, |tx| tx.wait_for_new_branches(Forward::default(), Some(1)).expect("wait"));
    net.uac.send(net.proxy, &net.invite("e1", "call-e1")).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    let tx = held_tx(&held).await;
    assert_eq!(tx.inject(vec![Target::uri(net.uas.uri())], false).expect("inject"), 1);
    assert!(!tx.is_waiting(), "the one expected injection happened");
    let f = net.uas.recv().await;
    net.uas.send(net.proxy, &response_to(&f, 486, "b")).await;
    // Timer C is 180 s: only the end of the wait lets the 486 go up now.
    assert_eq!(net.uac.recv().await.status(), Some(486));
    let ack = request("ACK", &format!("sip:bob@{}", net.proxy), net.uac.addr, "e1", "call-e1", 1, "");
    net.uac.send(net.proxy, &ack).await;
    until(|| net.core.find_tx(tx.id()).is_none()).await;
}

#[tokio::test]
async fn stop_waiting_without_branches_sends_408() {
    let net = Net::new(fast_timers()).await;
    let held = hold(&net, wait_all);
    net.uac.send(net.proxy, &net.invite("sw1", "call-sw1")).await;
    let tx = held_tx(&held).await;
    assert!(tx.stop_waiting());
    assert!(!tx.stop_waiting());
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(408));
}

#[tokio::test]
async fn wait_is_refused_for_non_invite_and_answered_requests() {
    let net = Net::new(fast_timers()).await;
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let r = results.clone();
    *net.router.on_request.lock().expect("lock") = Some(Box::new(move |tx: ServerTx| {
        let mut r = r.lock().expect("lock");
        if tx.request().method() == Some(&Method::Invite) {
            let _ = tx.reply(486, "Busy Here", &[], None);
        }
        r.push(format!("{:?}", tx.wait_for_new_branches(Forward::default(), None)));
        if tx.request().method() != Some(&Method::Invite) {
            let _ = tx.reply(200, "OK", &[], None);
        }
    }));
    let opt = request("OPTIONS", &format!("sip:bob@{}", net.proxy), net.uac.addr, "nw1", "call-nw1", 1, "");
    net.uac.send(net.proxy, &opt).await;
    assert_eq!(net.uac.recv().await.status(), Some(200));
    net.uac.send(net.proxy, &net.invite("nw2", "call-nw2")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(486));
    assert_eq!(*results.lock().expect("lock"), vec!["Err(Completed)", "Err(AlreadyAnswered)"]);
    assert!(net.core.find_tx(u64::MAX).is_none());
}

#[tokio::test]
async fn next_hop_sends_to_the_given_address_keeping_the_request_uri() {
    let net = Net::new(fast_timers()).await;
    // A NAT'd contact: its URI is unreachable, its `received` is the UAS.
    let contact = "sip:bob@192.0.2.99:5999;ob".to_owned();
    let target = Target { uri: contact.clone(), next_hop: Some(NextHop::from_addr(Proto::Udp, net.uas.addr)) };
    let held = hold(&net, move |tx| {
        let fwd = Forward { targets: vec![target.clone()], ..Forward::default() };
        tx.relay(fwd).expect("relay");
    });
    net.uac.send(net.proxy, &net.invite("nh1", "call-nh1")).await;
    let f = net.uas.recv().await;
    assert_eq!(f.request_uri(), Some(contact.as_str()));
    let tx = held_tx(&held).await;
    // Injection honours next hops too.
    let hop2 = Target { uri: contact.clone(), next_hop: Some(NextHop::from_addr(Proto::Udp, net.uas2.addr)) };
    assert_eq!(tx.inject(vec![hop2], false).expect("inject"), 1);
    let f2 = net.uas2.recv().await;
    assert_eq!(f2.request_uri(), Some(contact.as_str()));
    assert_eq!(f2.header(HeaderName::CallId), Some("call-nh1"));
    net.uas2.send(net.proxy, &response_to(&f2, 200, "nat")).await;
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(200));
}

/// Counts the EBR notifications that ran, per transaction id.
struct Notified(Arc<Mutex<Vec<u64>>>);

impl crate::events::ebr::NotifyHandler for Notified {
    fn notify(&self, n: crate::events::ebr::Notification) -> bool {
        self.0.lock().expect("lock").push(n.tid);
        true
    }
}

fn ebr_bus() -> (crate::events::EventBus, Arc<Mutex<Vec<u64>>>) {
    let ran: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (cfg, schemes) = (crate::events::EventsConfig::default(), crate::events::SinkSchemes::new());
    let bus = crate::events::EventBus::new(&cfg, schemes, Some(Arc::new(Notified(ran.clone())))).expect("bus");
    (bus, ran)
}

fn subscribe(bus: &crate::events::EventBus, tid: u64, timeout: Duration) {
    let filters = crate::events::ebr::Filters::parse(&[]).expect("filters");
    bus.notify_on_event("E_UL_CONTACT_INSERT", filters, "push".into(), tid, timeout).expect("subscribe");
}

#[tokio::test]
async fn expired_notify_subscription_ends_the_wait_before_timer_c() {
    // Timer C is 180 s: only the subscription's expiry (1 s) can end the wait in time.
    let net = Net::new(fast_timers()).await;
    let (bus, _ran) = ebr_bus();
    let b = bus.clone();
    let core = net.core.clone();
    let held = hold(&net, move |tx| {
        wait_all(tx);
        subscribe(&b, tx.id(), Duration::from_secs(1));
        // What the runtime does for a route's notify-on-event.
        let (core, tid) = (core.clone(), tx.id());
        assert!(b.on_notifications_expired(tid, move || {
            core.find_tx(tid).map(|tx| tx.stop_waiting());
        }));
    });
    net.uac.send(net.proxy, &net.invite("ne1", "call-ne1")).await;
    assert_eq!(net.uac.recv().await.status(), Some(100));
    let tx = held_tx(&held).await;
    assert!(tx.is_waiting());
    // No branch is live: the 408 goes up as soon as the subscription expired.
    assert_eq!(net.uac.recv().await.status(), Some(408));
    assert!(!tx.is_waiting());
    assert_eq!(bus.notify_count(tx.id()), 0);
}

#[tokio::test]
async fn a_finished_transaction_runs_no_late_notification() {
    let net = Net::new(fast_timers()).await;
    let (bus, ran) = ebr_bus();
    let b = bus.clone();
    let held = hold(&net, move |tx| {
        wait_all(tx);
        subscribe(&b, tx.id(), Duration::from_secs(60));
        let b = b.clone();
        assert!(tx.on_end(move |tid| {
            b.cancel_notifications(tid);
        }));
    });
    net.uac.send(net.proxy, &net.invite("ne2", "call-ne2")).await;
    let tx = held_tx(&held).await;
    let tid = tx.id();
    // While the call lives, the event reaches its subscription.
    let insert = || crate::events::Event::new("E_UL_CONTACT_INSERT", crate::events::Params::new());
    assert_eq!(bus.raise(insert()), 1);
    until(|| ran.lock().expect("lock").len() == 1).await;

    assert!(tx.stop_waiting());
    assert_eq!(net.uac.recv_skip_100().await.status(), Some(408));
    let ack = request("ACK", &format!("sip:bob@{}", net.proxy), net.uac.addr, "ne2", "call-ne2", 1, "");
    net.uac.send(net.proxy, &ack).await;
    // Timer I (T4 = 50 ms) ends the transaction; its subscription goes with it.
    until(|| net.core.find_tx(tid).is_none()).await;
    until(|| bus.notify_count(tid) == 0).await;
    assert!(!tx.on_end(|_| {}), "a hook added after the end would never run");
    assert_eq!(bus.raise(insert()), 0, "a late event reached the finished call");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(*ran.lock().expect("lock"), vec![tid]);
}
