//! Registry tests: payload format, publish, subscribe/refresh/expiry/
//! unsubscribe, listing shapes, non-blocking raise, and the usrloc bridge.
//! Destinations here are `route:` sinks with an in-process handler (and a
//! UDP socket nobody reads); the real-network transports are in `tests_sinks`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;

/// Records `(route, event)` for every route except `stuck`, which never completes.
pub(crate) struct Recorder(pub mpsc::UnboundedSender<(Arc<str>, Event)>);

impl EventRouteHandler for Recorder {
    fn run_event_route(&self, route: Arc<str>, event: Event) -> BoxFut {
        if &*route == "stuck" {
            return Box::pin(std::future::pending());
        }
        let _ = self.0.send((route, event));
        Box::pin(async {})
    }
}

/// A bus with sipbox's transports (the registry is tested with real sinks);
/// `route:` subscribers run on `handler`.
pub(crate) fn bus_with(cfg: &EventsConfig, handler: Option<Arc<dyn EventRouteHandler>>) -> EventBus {
    EventBus::new(cfg, crate::sinks::schemes(handler, &crate::sinks::Flatstore::default()), None).expect("bus")
}

/// Settings whose `flatstore:` and `unix:` destinations may be anywhere
/// under the system temp dir (where the tests' temp dirs are).
pub(crate) fn tmp_cfg() -> EventsConfig {
    let tmp = std::env::temp_dir().display().to_string();
    EventsConfig { flatstore_dirs: vec![tmp.clone()], unix_socket_dirs: vec![tmp], ..EventsConfig::default() }
}

/// A bus with the default settings and no event route handler.
pub(crate) fn bus() -> EventBus {
    bus_with(&EventsConfig::default(), None)
}

/// A bus whose `route:` deliveries are recorded (see [`Recorder`]).
pub(crate) fn recording_bus(cfg: &EventsConfig) -> (EventBus, mpsc::UnboundedReceiver<(Arc<str>, Event)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (bus_with(cfg, Some(Arc::new(Recorder(tx)))), rx)
}

pub(crate) async fn next(rx: &mut mpsc::UnboundedReceiver<(Arc<str>, Event)>) -> (Arc<str>, Event) {
    timeout(Duration::from_secs(5), rx.recv()).await.expect("event within 5 s").expect("handler alive")
}

fn stat(bus: &EventBus, name: &str) -> u64 {
    bus.stats().into_iter().find(|(n, _)| n == name).map_or(0, |(_, v)| v)
}

#[test]
fn payload_is_opensips_json() {
    let ev = Event::new("E_TEST", Params::new().with("ip", "10.0.0.1").with("n", 42).with("none", Value::Null));
    assert_eq!(
        ev.to_jsonrpc_string(),
        r#"{"jsonrpc":"2.0","method":"E_TEST","params":{"ip":"10.0.0.1","n":42,"none":null}}"#
    );
    assert_eq!(
        ev.to_jsonrpc(),
        json!({"jsonrpc":"2.0","method":"E_TEST","params":{"ip":"10.0.0.1","n":42,"none":null}})
    );
    // Order is kept even when names sort differently.
    let ev = Event::new("E", Params::new().with("z", 1).with("a", 2));
    assert_eq!(ev.to_jsonrpc_string(), r#"{"jsonrpc":"2.0","method":"E","params":{"z":1,"a":2}}"#);
    // Positional when the first param has no name; no "params" when empty.
    let mut p = Params::new();
    p.push_positional("1");
    p.push_positional(-7);
    assert_eq!(Event::new("E", p).to_jsonrpc_string(), r#"{"jsonrpc":"2.0","method":"E","params":["1",-7]}"#);
    assert_eq!(Event::new("E", Params::new()).to_jsonrpc_string(), r#"{"jsonrpc":"2.0","method":"E"}"#);
    assert_eq!(Event::new("E", Params::new()).to_jsonrpc(), json!({"jsonrpc":"2.0","method":"E"}));
    // Escaping as cJSON: quotes, backslash, control characters; '/' and UTF-8 as is.
    let ev = Event::new("E", Params::new().with("s", "a\"b\\c\nd\u{1}/é"));
    let text = ev.to_jsonrpc_string();
    assert_eq!(text, "{\"jsonrpc\":\"2.0\",\"method\":\"E\",\"params\":{\"s\":\"a\\\"b\\\\c\\nd\\u0001/é\"}}");
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["params"]["s"], "a\"b\\c\nd\u{1}/é");
}

#[test]
fn event_param_lookup_is_case_sensitive() {
    let ev = Event::new("E", Params::new().with("ip", "1.2.3.4"));
    assert_eq!(ev.param("ip"), Some(&Value::Str("1.2.3.4".into())));
    assert_eq!(ev.param("IP"), None);
}

#[tokio::test]
async fn publish_ids_are_dense_idempotent_and_case_sensitive() {
    let bus = bus();
    let events = bus.events();
    // Predefined events come first, in order, ids 0..
    for (i, name) in PREDEFINED_EVENTS.iter().enumerate() {
        assert_eq!(events[i], (name.to_string(), i as u32));
    }
    let n = PREDEFINED_EVENTS.len() as u32;
    assert_eq!(bus.publish("E_MY"), Ok(n));
    assert_eq!(bus.publish("E_MY"), Ok(n));
    assert_eq!(bus.publish("e_my"), Ok(n + 1));
    assert_eq!(bus.event_id("E_MY"), Some(n));
    assert_eq!(bus.events().len() as u32, n + 2);
    assert!(matches!(bus.publish(""), Err(EventError::BadName(_))));
    assert!(matches!(bus.publish(&"E".repeat(65)), Err(EventError::BadName(_))));
    assert_eq!(bus.publish(&"E".repeat(64)), Ok(n + 2));
    assert!(matches!(bus.publish("E X"), Err(EventError::BadName(_))));
}

#[tokio::test]
async fn raise_without_subscribers_publishes_and_reaches_nobody() {
    let bus = bus();
    assert_eq!(bus.raise(Event::new("E_CUSTOM", Params::new().with("a", 1))), 0);
    assert!(bus.event_id("E_CUSTOM").is_some(), "raise publishes a custom event");
    assert!(!bus.has_subscribers("E_CUSTOM"));
    assert_eq!(stat(&bus, "events_raised"), 1);
}

#[tokio::test]
async fn route_subscriber_receives_the_event() {
    let (bus, mut rx) = recording_bus(&EventsConfig::default());
    bus.subscribe("E_PIKE_BLOCKED", "route:blocked", Some(60)).unwrap();
    assert!(bus.has_subscribers("E_PIKE_BLOCKED"));
    assert_eq!(bus.raise(Event::new("E_PIKE_BLOCKED", Params::new().with("ip", "192.0.2.1"))), 1);
    let (route, ev) = next(&mut rx).await;
    assert_eq!(&*route, "blocked");
    assert_eq!(ev.param("ip"), Some(&Value::Str("192.0.2.1".into())));
    // route: never expires, whatever expire was asked.
    let list = bus.subscribers(Some("E_PIKE_BLOCKED")).unwrap();
    assert_eq!(list["Event"]["Subscribers"][0], json!({"socket":"route:blocked","expire":"never"}));
}

#[tokio::test]
async fn route_without_handler_counts_failed() {
    let bus = bus();
    bus.subscribe("E_X", "route:nobody", None).unwrap();
    bus.raise(Event::new("E_X", Params::new()));
    timeout(Duration::from_secs(5), async {
        while stat(&bus, "events_failed:route:nobody") != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("failure counted");
    assert_eq!(stat(&bus, "events_delivered"), 0);
}

#[tokio::test(start_paused = true)]
async fn expiry_refresh_and_unsubscribe() {
    let bus = bus();
    let sock = "udp:127.0.0.1:9";
    bus.subscribe("E_X", sock, Some(10)).unwrap();
    let first = bus.subscribers(Some("E_X")).unwrap();
    assert_eq!(first["Event"]["Subscribers"][0], json!({"socket": sock, "expire": 10, "ttl": 10}));

    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(bus.has_subscribers("E_X"));
    // Re-subscribing refreshes: a new 10 s from now, still one subscriber.
    bus.subscribe("E_X", sock, Some(10)).unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(bus.has_subscribers("E_X"), "refreshed at t=6, alive at t=12");
    let list = bus.subscriber("E_X", sock).unwrap();
    assert_eq!(list["Event"]["Subscriber"], json!({"socket": sock, "expire": 10, "ttl": 4}));
    assert_eq!(bus.subscribers(Some("E_X")).unwrap()["Event"]["Subscribers"].as_array().unwrap().len(), 1);

    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(!bus.has_subscribers("E_X"), "expired at t=16 < 17");
    assert_eq!(bus.raise(Event::new("E_X", Params::new())), 0);
    assert_eq!(bus.subscription_count(), 0, "raise purged the expired subscriber");
    assert_eq!(bus.subscribers(None).unwrap(), json!({"Events": []}));

    // Never-expiring, then unsubscribed with 0.
    bus.subscribe("E_X", sock, None).unwrap();
    tokio::time::advance(Duration::from_secs(100_000)).await;
    assert!(bus.has_subscribers("E_X"));
    bus.subscribe("E_X", sock, Some(0)).unwrap();
    assert!(!bus.has_subscribers("E_X"));
    assert_eq!(bus.subscription_count(), 0);
    // Unsubscribing what does not exist is fine.
    bus.subscribe("E_NEVER_SEEN", sock, Some(0)).unwrap();
}

#[tokio::test(start_paused = true)]
async fn periodic_sweep_purges_events_never_raised() {
    let bus = bus();
    bus.subscribe("E_QUIET", "udp:127.0.0.1:9", Some(1)).unwrap();
    assert_eq!(bus.subscription_count(), 1);
    // Nothing raises or lists E_QUIET; only the sweep can remove it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(bus.subscription_count(), 0);
}

#[tokio::test]
async fn subscribers_list_shapes_and_errors() {
    let bus = bus();
    bus.subscribe("E_A", "udp:127.0.0.1:9", None).unwrap();
    bus.subscribe("E_A", "route:r", None).unwrap();
    let id = bus.event_id("E_A").unwrap();
    let all = bus.subscribers(None).unwrap();
    // Only events with subscribers; newest subscriber first (OpenSIPS prepends).
    assert_eq!(
        all,
        json!({"Events": [{"name": "E_A", "id": id, "Subscribers": [
            {"socket": "route:r", "expire": "never"},
            {"socket": "udp:127.0.0.1:9", "expire": "never"},
        ]}]})
    );
    assert_eq!(bus.subscribers(Some("E_A")).unwrap()["Event"]["name"], "E_A");
    assert_eq!(bus.subscribers(Some("E_NOPE")), Err(EventError::NotPublished("E_NOPE".into())));
    // A published event without subscribers lists an empty array.
    assert_eq!(bus.subscribers(Some("E_CORE_THRESHOLD")).unwrap()["Event"]["Subscribers"], json!([]));
    assert!(matches!(bus.subscriber("E_A", "udp:127.0.0.1:10"), Err(EventError::NoSuchSubscriber(_))));
    assert!(matches!(bus.subscriber("E_NOPE", "route:r"), Err(EventError::NotPublished(_))));
}

#[tokio::test]
async fn bad_subscriptions_name_the_problem() {
    let bus = bus();
    let err = |s: &str| bus.subscribe("E_X", s, None).unwrap_err();
    assert!(matches!(err("smtp:foo"), EventError::UnknownTransport(_)));
    assert!(matches!(err("nocolon"), EventError::UnknownTransport(_)));
    assert!(matches!(err("udp:127.0.0.1"), EventError::BadSocket(m) if m.contains("missing port")));
    assert!(matches!(err("udp:127.0.0.1:0"), EventError::BadSocket(m) if m.contains("port")));
    assert!(matches!(err("udp:127.0.0.1:99999"), EventError::BadSocket(_)));
    assert!(matches!(err("tcp::9999"), EventError::BadSocket(m) if m.contains("missing host")));
    assert!(matches!(err("virtual:SOMETIMES udp:1.2.3.4:5"), EventError::BadSocket(m) if m.contains("policy")));
    assert!(matches!(err("virtual:FAILOVER"), EventError::BadSocket(_)));
    // Default: no flatstore_dirs, so flatstore is refused, naming the setting.
    assert!(
        matches!(err("flatstore:/tmp/x.log"), EventError::DestinationRefused(m) if m.contains("events.flatstore_dirs"))
    );
    let tmp = bus_with(&tmp_cfg(), None);
    let tmp_err = |s: &str| tmp.subscribe("E_X", s, None).unwrap_err();
    let missing = std::env::temp_dir().join("nonexistent-sipbox-dir/x.log");
    assert!(
        matches!(tmp_err(&format!("flatstore:{}", missing.display())), EventError::DestinationRefused(m) if m.contains("no directory"))
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(
        matches!(tmp_err(&format!("flatstore:{}", dir.path().display())), EventError::Refused(m) if m.contains("directory"))
    );
    assert!(matches!(bus.subscribe("BAD NAME", "route:r", None), Err(EventError::BadName(_))));
    assert_eq!(bus.subscription_count(), 0);
    // The messages are meant for humans (MI errors).
    assert_eq!(err("udp:host").to_string(), "bad event socket: udp:host: missing port");
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let cfg = EventsConfig { queue_len: 4, ..EventsConfig::default() };
    let (bus, _rx) = recording_bus(&cfg);
    bus.subscribe("E_FLOOD", "route:stuck", None).unwrap();
    let start = std::time::Instant::now();
    let reached: usize = (0..100).map(|i| bus.raise(Event::new("E_FLOOD", Params::new().with("i", i)))).sum();
    assert!(start.elapsed() < Duration::from_secs(1), "raise never waits for the sink");
    let dropped = stat(&bus, "events_dropped:route:stuck");
    assert_eq!(reached as u64 + dropped, 100);
    assert!((4..=5).contains(&reached), "queue of 4 (+1 in the sink), got {reached}");
    assert_eq!(stat(&bus, "events_dropped"), dropped);
}

#[tokio::test]
async fn a_stuck_sink_does_not_delay_another() {
    let (bus, mut rx) = recording_bus(&EventsConfig::default());
    bus.subscribe("E_X", "route:stuck", None).unwrap();
    bus.subscribe("E_X", "route:ok", None).unwrap();
    for i in 0..20 {
        assert_eq!(bus.raise(Event::new("E_X", Params::new().with("i", i))), 2);
    }
    for i in 0..20 {
        let (route, ev) = next(&mut rx).await;
        assert_eq!(&*route, "ok");
        assert_eq!(ev.param("i"), Some(&Value::Int(i)));
    }
    assert_eq!(stat(&bus, "events_delivered:route:ok"), 20);
}

#[tokio::test]
async fn static_subscriptions_from_config() {
    let cfg: EventsConfig = toml::from_str(
        r#"
        queue_len = 16
        subscribe = [
          { event = "E_STATIC", socket = "route:st" },
          { event = "E_UL_AOR_INSERT", socket = "udp:127.0.0.1:9", expire = 30 },
        ]
        "#,
    )
    .unwrap();
    cfg.validate().unwrap();
    let bus = bus_with(&cfg, None);
    assert!(bus.has_subscribers("E_STATIC"));
    let sub = bus.subscriber("E_UL_AOR_INSERT", "udp:127.0.0.1:9").unwrap();
    assert_eq!(sub["Event"]["Subscriber"]["expire"], 30);

    let bad: EventsConfig = toml::from_str(r#"subscribe = [{ event = "E", socket = "nope:x" }]"#).unwrap();
    let schemes = crate::sinks::schemes(None, &crate::sinks::Flatstore::default());
    assert!(matches!(EventBus::new(&bad, schemes, None), Err(EventError::UnknownTransport(_))));
    assert!(toml::from_str::<EventsConfig>("queue_size = 3").is_err(), "unknown keys rejected");
    let zero = EventsConfig { queue_len: 0, ..EventsConfig::default() };
    assert!(zero.validate().is_err());
    let perms = EventsConfig { flatstore_file_permissions: "rw".into(), ..EventsConfig::default() };
    assert!(perms.validate().is_err());
}

#[tokio::test]
async fn usrloc_bridge_raises_contact_insert_for_a_register() {
    use crate::location::{Location, LocationConfig};
    use crate::sip::{Bytes, Message};
    use crate::transport::Proto;

    let (bus, mut rx) = recording_bus(&EventsConfig::default());
    bus.subscribe(usrloc::E_UL_AOR_INSERT, "route:ul", None).unwrap();
    bus.subscribe(usrloc::E_UL_CONTACT_INSERT, "route:ul", None).unwrap();
    bus.subscribe(usrloc::E_UL_CONTACT_UPDATE, "route:ul", None).unwrap();
    let cfg = LocationConfig { db_path: None, ..LocationConfig::default() };
    let loc = Location::open_with_listener(&cfg, usrloc::listener(bus.clone())).unwrap();

    let register = |cseq: u32| {
        Message::parse(Bytes::from(format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=f1\r\n\
             To: <sip:alice@example.com>\r\n\
             Call-ID: reg-1@ua\r\n\
             CSeq: {cseq} REGISTER\r\n\
             User-Agent: test-ua/1.0\r\n\
             Contact: <sip:alice@10.0.0.5:5062>;q=0.5\r\n\
             Expires: 600\r\n\
             Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = loc.save(&register(1), "192.0.2.10:5060".parse().unwrap(), Proto::Udp);
    assert_eq!(out.code, 200);

    let (_, aor) = next(&mut rx).await;
    assert_eq!(&*aor.name, usrloc::E_UL_AOR_INSERT);
    assert_eq!(aor.params, Params::new().with("domain", "location").with("aor", "alice"));

    let (_, ev) = next(&mut rx).await;
    assert_eq!(&*ev.name, usrloc::E_UL_CONTACT_INSERT);
    let names: Vec<_> = ev.params.0.iter().map(|(n, _)| n.clone().unwrap()).collect();
    assert_eq!(
        names,
        [
            "domain",
            "aor",
            "uri",
            "received",
            "path",
            "qval",
            "user_agent",
            "socket",
            "bflags",
            "expires",
            "callid",
            "cseq",
            "attr",
            "latency",
            "shtag"
        ]
    );
    let s = |v: &str| Value::Str(v.into());
    assert_eq!(ev.param("aor"), Some(&s("alice")));
    assert_eq!(ev.param("uri"), Some(&s("sip:alice@10.0.0.5:5062")));
    // The REGISTER came from elsewhere than the Contact (NAT): received is set.
    assert_eq!(ev.param("received"), Some(&s("sip:192.0.2.10:5060")));
    assert_eq!(ev.param("qval"), Some(&Value::Int(5)));
    assert_eq!(ev.param("user_agent"), Some(&s("test-ua/1.0")));
    assert_eq!(ev.param("callid"), Some(&s("reg-1@ua")));
    assert_eq!(ev.param("cseq"), Some(&Value::Int(1)));
    let Some(Value::Int(expires)) = ev.param("expires") else { panic!("expires is an int") };
    assert!((before as i64 + 590..=before as i64 + 610).contains(expires), "unix timestamp, got {expires}");

    // A re-REGISTER of the same binding is an UPDATE in OpenSIPS.
    let out = loc.save(&register(2), "192.0.2.10:5060".parse().unwrap(), Proto::Udp);
    assert_eq!(out.code, 200);
    let (_, ev) = next(&mut rx).await;
    assert_eq!(&*ev.name, usrloc::E_UL_CONTACT_UPDATE);
    assert_eq!(ev.param("cseq"), Some(&Value::Int(2)));
}

/// Holds a token for as long as its route future lives (forever, unless aborted).
struct Hold(Arc<()>);

impl EventRouteHandler for Hold {
    fn run_event_route(&self, _route: Arc<str>, _event: Event) -> BoxFut {
        let token = self.0.clone();
        Box::pin(async move {
            let _token = token;
            std::future::pending::<()>().await;
        })
    }
}

#[tokio::test]
async fn unsubscribing_stops_a_stuck_delivery_task() {
    let token = Arc::new(());
    let bus = bus_with(&EventsConfig::default(), Some(Arc::new(Hold(token.clone()))));
    bus.subscribe("E_X", "route:hold", None).unwrap();
    bus.raise(Event::new("E_X", Params::new()));
    // Strong refs besides deliveries: this test's, the handler's, and `wait`'s own clone.
    let wait = |want: usize| {
        let token = token.clone();
        async move {
            timeout(Duration::from_secs(5), async {
                while Arc::strong_count(&token) != want + 3 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{want} deliveries in flight"));
        }
    };
    wait(1).await;
    // route: never expires, but an explicit 0 still unsubscribes it.
    bus.subscribe("E_X", "route:hold", Some(0)).unwrap();
    assert!(!bus.has_subscribers("E_X"));
    wait(0).await;
}
