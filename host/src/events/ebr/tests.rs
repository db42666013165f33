//! EBR tests: filter syntax and matching, wait-for-event (match, no match,
//! timeout, cancellation, 10,000 waiters), notify-on-event (several firings,
//! expiry, concurrency cap, no handler), limits, and how EBR listeners count
//! for `raise` / `has_subscribers` (what MI `raise_event` relies on).
//! Timers run on paused tokio time unless the test measures real speed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::{EbrStats, Filters, Notification, NotifyHandler};
use crate::events::*;

fn filters(list: &[&str]) -> Filters {
    Filters::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid filters")
}

fn ev(name: &str, params: Params) -> Event {
    Event::new(name, params)
}

fn bus_with(max_waiters: usize, max_notify: usize) -> EventBus {
    let cfg =
        EventsConfig { ebr_max_waiters: max_waiters, ebr_max_notify_concurrency: max_notify, ..Default::default() };
    EventBus::new(&cfg, SinkSchemes::new(), None).expect("bus")
}

fn bus() -> EventBus {
    EventBus::new(&EventsConfig::default(), SinkSchemes::new(), None).expect("bus")
}

/// Records every notification; route `stuck` never completes.
struct Notes(mpsc::UnboundedSender<(Arc<str>, Event, u64)>);

impl NotifyHandler for Notes {
    fn notify(&self, n: Notification) -> bool {
        let _ = self.0.send((n.route.clone(), n.event, n.tid));
        if &*n.route == "stuck" {
            let slot = n.slot;
            tokio::spawn(async move {
                let _slot = slot;
                std::future::pending::<()>().await
            });
        }
        true
    }
}

type NotesRx = mpsc::UnboundedReceiver<(Arc<str>, Event, u64)>;

/// A bus (as [`bus_with`]) whose notifications are recorded by [`Notes`].
fn noted_with(max_waiters: usize, max_notify: usize) -> (EventBus, NotesRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg =
        EventsConfig { ebr_max_waiters: max_waiters, ebr_max_notify_concurrency: max_notify, ..Default::default() };
    (EventBus::new(&cfg, SinkSchemes::new(), Some(Arc::new(Notes(tx)))).expect("bus"), rx)
}

fn noted() -> (EventBus, NotesRx) {
    let d = EventsConfig::default();
    noted_with(d.ebr_max_waiters, d.ebr_max_notify_concurrency)
}

/// Lets spawned tasks run (paused time: no timer advances by itself here
/// because nothing else is pending that sleeps).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------- filters

#[test]
fn filter_syntax_errors_name_the_filter() {
    let err = |list: &[&str]| Filters::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err();
    let e = err(&["aor=bob", "callid"]);
    assert!(matches!(e, EventError::BadFilter(_)), "{e:?}");
    assert!(e.to_string().contains("'callid'") && e.to_string().contains("key=value"), "{e}");
    assert!(err(&["=x"]).to_string().contains("empty key"));
    assert!(err(&["aor="]).to_string().contains("empty value"));
    let many: Vec<String> = (0..=ebr::MAX_FILTERS).map(|i| format!("k{i}=v")).collect();
    assert!(Filters::parse(&many).is_err());
    assert!(Filters::parse(&["k=".to_string() + &"x".repeat(ebr::MAX_FILTER_LEN)]).is_err());
    // The value may itself contain '=' (split at the first one).
    let f = filters(&["uri=sip:a@b;x=1"]);
    assert!(f.matches(&ev("E", Params::new().with("uri", "sip:a@b;x=1"))));
}

#[test]
fn filters_are_anded_globs_with_case_insensitive_keys() {
    let e = ev(
        "E_UL_CONTACT_INSERT",
        Params::new()
            .with("aor", "bob@example.com")
            .with("uri", "sip:bob@10.0.0.1:5060;transport=udp")
            .with("expires", 3600)
            .with("path", Value::Null),
    );
    // No filters: everything matches.
    assert!(filters(&[]).matches(&e));
    // Exact, glob, case-insensitive key.
    assert!(filters(&["aor=bob@example.com"]).matches(&e));
    assert!(filters(&["AOR=bob@*"]).matches(&e));
    assert!(filters(&["Aor=?ob@example.co[lm]"]).matches(&e));
    assert!(!filters(&["aor=[!b]ob@*"]).matches(&e));
    // Values are case-sensitive (fnmatch flags 0).
    assert!(!filters(&["aor=BOB@*"]).matches(&e));
    // '*' crosses '/' and ':' (no FNM_PATHNAME).
    assert!(filters(&["uri=sip:*;transport=udp"]).matches(&e));
    // AND: one failing filter fails the whole.
    assert!(filters(&["aor=bob@*", "expires=3600"]).matches(&e));
    assert!(!filters(&["aor=bob@*", "expires=36"]).matches(&e));
    // Integers as decimal text, globbable; NULL as the empty string.
    assert!(filters(&["expires=3*"]).matches(&e));
    assert!(filters(&["path=*"]).matches(&e));
    assert!(!filters(&["path=?*"]).matches(&e));
    // A missing key does not match.
    assert!(!filters(&["callid=*"]).matches(&e));
    // Negative integers.
    assert!(filters(&["n=-42"]).matches(&ev("E", Params::new().with("n", -42))));
    assert!(filters(&["n=-9223372036854775808"]).matches(&ev("E", Params::new().with("n", i64::MIN))));
}

#[test]
fn globs_follow_fnmatch_not_globset_extensions() {
    let v = |s: &str| ev("E", Params::new().with("v", s));
    // No brace alternates in fnmatch: braces are literal.
    assert!(filters(&["v={a,b}"]).matches(&v("{a,b}")));
    assert!(!filters(&["v={a,b}*"]).matches(&v("a")));
    assert!(filters(&["v=x{*"]).matches(&v("x{yz")));
    // An unclosed '[' is literal, the rest still globs.
    assert!(filters(&["v=[ab*"]).matches(&v("[abc")));
    // ']' first in a class is a member; backslash escapes.
    assert!(filters(&["v=[]x]"]).matches(&v("]")));
    assert!(filters(&["v=a\\*"]).matches(&v("a*")));
    assert!(!filters(&["v=a\\*"]).matches(&v("ab")));
    // Positional (unnamed) params never match a key.
    let mut p = Params::new();
    p.push_positional("x");
    assert!(!filters(&["v=*"]).matches(&ev("E", p)));
    // Any param with the name may match.
    let twice = Params::new().with("v", "no").with("V", "yes");
    assert!(filters(&["v=yes"]).matches(&ev("E", twice)));
}

// ---------------------------------------------------------------- wait

#[tokio::test(start_paused = true)]
async fn wait_resolves_on_matching_raise_only() {
    let bus = bus();
    let wait = bus.wait_for_event("E_DTMF", filters(&["callid=abc"]), Duration::from_secs(30)).unwrap();
    let task = tokio::spawn(wait);
    settle().await;
    // Other call, other event name: nobody reached.
    assert_eq!(bus.raise(ev("E_DTMF", Params::new().with("callid", "xyz").with("digit", "1"))), 0);
    assert_eq!(bus.raise(ev("E_OTHER", Params::new().with("callid", "abc"))), 0);
    settle().await;
    assert!(!task.is_finished());
    assert_eq!(bus.ebr_stats().waiters, 1);
    // The matching one wakes it, exactly once.
    assert_eq!(bus.raise(ev("E_DTMF", Params::new().with("CallID", "abc").with("digit", "2"))), 1);
    let got = timeout(Duration::from_secs(1), task).await.unwrap().unwrap().expect("an event");
    assert_eq!(got.param("digit"), Some(&Value::Str("2".into())));
    assert_eq!(bus.raise(ev("E_DTMF", Params::new().with("callid", "abc"))), 0);
    let s = bus.ebr_stats();
    assert_eq!((s.waiters, s.woken, s.timed_out, s.cancelled), (0, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_raise_before_the_first_poll_is_not_missed() {
    let bus = bus();
    let wait = bus.wait_for_event("E_X", filters(&[]), Duration::from_secs(5)).unwrap();
    assert_eq!(bus.raise(ev("E_X", Params::new())), 1);
    assert!(wait.await.is_some());
}

#[tokio::test(start_paused = true)]
async fn wait_times_out_with_none() {
    let bus = bus();
    let start = tokio::time::Instant::now();
    let wait = bus.wait_for_event("E_UL_AOR_INSERT", filters(&["aor=bob*"]), Duration::from_secs(40)).unwrap();
    bus.raise(ev("E_UL_AOR_INSERT", Params::new().with("aor", "alice@x")));
    assert!(wait.await.is_none());
    assert_eq!(start.elapsed(), Duration::from_secs(40));
    let s = bus.ebr_stats();
    assert_eq!((s.waiters, s.timed_out, s.woken), (0, 1, 0));
    assert!(!bus.has_subscribers("E_UL_AOR_INSERT"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_wait_removes_the_waiter_at_once() {
    let bus = bus();
    let wait = bus.wait_for_event("E_PICK", filters(&["group=1"]), Duration::from_secs(60)).unwrap();
    let task = tokio::spawn(wait);
    settle().await;
    assert_eq!(bus.ebr_stats().waiters, 1);
    assert!(bus.has_subscribers("E_PICK"));
    // The suspended call is cancelled: its future is dropped.
    task.abort();
    let _ = task.await;
    let s = bus.ebr_stats();
    assert_eq!((s.waiters, s.cancelled), (0, 1));
    assert!(!bus.has_subscribers("E_PICK"));
    assert_eq!(bus.raise(ev("E_PICK", Params::new().with("group", "1"))), 0);
    // Never polled at all: same.
    drop(bus.wait_for_event("E_PICK", filters(&[]), Duration::from_secs(60)).unwrap());
    assert_eq!(bus.ebr_stats().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn exact_and_glob_filters_together_use_the_index_correctly() {
    let bus = bus();
    // Indexed by callid=c1 but also needs digit=[0-4].
    let low = tokio::spawn(
        bus.wait_for_event("E_DTMF", filters(&["digit=[0-4]", "callid=c1"]), Duration::from_secs(9)).unwrap(),
    );
    // Indexed under a key written in capitals.
    let any = tokio::spawn(bus.wait_for_event("E_DTMF", filters(&["CALLID=c1"]), Duration::from_secs(9)).unwrap());
    settle().await;
    assert_eq!(bus.raise(ev("E_DTMF", Params::new().with("callid", "c1").with("digit", "7"))), 1);
    assert_eq!(any.await.unwrap().unwrap().param("digit"), Some(&Value::Str("7".into())));
    settle().await;
    assert!(!low.is_finished());
    assert_eq!(bus.raise(ev("E_DTMF", Params::new().with("digit", "3").with("callid", "c1"))), 1);
    assert!(low.await.unwrap().is_some());
    // Integer params hit the index as their decimal text.
    let int = bus.wait_for_event("E_N", filters(&["n=42"]), Duration::from_secs(9)).unwrap();
    assert_eq!(bus.raise(ev("E_N", Params::new().with("n", 42))), 1);
    assert!(int.await.is_some());
}

#[tokio::test(start_paused = true)]
async fn waiters_are_bounded_by_config() {
    let bus = bus_with(2, 4);
    let a = bus.wait_for_event("E", filters(&[]), Duration::from_secs(5)).unwrap();
    bus.notify_on_event("E", filters(&[]), "r".into(), 1, Duration::from_secs(5)).unwrap();
    let err = bus.wait_for_event("E", filters(&[]), Duration::from_secs(5)).map(drop).unwrap_err();
    assert_eq!(err, EventError::EbrLimit(2));
    assert!(bus.notify_on_event("E", filters(&[]), "r".into(), 1, Duration::from_secs(5)).is_err());
    assert_eq!(bus.ebr_stats().refused, 2);
    drop(a);
    assert!(bus.wait_for_event("E", filters(&[]), Duration::from_secs(5)).is_ok());
    // Bad names are refused like any subscription.
    assert!(matches!(
        bus.wait_for_event("", filters(&[]), Duration::from_secs(1)).map(drop),
        Err(EventError::BadName(_))
    ));
}

// ---------------------------------------------------------------- notify

#[tokio::test(start_paused = true)]
async fn notify_fires_several_times_until_expiry() {
    let (bus, mut rx) = noted();
    bus.notify_on_event(
        "E_UL_CONTACT_INSERT",
        filters(&["aor=bob@*"]),
        "fork_call".into(),
        77,
        Duration::from_secs(20),
    )
    .unwrap();
    // Publishes the name, as OpenSIPS does for a custom event.
    assert!(bus.event_id("E_UL_CONTACT_INSERT").is_some());
    bus.notify_on_event("E_CUSTOM_NEW", filters(&[]), "r".into(), 1, Duration::from_secs(1)).unwrap();
    assert!(bus.event_id("E_CUSTOM_NEW").is_some());

    let contact = |uri: &str| Params::new().with("aor", "bob@example.com").with("uri", uri);
    assert_eq!(bus.raise(ev("E_UL_CONTACT_INSERT", contact("sip:bob@1.1.1.1"))), 1);
    assert_eq!(bus.raise(ev("E_UL_CONTACT_INSERT", Params::new().with("aor", "carol@x"))), 0);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(bus.raise(ev("E_UL_CONTACT_INSERT", contact("sip:bob@2.2.2.2"))), 1);
    for uri in ["sip:bob@1.1.1.1", "sip:bob@2.2.2.2"] {
        let (route, event, tid) = timeout(Duration::from_secs(1), rx.recv()).await.unwrap().unwrap();
        assert_eq!((&*route, tid), ("fork_call", 77));
        assert_eq!(event.param("uri"), Some(&Value::Str(uri.into())));
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    // Expired: no more notifications, and the entry is gone.
    assert_eq!(bus.raise(ev("E_UL_CONTACT_INSERT", contact("sip:bob@3.3.3.3"))), 0);
    settle().await;
    assert!(rx.try_recv().is_err());
    assert!(!bus.has_subscribers("E_UL_CONTACT_INSERT"));
    assert_eq!(bus.ebr_stats().notified, 2);
}

#[tokio::test(start_paused = true)]
async fn expired_notify_subscriptions_are_swept_without_a_raise() {
    let (bus, _rx) = noted();
    bus.notify_on_event("E_NEVER_RAISED", filters(&[]), "r".into(), 1, Duration::from_secs(2)).unwrap();
    assert_eq!(bus.ebr_stats().notify_subscriptions, 1);
    // The registry's periodic sweep (every 5 s) removes it.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(bus.ebr_stats().notify_subscriptions, 0);
}

#[tokio::test(start_paused = true)]
async fn notify_runs_are_capped_and_drops_counted() {
    let (bus, mut rx) = noted_with(100, 2);
    bus.notify_on_event("E", filters(&[]), "stuck".into(), 5, Duration::from_secs(60)).unwrap();
    for _ in 0..3 {
        assert_eq!(bus.raise(ev("E", Params::new())), 1);
    }
    settle().await;
    let mut started = 0;
    while rx.try_recv().is_ok() {
        started += 1;
    }
    assert_eq!(started, 2);
    let s = bus.ebr_stats();
    assert_eq!((s.notified, s.notify_dropped), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn notify_without_a_handler_is_dropped_and_counted() {
    let bus = bus();
    bus.notify_on_event("E", filters(&[]), "r".into(), 5, Duration::from_secs(60)).unwrap();
    assert_eq!(bus.raise(ev("E", Params::new())), 1);
    assert_eq!(bus.ebr_stats().notify_dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn a_finished_transaction_cancels_its_notifications() {
    let (bus, mut rx) = noted();
    bus.notify_on_event("E", filters(&[]), "r".into(), 5, Duration::from_secs(60)).unwrap();
    bus.notify_on_event("E", filters(&["a=1"]), "r".into(), 5, Duration::from_secs(60)).unwrap();
    bus.notify_on_event("E", filters(&[]), "r".into(), 6, Duration::from_secs(60)).unwrap();
    assert_eq!(bus.cancel_notifications(5), 2);
    assert_eq!(bus.raise(ev("E", Params::new().with("a", "1"))), 1);
    assert_eq!(timeout(Duration::from_secs(1), rx.recv()).await.unwrap().unwrap().2, 6);
}

// ---------------------------------------------------------------- raise / MI

#[tokio::test(start_paused = true)]
async fn a_raise_with_no_subscriber_at_all() {
    let bus = bus();
    assert!(!bus.has_subscribers("E_NOBODY"));
    assert_eq!(bus.raise(ev("E_NOBODY", Params::new().with("x", 1))), 0);
    assert_eq!(bus.ebr_stats(), EbrStats::default());
}

#[tokio::test(start_paused = true)]
async fn ebr_listeners_count_for_raise_and_probe() {
    // MI raise_event answers 480 unless has_subscribers, and reports what
    // raise reached: an event only EBR listens to must count.
    let (tx, _rx) = mpsc::unbounded_channel();
    let (events, _events) = mpsc::unbounded_channel();
    let schemes = crate::sinks::schemes(
        Some(Arc::new(crate::events::tests::Recorder(events))),
        &crate::sinks::Flatstore::default(),
    );
    let bus = EventBus::new(&EventsConfig::default(), schemes, Some(Arc::new(Notes(tx)))).expect("bus");
    let wait = bus.wait_for_event("E_DTMF", filters(&["callid=c9"]), Duration::from_secs(30)).unwrap();
    assert!(bus.has_subscribers("E_DTMF"));
    bus.notify_on_event("E_DTMF", filters(&[]), "log".into(), 3, Duration::from_secs(30)).unwrap();
    assert_eq!(bus.raise(ev("E_DTMF", Params::new().with("callid", "c9").with("digit", "5"))), 2);
    assert!(wait.await.is_some());
    assert!(bus.has_subscribers("E_DTMF"), "the notify subscription stays");
    // Together with an EVI subscriber.
    bus.subscribe("E_DTMF", "route:dtmf", None).unwrap();
    assert_eq!(bus.raise(ev("E_DTMF", Params::new())), 2);
}

// ---------------------------------------------------------------- scale

/// 10,000 waiters, each on its own Call-ID, each woken by its own event.
/// Real time: this measures that a raise does not scan every waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_waiters_each_woken_by_its_own_event() {
    const N: usize = 10_000;
    let bus = bus();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for n in 0..N {
        let wait = bus
            .wait_for_event("E_DTMF", filters(&[&format!("callid={n}"), "digit=*"]), Duration::from_secs(120))
            .unwrap();
        let done = done_tx.clone();
        tokio::spawn(async move {
            if let Some(event) = wait.await {
                let _ = done.send((n, event));
            }
        });
    }
    assert_eq!(bus.ebr_stats().waiters, N);
    let start = std::time::Instant::now();
    let mut reached = 0;
    for n in (0..N).rev() {
        reached += bus.raise(ev("E_DTMF", Params::new().with("callid", n.to_string()).with("digit", "1")));
    }
    let raising = start.elapsed();
    assert_eq!(reached, N);
    let mut seen = vec![false; N];
    for _ in 0..N {
        let (n, event) = timeout(Duration::from_secs(20), done_rx.recv()).await.expect("all woken").expect("open");
        assert_eq!(event.param("callid"), Some(&Value::Str(n.to_string())));
        assert!(!std::mem::replace(&mut seen[n], true), "woken twice: {n}");
    }
    let total = start.elapsed();
    // Indexed: ~µs per raise even in a debug build; a linear scan of 10k
    // glob filters per raise would take tens of seconds here.
    assert!(raising < Duration::from_secs(3), "10k raises took {raising:?}");
    eprintln!("10k waiters: raises {raising:?}, all resumed after {total:?}");
    assert_eq!(bus.ebr_stats().waiters, 0);
    assert_eq!(bus.ebr_stats().woken, N as u64);
}
