//! MI Event Interface commands end to end: a real UDP listener subscribed
//! over the MI receives the OpenSIPS JSON of `raise_event`; every error code
//! of `event_subscribe`, `subscribers_list`, `raise_event` and
//! `evi_flat_rotate`; call-api's datagram subscribe/unsubscribe.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::UdpSocket;

use super::tests::{WAIT, context, context_with, start, udp_call};
use crate::events::EventsConfig;

/// A UDP event listener: its `udp:` socket and the next datagram's text.
struct Listener {
    sock: UdpSocket,
}

impl Listener {
    async fn bind() -> Listener {
        Listener { sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind listener") }
    }

    fn socket(&self) -> String {
        format!("udp:{}", self.sock.local_addr().expect("addr"))
    }

    async fn next(&self) -> String {
        let mut buf = vec![0u8; 65_536];
        let (n, _) =
            tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf)).await.expect("event in time").expect("recv");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 payload")
    }
}

/// Polls `check` until it yields, at most [`WAIT`].
async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let poll = async {
        loop {
            if let Some(v) = check() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, poll).await.expect("condition within the bound")
}

#[tokio::test]
async fn subscribe_then_raise_delivers_opensips_json() {
    let mi = start(context()).await;
    let listener = Listener::bind().await;
    let socket = listener.socket();
    // opensips-cli sends every value as a string, including expire.
    let ok = mi.call("event_subscribe", json!(["E_DTMF", socket, "60"])).await.expect("subscribe");
    assert_eq!(ok, json!("OK"));

    mi.call("raise_event", json!(["E_DTMF", r#"{"digit":"5","duration":120,"leg":"caller"}"#])).await.expect("named");
    assert_eq!(
        listener.next().await,
        r#"{"jsonrpc":"2.0","method":"E_DTMF","params":{"digit":"5","duration":120,"leg":"caller"}}"#
    );
    mi.call("evi:raise", json!({"event": "E_DTMF", "params": ["a", 7]})).await.expect("positional");
    assert_eq!(listener.next().await, r#"{"jsonrpc":"2.0","method":"E_DTMF","params":["a","7"]}"#);
    mi.call("raise_event", json!(["E_DTMF"])).await.expect("no params");
    assert_eq!(listener.next().await, r#"{"jsonrpc":"2.0","method":"E_DTMF"}"#);

    let listed = mi.call("events_list", Value::Null).await.expect("events_list");
    let events = listed["Events"].as_array().expect("Events");
    assert!(events.iter().any(|e| e["name"] == "E_UL_CONTACT_INSERT" && e["id"].is_u64()), "{listed}");
    let dtmf_id = events.iter().find(|e| e["name"] == "E_DTMF").expect("custom event published")["id"].clone();

    let all = mi.call("subscribers_list", Value::Null).await.expect("all subscribers");
    assert_eq!(all["Events"].as_array().map(Vec::len), Some(1), "only events with subscribers: {all}");
    let one = mi.call("subscribers_list", json!(["E_DTMF"])).await.expect("one event");
    assert_eq!(one["Event"]["id"], dtmf_id);
    let sub = &one["Event"]["Subscribers"][0];
    assert_eq!((&sub["socket"], &sub["expire"]), (&json!(socket), &json!(60)));
    let by_socket = mi.call("subscribers_list", json!({"event": "E_DTMF", "socket": socket})).await.expect("socket");
    assert_eq!(by_socket["Event"]["Subscriber"]["socket"], json!(socket));

    // Re-subscribing refreshes with the new expire; expire 0 unsubscribes.
    mi.call("subscribe", json!({"event": "E_DTMF", "socket": socket, "expire": 300})).await.expect("refresh");
    let one = mi.call("subscribers_list", json!(["E_DTMF"])).await.expect("listing");
    assert_eq!(one["Event"]["Subscribers"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["Event"]["Subscribers"][0]["expire"], 300);
    mi.call("event_subscribe", json!(["E_DTMF", socket, 0])).await.expect("unsubscribe");
    let err = mi.call_err("raise_event", json!(["E_DTMF"])).await;
    assert_eq!((err.code, err.message.as_str()), (480, "Temporarily Unavailable"));

    let delivered = mi.call("get_statistics", json!([[format!("events_delivered:{socket}")]])).await.expect("stats");
    assert_eq!(delivered[format!("evi:events_delivered:{socket}")], 3);
}

#[tokio::test]
async fn call_api_style_datagram_subscription() {
    let mi = start(context()).await;
    let listener = Listener::bind().await;
    let socket = listener.socket();
    let subscribe = json!({"jsonrpc": "2.0", "id": 1, "method": "event_subscribe",
        "params": {"event": "E_CALL_TRANSFER", "socket": socket}});
    let reply = udp_call(&mi, subscribe.to_string().as_bytes()).await;
    assert_eq!(reply, json!({"jsonrpc": "2.0", "result": "OK", "id": 1}));
    let listing = mi.call("subscribers_list", json!(["E_CALL_TRANSFER", socket])).await.expect("listed");
    assert_eq!(listing["Event"]["Subscriber"]["expire"], 3600, "the MI default expire");

    let raise = json!({"jsonrpc": "2.0", "id": 2, "method": "raise_event",
        "params": {"event": "E_CALL_TRANSFER", "params": "{\"callid\":\"abc\",\"state\":\"ok\"}"}});
    assert_eq!(udp_call(&mi, raise.to_string().as_bytes()).await["result"], "OK");
    assert_eq!(
        listener.next().await,
        r#"{"jsonrpc":"2.0","method":"E_CALL_TRANSFER","params":{"callid":"abc","state":"ok"}}"#
    );

    let unsubscribe = json!({"jsonrpc": "2.0", "id": 3, "method": "event_subscribe",
        "params": {"event": "E_CALL_TRANSFER", "socket": socket, "expire": 0}});
    assert_eq!(udp_call(&mi, unsubscribe.to_string().as_bytes()).await["result"], "OK");
    let err = mi.call_err("subscribers_list", json!(["E_CALL_TRANSFER", socket])).await;
    assert_eq!((err.code, err.message.as_str()), (404, "Subscriber does not exist"));
}

#[tokio::test]
async fn subscribe_errors_name_the_problem() {
    let mi = start(context()).await;
    for expire in [json!(-5), json!("-1")] {
        let err = mi.call_err("event_subscribe", json!(["E_X", "udp:127.0.0.1:9", expire])).await;
        assert_eq!(
            (err.code, err.message.as_str(), err.data.as_deref()),
            (-32602, "Invalid params", Some("Negative expire value"))
        );
    }
    let err = mi.call_err("event_subscribe", json!(["E_X", "udp:127.0.0.1:9", "soon"])).await;
    assert_eq!(err.data.as_deref(), Some("Bad type for parameter 'expire'"));
    let err = mi.call_err("event_subscribe", json!(["E_X", "udp:127.0.0.1:9", 1, 2])).await;
    assert_eq!(err.code, -32602, "extra params are rejected");
    let err = mi.call_err("event_subscribe", json!({"event": "E_X", "socket": "udp:127.0.0.1:9", "expires": 5})).await;
    assert!(err.data.as_deref().is_some_and(|d| d.contains("'expires'")), "{err}");

    let err = mi.call_err("event_subscribe", json!(["E_X", "carrier-pigeon:coop"])).await;
    assert_eq!((err.code, err.message.as_str()), (400, "Bad parameter value"));
    assert!(err.data.as_deref().is_some_and(|d| d.contains("carrier-pigeon")), "{err}");
    let err = mi.call_err("event_subscribe", json!(["E_X", "udp:127.0.0.1"])).await;
    assert_eq!(err.code, 400);
    assert!(err.data.as_deref().is_some_and(|d| d.contains("udp")), "{err}");
    let err = mi.call_err("event_subscribe", json!(["E_X", "flatstore:/nonexistent-sipbox-dir/events.log"])).await;
    assert_eq!(err.code, 400);
    assert!(err.data.as_deref().is_some_and(|d| d.contains("events.flatstore_dirs")), "{err}");
    let err = mi.call_err("event_subscribe", json!(["bad name", "udp:127.0.0.1:9"])).await;
    assert_eq!(err.code, 400);
    let err = mi.call_err("event_subscribe", json!(["", "udp:127.0.0.1:9"])).await;
    assert_eq!(err.code, -32602, "empty event name");

    let err = mi.call_err("subscribers_list", json!(["E_NEVER_HEARD_OF"])).await;
    assert_eq!((err.code, err.message.as_str()), (404, "Event not published"));
    let err = mi.call_err("subscribers_list", json!(["E_PIKE_BLOCKED", "udp:127.0.0.1:9"])).await;
    assert_eq!((err.code, err.message.as_str()), (404, "Subscriber does not exist"));
}

#[tokio::test]
async fn raise_errors_follow_opensips() {
    let mi = start(context()).await;
    let err = mi.call_err("raise_event", json!(["E_NEVER_HEARD_OF"])).await;
    assert_eq!((err.code, err.message.as_str()), (404, "Event not registered"));
    let err = mi.call_err("raise_event", json!(["E_PIKE_BLOCKED", ["1.2.3.4"]])).await;
    assert_eq!((err.code, err.message.as_str()), (480, "Temporarily Unavailable"));

    let listener = Listener::bind().await;
    mi.call("event_subscribe", json!(["E_PIKE_BLOCKED", listener.socket()])).await.expect("subscribe");
    let err = mi.call_err("raise_event", json!(["E_PIKE_BLOCKED", "[\"not\", \"an object\"]"])).await;
    assert_eq!((err.code, err.message.as_str()), (400, "Bad Params"));
    let err = mi.call_err("raise_event", json!(["E_PIKE_BLOCKED", [{"nested": true}]])).await;
    assert_eq!((err.code, err.message.as_str()), (400, "Bad Params"));
    let err = mi.call_err("raise_event", json!(["E_PIKE_BLOCKED", true])).await;
    assert_eq!((err.code, err.message.as_str()), (400, "No Params"));
    // A JSON object in place of the string is accepted (sorted keys).
    mi.call("raise_event", json!({"event": "E_PIKE_BLOCKED", "params": {"ip": "1.2.3.4"}})).await.expect("object");
    assert_eq!(listener.next().await, r#"{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"1.2.3.4"}}"#);
}

#[tokio::test]
async fn flatstore_rotation_over_mi() {
    let tmp = std::env::temp_dir().display().to_string();
    let mi = start(context_with(&EventsConfig { flatstore_dirs: vec![tmp], ..EventsConfig::default() })).await;
    let err = mi.call_err("evi_flat_rotate", json!(["/no/such/file.log"])).await;
    assert_eq!((err.code, err.message.as_str()), (400, "File not found"));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.log");
    let path_str = path.to_str().expect("UTF-8 path").to_owned();
    mi.call("event_subscribe", json!(["E_ROT", format!("flatstore:{path_str}")])).await.expect("subscribe");
    mi.call("raise_event", json!(["E_ROT", ["one"]])).await.expect("raise");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).ok();
    wait_for(|| read(&path).filter(|t| t.contains("E_ROT,one"))).await;

    // logrotate: move the file away, then tell the MI; the next line goes to a new file.
    let moved = dir.path().join("events.log.1");
    std::fs::rename(&path, &moved).expect("rename");
    assert_eq!(
        mi.call("event_flatstore:rotate", json!({"path_to_file": path_str})).await.expect("rotate"),
        json!("OK")
    );
    mi.call("raise_event", json!(["E_ROT", ["two"]])).await.expect("raise");
    let fresh = wait_for(|| read(&path).filter(|t| t.contains("E_ROT,two"))).await;
    assert!(!fresh.contains("one"), "the new file starts empty: {fresh:?}");
    assert!(read(&moved).is_some_and(|t| !t.contains("two")), "the moved file is left alone");
}

/// Issue 17: `event_subscribe` pointed events at cloud metadata, a DNS server
/// and the systemd notify socket. Each is now refused with an error naming
/// the setting, and counted.
#[tokio::test]
async fn subscribe_refuses_metadata_link_local_and_unlisted_destinations() {
    let mi = start(context()).await;
    for socket in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "udp:169.254.169.254:53",
        "tcp:[fe80::1]:80",
        "udp:[::ffff:169.254.169.254]:53",
        "virtual:FAILOVER udp:127.0.0.1:9 http://169.254.169.254/",
    ] {
        let err = mi.call_err("event_subscribe", json!(["E_X", socket])).await;
        assert_eq!((err.code, err.message.as_str()), (400, "Bad parameter value"), "{socket}");
        assert!(err.data.as_deref().is_some_and(|d| d.contains("events.deny_destinations")), "{socket}: {err}");
    }
    let err = mi.call_err("event_subscribe", json!(["E_X", "unix:/run/systemd/notify"])).await;
    assert_eq!(err.code, 400);
    assert!(err.data.as_deref().is_some_and(|d| d.contains("events.unix_socket_dirs")), "{err}");
    let stats = mi.ctx.bus.stats();
    let stat = |name: &str| stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(stat("events_subscribe_refused_destination"), Some(7));
    assert_eq!(stat("events_subscriptions"), Some(0));

    // An allow-list: 10.0.0.1 is not in it.
    let cfg = EventsConfig { allow_destinations: vec!["127.0.0.0/8".into()], ..EventsConfig::default() };
    let mi = start(context_with(&cfg)).await;
    let err = mi.call_err("event_subscribe", json!(["E_X", "udp:10.0.0.1:53"])).await;
    assert!(err.data.as_deref().is_some_and(|d| d.contains("events.allow_destinations")), "{err}");
    mi.call("event_subscribe", json!(["E_X", "udp:127.0.0.1:9"])).await.expect("loopback allowed");
}

/// Subscriptions are capped per destination and in total; over a cap the
/// MI answers "Subscription limit reached" naming the setting; a refresh of
/// an existing subscription is not a new one.
#[tokio::test]
async fn subscriptions_are_capped_per_destination_and_in_total() {
    let cfg = EventsConfig { max_subscriptions: 3, max_subscriptions_per_destination: 2, ..EventsConfig::default() };
    let mi = start(context_with(&cfg)).await;
    mi.call("event_subscribe", json!(["E_1", "udp:127.0.0.1:9"])).await.expect("1st");
    mi.call("event_subscribe", json!(["E_2", "udp:127.0.0.1:9"])).await.expect("2nd");
    mi.call("event_subscribe", json!(["E_2", "udp:127.0.0.1:9"])).await.expect("a refresh is not counted");
    let err = mi.call_err("event_subscribe", json!(["E_3", "udp:127.0.0.1:9"])).await;
    assert_eq!((err.code, err.message.as_str()), (400, "Subscription limit reached"));
    assert!(err.data.as_deref().is_some_and(|d| d.contains("events.max_subscriptions_per_destination")), "{err}");
    mi.call("event_subscribe", json!(["E_3", "udp:127.0.0.1:10"])).await.expect("3rd, another destination");
    let err = mi.call_err("event_subscribe", json!(["E_4", "udp:127.0.0.1:11"])).await;
    assert!(err.data.as_deref().is_some_and(|d| d.contains("events.max_subscriptions =")), "{err}");
    // Unsubscribing makes room again.
    mi.call("event_subscribe", json!(["E_1", "udp:127.0.0.1:9", 0])).await.expect("unsubscribe");
    mi.call("event_subscribe", json!(["E_4", "udp:127.0.0.1:11"])).await.expect("room again");
    let stats = mi.ctx.bus.stats();
    let stat = |name: &str| stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(stat("events_subscribe_refused_limit"), Some(2));
    assert_eq!(stat("events_subscriptions"), Some(3));
}

/// Issue 17: a crafted `raise_event` appended an `authorized_keys` line to a
/// file of the attacker's choice. Outside `flatstore_dirs` the subscription
/// is refused; inside, every event stays one line whatever its values hold.
#[tokio::test]
async fn flatstore_cannot_write_outside_its_dirs_or_forge_lines() {
    let home = tempfile::tempdir().expect("tmp");
    let keys = home.path().join("authorized_keys");
    let mi = start(context()).await;
    let err = mi.call_err("event_subscribe", json!(["E_K", format!("flatstore:{}", keys.display())])).await;
    assert!(err.data.as_deref().is_some_and(|d| d.contains("events.flatstore_dirs")), "{err}");

    let logs = home.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    std::os::unix::fs::symlink(home.path(), logs.join("up")).expect("symlink");
    let cfg = EventsConfig { flatstore_dirs: vec![logs.display().to_string()], ..EventsConfig::default() };
    let mi = start(context_with(&cfg)).await;
    for escape in [
        format!("{}/../authorized_keys", logs.display()),
        format!("{}/up/authorized_keys", logs.display()),
        keys.display().to_string(),
    ] {
        let err = mi.call_err("event_subscribe", json!(["E_K", format!("flatstore:{escape}")])).await;
        assert_eq!(err.code, 400, "{escape}");
    }
    assert!(!keys.exists(), "nothing written outside flatstore_dirs");

    let log = logs.join("events.log");
    mi.call("event_subscribe", json!(["E_K", format!("flatstore:{}", log.display())])).await.expect("inside");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl evil";
    let params = json!({"a": format!("x\n{key}\r\n"), "b": "tab\there\u{1b}[31m\\"}).to_string();
    mi.call("raise_event", json!(["E_K", params])).await.expect("raise");
    let read = || std::fs::read_to_string(&log).ok().filter(|t| t.ends_with('\n'));
    let text = wait_for(read).await;
    assert_eq!(text.lines().count(), 1, "one event, one line: {text:?}");
    assert_eq!(text, format!("E_K,x\\n{key}\\r\\n,tab\\there\\x1b[31m\\\\\n"));
    assert!(!text.lines().any(|l| l.starts_with("ssh-")), "no line an sshd would read as a key");
}
