//! Transports end to end, through the bus, against real receivers on
//! 127.0.0.1 and in temp dirs: UDP, unix datagrams, TCP stream (with the
//! listener restarted, and closed by the bus's shutdown), flatstore (shared
//! file, MI and size rotation, permissions) and virtual FAILOVER / PARALLEL /
//! ROUND-ROBIN.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram};
use tokio::time::timeout;

use super::tests::{Recorder, bus, bus_with, next, recording_bus, tmp_cfg};
use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn stat(bus: &EventBus, name: &str) -> u64 {
    bus.stats().into_iter().find(|(n, _)| n == name).map_or(0, |(_, v)| v)
}

/// Waits (bounded) until `cond` holds, polling between short sleeps.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn recv_text(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 70_000];
    let n = timeout(WAIT, sock.recv(&mut buf)).await.expect("datagram in time").unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

async fn udp_listener() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    (sock, format!("udp:127.0.0.1:{port}"))
}

fn ev(name: &str, i: i64) -> Event {
    Event::new(name, Params::new().with("i", i).with("ip", "198.51.100.7"))
}

fn json_of(name: &str, i: i64) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{name}","params":{{"i":{i},"ip":"198.51.100.7"}}}}"#)
}

/// A local port nothing listens on (bound then released).
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn udp_listener_gets_the_exact_opensips_datagram() {
    let bus = bus();
    let (sock, socket) = udp_listener().await;
    bus.subscribe("E_PIKE_BLOCKED", &socket, Some(60)).unwrap();
    assert_eq!(bus.raise(Event::new("E_PIKE_BLOCKED", Params::new().with("ip", "203.0.113.9"))), 1);
    assert_eq!(recv_text(&sock).await, r#"{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"203.0.113.9"}}"#);
    wait_until("delivered counted", || stat(&bus, &format!("events_delivered:{socket}")) == 1).await;
}

#[tokio::test]
async fn unix_listener_gets_the_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let bus = bus_with(&tmp_cfg(), None);
    bus.subscribe("E_X", &format!("unix:{}", path.display()), None).unwrap();
    bus.raise(ev("E_X", 1));
    let mut buf = vec![0u8; 65_536];
    let n = timeout(WAIT, sock.recv(&mut buf)).await.expect("datagram in time").unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), json_of("E_X", 1));

    // No listener at the path: counted as failed, not retried.
    let gone = dir.path().join("gone.sock");
    let socket = format!("unix:{}", gone.display());
    bus.subscribe("E_X", &socket, None).unwrap();
    bus.raise(ev("E_X", 2));
    wait_until("failure counted", || stat(&bus, &format!("events_failed:{socket}")) == 1).await;
}

/// Reads from `conn` until `want` bytes came, and returns them.
async fn read_exactly(conn: &mut TcpStream, want: usize) -> String {
    let mut buf = vec![0u8; want];
    timeout(WAIT, conn.read_exact(&mut buf)).await.expect("bytes in time").unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn tcp_stream_back_to_back_and_reconnect_after_listener_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let bus = bus();
    bus.subscribe("E_S", &format!("tcp:{addr}"), None).unwrap();

    bus.raise(ev("E_S", 1));
    bus.raise(ev("E_S", 2));
    let (mut conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let want = format!("{}{}", json_of("E_S", 1), json_of("E_S", 2));
    assert_eq!(read_exactly(&mut conn, want.len()).await, want, "objects back to back, no separator");

    // The listener goes away; events raised meanwhile wait in the queue.
    drop(conn);
    drop(listener);
    bus.raise(ev("E_S", 3));
    bus.raise(ev("E_S", 4));
    let failed = format!("events_failed:tcp:{addr}");
    wait_until("a refused reconnect", || stat(&bus, &failed) >= 1).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let (mut conn, _) = timeout(WAIT, listener.accept()).await.expect("reconnect").unwrap();
    let want = format!("{}{}", json_of("E_S", 3), json_of("E_S", 4));
    assert_eq!(read_exactly(&mut conn, want.len()).await, want, "outage events delivered in order");
    wait_until("4 delivered", || stat(&bus, &format!("events_delivered:tcp:{addr}")) == 4).await;
    assert_eq!(stat(&bus, "events_dropped"), 0);
    assert!(stat(&bus, &failed) >= 1, "the outage shows as failed attempts");
}

#[tokio::test]
async fn tcp_stream_method_and_event_param() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = EventsConfig { stream_event_param: Some("event".into()), ..EventsConfig::default() };
    let bus = bus_with(&cfg, None);
    bus.subscribe("E_M", &format!("stream:{addr}/notify"), None).unwrap();
    let list = bus.subscribers(Some("E_M")).unwrap();
    assert_eq!(list["Event"]["Subscribers"][0]["socket"], format!("tcp:{addr}/notify"));
    bus.raise(Event::new("E_M", Params::new().with("a", 1)));
    let (mut conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let want = r#"{"jsonrpc":"2.0","method":"notify","params":{"event":"E_M","a":1}}"#;
    assert_eq!(read_exactly(&mut conn, want.len()).await, want);
}

#[tokio::test]
async fn bus_shutdown_closes_the_stream_and_delivers_nothing_more() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = super::tests::bus();
    bus.subscribe("E_Q", &format!("tcp:{addr}"), None).unwrap();
    bus.raise(ev("E_Q", 1));
    let (mut conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    assert_eq!(read_exactly(&mut conn, json_of("E_Q", 1).len()).await, json_of("E_Q", 1));

    timeout(WAIT, bus.shutdown()).await.expect("the delivery tasks ended in time");
    // The sink ended its connection with a FIN.
    let mut buf = [0u8; 64];
    let n = timeout(WAIT, conn.read(&mut buf)).await.expect("closed in time").unwrap();
    assert_eq!(n, 0, "the stream is still open");
    // Raised afterwards: the subscriber's queue is closed, the event counts as failed.
    bus.raise(ev("E_Q", 2));
    assert_eq!(stat(&bus, &format!("events_failed:tcp:{addr}")), 1);
    assert_eq!(stat(&bus, &format!("events_delivered:tcp:{addr}")), 1);
}

#[tokio::test]
async fn bus_shutdown_gives_up_the_retries_of_a_destination_that_is_down() {
    let addr = format!("127.0.0.1:{}", closed_port().await);
    let bus = super::tests::bus();
    bus.subscribe("E_D", &format!("tcp:{addr}"), None).unwrap();
    bus.raise(ev("E_D", 1));
    let failed = format!("events_failed:tcp:{addr}");
    wait_until("a refused connect", || stat(&bus, &failed) >= 1).await;
    // The task now waits to retry (backing off up to seconds): the shutdown does not wait for that.
    timeout(WAIT, bus.shutdown()).await.expect("the retrying task ended in time");
    assert_eq!(stat(&bus, &format!("events_delivered:tcp:{addr}")), 0);
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn flatstore_shared_file_lines_mi_rotation_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let p = path.to_str().unwrap().to_owned();
    let socket = format!("flatstore:{p}");
    let cfg = EventsConfig { flatstore_file_permissions: "600".into(), ..tmp_cfg() };
    let flatstore = crate::sinks::Flatstore::default();
    let (tx, mut rot) = tokio::sync::mpsc::unbounded_channel();
    let schemes = crate::sinks::schemes(Some(Arc::new(Recorder(tx))), &flatstore);
    let bus = EventBus::new(&cfg, schemes, None).unwrap();
    bus.subscribe(E_FLATSTORE_ROTATION, "route:rot", None).unwrap();
    bus.subscribe("E_A", &socket, Some(600)).unwrap();
    bus.subscribe("E_B", &socket, None).unwrap();

    bus.raise(Event::new("E_A", Params::new().with("n", 1).with("s", "x,y").with("nul", Value::Null).with("e", "")));
    wait_until("first line", || lines(&path).len() == 1).await;
    bus.raise(Event::new("E_B", Params::new()));
    wait_until("second line", || lines(&path).len() == 2).await;
    assert_eq!(lines(&path), ["E_A,1,x y,,", "E_B"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // logrotate-style: mv, then MI rotate; writes go to a fresh file.
    let moved = dir.path().join("events.log.1");
    std::fs::rename(&path, &moved).unwrap();
    assert_eq!(flatstore.rotate(Some(&p)), Ok(1));
    let (_, rotation) = next(&mut rot).await;
    assert_eq!(rotation.param("reason"), Some(&Value::Str("mi".into())));
    assert_eq!(rotation.param("filename"), Some(&Value::Str(p.clone())));
    assert!(matches!(rotation.param("timestamp"), Some(Value::Str(t)) if t.parse::<u64>().is_ok()));
    bus.raise(Event::new("E_A", Params::new().with("n", 3)));
    wait_until("line in the new file", || lines(&path).len() == 1).await;
    assert_eq!(lines(&path), ["E_A,3"]);
    assert_eq!(lines(&moved), ["E_A,1,x y,,", "E_B"], "old file untouched after rotation");

    assert_eq!(flatstore.rotate(Some("/no/such.log")), Err(EventError::FileNotFound("/no/such.log".into())));
    assert_eq!(flatstore.rotate(None), Ok(1));
}

#[tokio::test]
async fn flatstore_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("size.log");
    let p = path.to_str().unwrap().to_owned();
    let cfg = EventsConfig { flatstore_max_size: 100, ..tmp_cfg() };
    let (bus, mut rot) = recording_bus(&cfg);
    bus.subscribe(E_FLATSTORE_ROTATION, "route:rot", None).unwrap();
    let socket = format!("flatstore:{p}");
    bus.subscribe("E_SZ", &socket, None).unwrap();
    // Each line is "E_SZ,<i>,padding-padding\n" = 23 bytes: the 5th line brings a file to 115.
    for i in 0..10 {
        bus.raise(Event::new("E_SZ", Params::new().with("i", i).with("pad", "padding-padding")));
    }
    wait_until("10 written", || stat(&bus, &format!("events_delivered:{socket}")) == 10).await;
    let (_, rotation) = next(&mut rot).await;
    assert_eq!(rotation.param("reason"), Some(&Value::Str("size".into())));
    let Some(Value::Str(old)) = rotation.param("old_filename") else { panic!("old_filename") };
    assert!(old.starts_with(&format!("{p}.")), "renamed with a timestamp suffix: {old}");

    let mut rotated: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).filter(|f| f != &path).collect();
    rotated.sort_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap());
    assert_eq!(rotated.len(), 2, "10 lines, 5 per file: two rotations");
    let mut all = Vec::new();
    for f in &rotated {
        assert!(std::fs::metadata(f).unwrap().len() >= 100);
        all.extend(lines(f));
    }
    all.extend(lines(&path));
    let want: Vec<String> = (0..10).map(|i| format!("E_SZ,{i},padding-padding")).collect();
    // Same-second rotations get .1 suffixes; order by content, not name.
    all.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(all, want_sorted, "no line lost or duplicated across rotations");
    // After the second rotation the fresh file is created by the next write.
    assert!(std::fs::metadata(&path).map_or(0, |m| m.len()) < 100);
}

#[tokio::test]
async fn virtual_failover_with_primary_down_delivers_everything_to_secondary() {
    let cfg = EventsConfig { failover_timeout_s: 0, ..EventsConfig::default() };
    let bus = bus_with(&cfg, None);
    let port = closed_port().await;
    let (secondary, sec) = udp_listener().await;
    let socket = format!("virtual:FAILOVER tcp:127.0.0.1:{port} {sec}");
    bus.subscribe("E_F", &socket, Some(60)).unwrap();
    for i in 0..10 {
        bus.raise(ev("E_F", i));
    }
    for i in 0..10 {
        assert_eq!(recv_text(&secondary).await, json_of("E_F", i), "event {i} reached the secondary");
    }
    wait_until("10 delivered", || stat(&bus, &format!("events_delivered:{socket}")) == 10).await;
    assert_eq!(stat(&bus, "events_failed"), 0, "nothing lost while one destination is up");

    // The primary comes up: with no cool-down it gets the next event.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    bus.raise(ev("E_F", 10));
    let (mut conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let want = json_of("E_F", 10);
    assert_eq!(read_exactly(&mut conn, want.len()).await, want);
}

#[tokio::test]
async fn virtual_parallel_and_round_robin() {
    let bus = bus();
    let (a, sa) = udp_listener().await;
    let (b, sb) = udp_listener().await;
    bus.subscribe("E_P", &format!("virtual:PARALLEL {sa} {sb}"), None).unwrap();
    // Same set in another order is the same subscriber (refresh, not a second one).
    bus.subscribe("E_P", &format!("virtual:PARALLEL  {sb}\t{sa}"), None).unwrap();
    assert_eq!(bus.subscription_count(), 1);
    for i in 0..3 {
        assert_eq!(bus.raise(ev("E_P", i)), 1);
    }
    for i in 0..3 {
        assert_eq!(recv_text(&a).await, json_of("E_P", i));
        assert_eq!(recv_text(&b).await, json_of("E_P", i));
    }

    bus.subscribe("E_R", &format!("virtual:ROUND-ROBIN {sa} {sb}"), None).unwrap();
    for i in 0..4 {
        bus.raise(ev("E_R", i));
    }
    assert_eq!(recv_text(&a).await, json_of("E_R", 0));
    assert_eq!(recv_text(&b).await, json_of("E_R", 1));
    assert_eq!(recv_text(&a).await, json_of("E_R", 2));
    assert_eq!(recv_text(&b).await, json_of("E_R", 3));
}

/// A symlink planted at a flatstore path after the subscription was made is
/// not followed (`O_NOFOLLOW`): the write fails and is counted, and the file
/// it points at is left alone.
#[tokio::test]
async fn flatstore_does_not_follow_a_symlink_planted_later() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let path = dir.path().join("events.log");
    let socket = format!("flatstore:{}", path.display());
    let bus = bus_with(&tmp_cfg(), None);
    bus.subscribe("E_L", &socket, None).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    bus.raise(Event::new("E_L", Params::new().with("v", "evil")));
    wait_until("refused write counted", || stat(&bus, &format!("events_failed:{socket}")) == 1).await;
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}
