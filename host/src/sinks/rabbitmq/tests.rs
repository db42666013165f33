//! rabbitmq sink tests against a real, private `rabbitmq-server` (see
//! `testutil_broker`): publish and consume, exchange/routing key/persistent,
//! refusals, and a broker outage through the event bus's bounded queue.
//! Each broker test starts its own broker (~5-10 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use amqprs::channel::{
    BasicConsumeArguments, Channel, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, DELIVERY_MODE_PERSISTENT};
use tokio::sync::mpsc;

use super::testutil_broker::Broker;
use crate::events::{Event, EventBus, EventsConfig, Params};
use crate::events::{Sink, SinkContext};
use crate::sinks::{Flatstore, schemes};

fn parse_socket(socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, crate::events::EventError> {
    ctx.parse(socket)
}

/// A test-side AMQP client: declares topology and consumes one queue.
struct Client {
    _conn: Connection,
    chan: Channel,
}

impl Client {
    async fn open(port: u16) -> Client {
        Client::open_vhost(port, "/").await
    }

    async fn open_vhost(port: u16, vhost: &str) -> Client {
        let mut args = OpenConnectionArguments::new("127.0.0.1", port, "guest", "guest");
        args.virtual_host(vhost);
        let conn = Connection::open(&args).await.expect("test client connects");
        let chan = conn.open_channel(None).await.expect("test channel");
        Client { _conn: conn, chan }
    }

    async fn exchange(&self, name: &str) {
        let mut args = ExchangeDeclareArguments::new(name, "direct");
        args.durable(true);
        self.chan.exchange_declare(args).await.expect("declare exchange");
    }

    /// A durable queue, bound to `exchange` with `key` when given.
    async fn queue(&self, name: &str, bind: Option<(&str, &str)>) {
        self.chan.queue_declare(QueueDeclareArguments::durable_client_named(name)).await.expect("declare queue");
        if let Some((exchange, key)) = bind {
            self.chan.queue_bind(QueueBindArguments::new(name, exchange, key)).await.expect("bind");
        }
    }

    async fn consume(&self, queue: &str) -> Messages {
        let mut args = BasicConsumeArguments::new(queue, "");
        args.manual_ack(false);
        let (_, rx) = self.chan.basic_consume_rx(args).await.expect("consume");
        Messages(rx)
    }
}

struct Messages(mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>);

impl Messages {
    /// The next message (properties, body as text), waiting at most `secs`.
    async fn next(&mut self, secs: u64) -> (BasicProperties, String) {
        let msg = tokio::time::timeout(Duration::from_secs(secs), self.0.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {secs} s"))
            .expect("consumer closed");
        let body = String::from_utf8(msg.content.expect("body")).expect("utf8 body");
        (msg.basic_properties.expect("properties"), body)
    }

    /// Asserts nothing more arrives within `ms`.
    async fn assert_quiet(&mut self, ms: u64) {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(ms), self.0.recv()).await {
            panic!("unexpected message: {:?}", m.content.map(String::from_utf8));
        }
    }
}

fn sink(socket: &str) -> Arc<dyn Sink> {
    parse_socket(socket, &SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default())))
        .expect("rabbitmq socket")
}

fn event(n: i64) -> Event {
    Event::new("E_PIKE_BLOCKED", Params::new().with("ip", "192.0.2.7").with("n", n))
}

#[tokio::test]
async fn publishes_to_exchanges_and_queues_and_reports_refusals() {
    let broker = Broker::start().await;
    let port = broker.port();
    let client = Client::open(port).await;
    client.exchange("sipbox.events").await;
    client.queue("q-ex", Some(("sipbox.events", "pike"))).await;
    client.queue("q-direct", None).await;

    // exchange= + routing key + persistent, default guest credentials.
    let s = sink(&format!("rabbitmq:127.0.0.1:{port}/exchange=sipbox.events;persistent?pike"));
    assert_eq!(s.socket(), format!("rabbitmq:guest@127.0.0.1:{port}/exchange=sipbox.events;persistent?pike"));
    assert!(!s.supports_expire(), "rabbitmq subscriptions never expire (OpenSIPS)");
    assert!(s.retry_on_error());
    let mut ex = client.consume("q-ex").await;
    for n in 0..3 {
        s.deliver(&event(n)).await.expect("published and confirmed");
    }
    for n in 0..3 {
        let (props, body) = ex.next(10).await;
        assert_eq!(body, event(n).to_jsonrpc_string(), "in order, byte-exact payload");
        assert_eq!(props.content_type().map(String::as_str), Some("application/json"));
        assert_eq!(props.delivery_mode(), Some(DELIVERY_MODE_PERSISTENT));
    }
    ex.assert_quiet(200).await;

    // Default exchange: the routing key is the queue; explicit credentials; transient.
    let d = sink(&format!("rabbitmq:guest:guest@127.0.0.1:{port}/q-direct"));
    let mut direct = client.consume("q-direct").await;
    let mut p = Params::new();
    p.push_positional("dtmf");
    p.push_positional(5);
    let ev = Event::new("E_MEDIA", p);
    d.deliver(&ev).await.expect("published");
    let (props, body) = direct.next(10).await;
    assert_eq!(body, r#"{"jsonrpc":"2.0","method":"E_MEDIA","params":["dtmf",5]}"#);
    assert_ne!(props.delivery_mode(), Some(DELIVERY_MODE_PERSISTENT));

    // A missing exchange: the broker closes the channel (404); the error says
    // so, quickly. Once the exchange exists the same sink recovers.
    let missing = sink(&format!("rabbitmq:127.0.0.1:{port}/exchange=later?k"));
    let t0 = Instant::now();
    let err = missing.deliver(&event(9)).await.expect_err("no such exchange");
    assert!(err.to_string().contains("404"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    client.exchange("later").await;
    client.queue("q-later", Some(("later", "k"))).await;
    let mut later = client.consume("q-later").await;
    missing.deliver(&event(10)).await.expect("recovered after the exchange was declared");
    assert_eq!(later.next(10).await.1, event(10).to_jsonrpc_string());

    // Wrong password: refused, bounded, and the password is not echoed.
    let bad = sink(&format!("rabbitmq:guest:wrongpw@127.0.0.1:{port}/q-direct"));
    let t0 = Instant::now();
    let err = bad.deliver(&event(0)).await.expect_err("bad credentials");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let text = err.to_string();
    assert!(text.contains("credentials") && !text.contains("wrongpw"), "{text}");
    direct.assert_quiet(200).await;
}

/// A broker whose only vhost is `sipbox-v`: a socket naming it publishes
/// there; the default vhost `/` does not exist, so a socket without one is
/// refused by the broker.
#[tokio::test]
async fn publishes_into_the_socket_vhost() {
    let broker = Broker::start_with("default_vhost = sipbox-v").await;
    let port = broker.port();
    let client = Client::open_vhost(port, "sipbox-v").await;
    client.queue("q-v", None).await;
    let mut rx = client.consume("q-v").await;
    let s = sink(&format!("rabbitmq:127.0.0.1:{port}/sipbox-v/q-v"));
    assert_eq!(s.socket(), format!("rabbitmq:guest@127.0.0.1:{port}/sipbox-v/q-v"));
    s.deliver(&event(1)).await.expect("published in vhost sipbox-v");
    assert_eq!(rx.next(10).await.1, event(1).to_jsonrpc_string());
    let p = sink(&format!("rabbitmq:127.0.0.1:{port}/vhost=sipbox-v;persistent?q-v"));
    p.deliver(&event(2)).await.expect("vhost= parameter");
    assert_eq!(rx.next(10).await.1, event(2).to_jsonrpc_string());
    let default = sink(&format!("rabbitmq:127.0.0.1:{port}/q-v"));
    default.deliver(&event(3)).await.expect_err("vhost '/' does not exist on this broker");
    rx.assert_quiet(200).await;
}

/// The destination policy applies to brokers: a denied literal is refused
/// when subscribing; an allow-list that leaves out loopback refuses
/// `localhost` after resolution, at delivery.
#[tokio::test]
async fn broker_addresses_obey_the_destination_policy() {
    let cfg = EventsConfig { allow_destinations: vec!["10.0.0.0/8".into()], ..EventsConfig::default() };
    let ctx = SinkContext::detached(&cfg, schemes(None, &Flatstore::default()));
    let lit = parse_socket("rabbitmq:127.0.0.1:5672/q", &ctx).expect("parses");
    assert!(lit.check().expect_err("not allowed").to_string().contains("allow_destinations"));
    let name = parse_socket("rabbitmq:localhost:5672/q", &ctx).expect("parses");
    name.check().expect("names are checked when connecting");
    let err = name.deliver(&event(0)).await.expect_err("localhost resolves to loopback");
    assert!(err.to_string().contains("resolved to a refused address"), "{err}");
    assert_eq!(ctx.destinations().refused_deliveries(), 1);
}

/// A CA and a server certificate for `localhost`, made with the `openssl`
/// command line in `dir`: returns (ca.pem, server.pem, server.key).
fn make_certs(dir: &std::path::Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").expect("ext");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("the TLS test needs openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ca_key, ca, key, csr, crt, ext) =
        (p("ca.key"), p("ca.pem"), p("server.key"), p("s.csr"), p("server.pem"), p("ext.cnf"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=sipbox test CA",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (ca, crt, key)
}

/// `tls`: the broker's TLS listener (a certificate from a private CA made
/// here) gets the event when `amqp_tls_ca_file` names that CA; without it the
/// certificate is refused (unknown issuer) and nothing is published.
#[tokio::test]
async fn publishes_over_tls_to_a_broker_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("tmp");
    let (ca, crt, key) = make_certs(certs.path());
    let tls_port = super::testutil_broker::free_port();
    let conf = format!(
        "listeners.ssl.default = {tls_port}\nssl_options.cacertfile = {ca}\nssl_options.certfile = {crt}\n\
         ssl_options.keyfile = {key}\nssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false"
    );
    let broker = Broker::start_with(&conf).await;
    let client = Client::open(broker.port()).await;
    client.queue("q-tls", None).await;
    let mut rx = client.consume("q-tls").await;
    let socket = format!("rabbitmq:localhost:{tls_port}/tls;q-tls");

    let cfg = EventsConfig { amqp_tls_ca_file: Some(ca.clone()), ..EventsConfig::default() };
    let ctx = SinkContext::detached(&cfg, schemes(None, &Flatstore::default()));
    let s = parse_socket(&socket, &ctx).expect("tls socket");
    s.check().expect("the CA file loads");
    // The TLS listener may come up just after the plain one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match s.deliver(&event(1)).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => eprintln!("tls not ready yet: {e}"),
            Err(e) => panic!("no TLS delivery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(rx.next(10).await.1, event(1).to_jsonrpc_string());

    let platform = sink(&socket);
    let err = platform.deliver(&event(2)).await.expect_err("a private CA is not in the platform store");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    rx.assert_quiet(200).await;

    let bad = EventsConfig { amqp_tls_ca_file: Some(key), ..EventsConfig::default() };
    let ctx = SinkContext::detached(&bad, schemes(None, &Flatstore::default()));
    let err = parse_socket(&socket, &ctx).expect("parses").check().expect_err("a key is no CA");
    assert!(err.to_string().contains("amqp_tls_ca_file"), "{err}");
}

/// The issue's outage requirement, through the event bus: events raised
/// while the broker is down wait in the subscriber's queue (bound 4 here;
/// the rest are dropped and counted) and are published, in order, once it
/// is back.
#[tokio::test]
async fn survives_a_broker_outage_up_to_the_queue_bound() {
    let mut broker = Broker::start().await;
    let port = broker.port();
    let setup = Client::open(port).await;
    setup.queue("q-outage", None).await;
    setup.queue("q-probe", None).await;
    drop(setup);
    // A sink used directly, whose connection the outage will kill; its
    // messages are persistent, so the one queued before the outage survives it.
    let probe = sink(&format!("rabbitmq:127.0.0.1:{port}/persistent?q-probe"));
    probe.deliver(&event(-1)).await.expect("before the outage");

    let bus = EventBus::new(
        &EventsConfig { queue_len: 4, ..EventsConfig::default() },
        schemes(None, &Flatstore::default()),
        None,
    )
    .expect("bus");
    let socket = format!("rabbitmq:127.0.0.1:{port}/q-outage");
    bus.subscribe("E_PIKE_BLOCKED", &socket, Some(60)).expect("subscribe");
    let subs = bus.subscribers(Some("E_PIKE_BLOCKED")).expect("listed").to_string();
    assert!(subs.contains(r#""expire":"never""#), "{subs}");

    let client = Client::open(port).await;
    let mut msgs = client.consume("q-outage").await;
    assert_eq!(bus.raise(event(0)), 1);
    assert_eq!(msgs.next(10).await.1, event(0).to_jsonrpc_string());

    broker.stop().await;
    // Raised back to back (this runtime is single-threaded, so the drain
    // task has not run yet): 4 fit the queue, 2 are dropped.
    for n in 1..=6 {
        bus.raise(event(n));
    }
    let stat = |name: &str| {
        let key = format!("{name}:rabbitmq:guest@127.0.0.1:{port}/q-outage");
        bus.stats().into_iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    };
    assert_eq!(stat("events_dropped"), Some(2));
    // Meanwhile the bus's drain task fails against the dead broker and retries.
    let t0 = Instant::now();
    assert!(probe.deliver(&event(99)).await.is_err(), "the broker is down");
    assert!(t0.elapsed() < Duration::from_secs(6), "a failed attempt is bounded: {:?}", t0.elapsed());

    broker.restart().await;
    let client = Client::open(port).await;
    let mut msgs = client.consume("q-outage").await;
    for n in 1..=4 {
        assert_eq!(msgs.next(30).await.1, event(n).to_jsonrpc_string(), "event {n} after the outage");
    }
    msgs.assert_quiet(500).await;
    // The counter moves once the confirm is in, just after the consumer sees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat("events_delivered") != Some(5) {
        assert!(Instant::now() < deadline, "delivered = {:?}", stat("events_delivered"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Failed attempts during the outage are counted (each retry), none given up.
    assert!(stat("events_failed").is_some_and(|n| n >= 1), "{:?}", stat("events_failed"));

    // And the sink keeps working on its new connection.
    bus.raise(event(7));
    assert_eq!(msgs.next(10).await.1, event(7).to_jsonrpc_string());
    // The direct sink reconnects by itself on its next delivery.
    probe.deliver(&event(8)).await.expect("reconnected");
    let mut probed = client.consume("q-probe").await;
    assert_eq!(probed.next(10).await.1, event(-1).to_jsonrpc_string());
    assert_eq!(probed.next(10).await.1, event(8).to_jsonrpc_string());
}

#[test]
fn malformed_sockets_are_refused_with_the_reason() {
    let ctx = SinkContext::detached(&EventsConfig::default(), schemes(None, &Flatstore::default()));
    for s in ["rabbitmq:localhost", "rabbitmq:h:0/q", "rabbitmq:h/tls_domain=x?q"] {
        let err = parse_socket(s, &ctx).map(|_| ()).expect_err(s);
        assert!(matches!(err, crate::events::EventError::BadSocket(_)), "{s}: {err:?}");
        assert!(err.to_string().contains(s), "{err}");
    }
}
