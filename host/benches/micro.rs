//! Micro-benchmarks (issue 5 part 2), one criterion group per cost a call pays:
//!
//! - `sip`: parsing an INVITE with SDP and a 200 OK, and the proxy's forward
//!   edits (push Via, decrement Max-Forwards, add Record-Route) + serialising;
//! - `route`: the embedded default route, per invocation: a whole `on-request`
//!   (404 for an unknown user, relay to a registered one), a Store alone,
//!   instantiate + drop, and instantiate + a no-op `on-event` + drop;
//! - `route_reused`: the same invocations with `[limits] instance_reuse`, on
//!   a warm instance (no instantiation, no slot reset);
//! - `events`: `raise` to a `udp:` subscriber's datagram arriving on a
//!   loopback socket, one at a time and in batches of 64;
//! - `resume`: a `dtmf-detect` guest parked in `wait-for-event`, from the
//!   raise of its `E_DTMF` to the end of its invocation (resumed, answered
//!   403, returned).
//!
//! `cargo bench -p sipbox --bench micro [-- FILTER]`. For a profile, run the
//! bench binary under callgrind or perf with `--profile-time SECONDS FILTER`.
//!
//! Requests reach the proxy core through its public `InboundHandler` (no
//! socket read); a wrapper `Router` times the runtime's part of each request
//! and reports when it ended, so the timed spans exclude transaction set-up
//! and the harness's own UDP reads. Replies still go out over loopback UDP,
//! read back (untimed) so every iteration starts with the proxy idle.

/// The allocator the server runs with (see `main.rs`), so heap figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipbox::events::{Event, EventBus, EventsConfig, Params, SinkSchemes};
use sipbox::location::{Location, LocationConfig};
use sipbox::runtime::{self, Limits, RouteServices, RouteSource, Runtime, bench_hooks};
use sipbox::shutdown::Shutdown;
use sipbox::sinks::{self, Flatstore};
use sipbox::sip::{self, Bytes, Edits, HeaderName, Message};
use sipbox::transaction::{BoxFut, Core, Router, ServerTx, Timers, Transactions};
use sipbox::transport::{Inbound, InboundHandler, ListenSpec, Proto, Transports};

/// How long the harness waits for anything the proxy should do at once.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- messages

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

/// An initial INVITE as a softphone sends it through an outbound proxy.
fn invite_bytes() -> Bytes {
    let head = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKnashds8;received=192.0.2.7\r\n\
Max-Forwards: 69\r\n\
Route: <sip:proxy.biloxi.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: \"Bob\" <sip:bob@biloxi.example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\n\
User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n\
Content-Type: application/sdp\r\n";
    Bytes::from(format!("{head}Content-Length: {}\r\n\r\n{SDP}", SDP.len()))
}

/// The callee's 200 OK to that INVITE, as it comes back through the proxy.
fn ok_bytes() -> Bytes {
    let head = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKnashds8;received=192.0.2.7\r\n\
Record-Route: <sip:198.51.100.1;lr>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: \"Bob\" <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.20:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO\r\n\
Supported: replaces, timer\r\n\
Server: Asterisk PBX 20.5.0\r\n\
Content-Type: application/sdp\r\n";
    Bytes::from(format!("{head}Content-Length: {}\r\n\r\n{SDP}", SDP.len()))
}

/// A request with its own branch and Call-ID, from `from`.
fn request(method: &str, ruri: &str, from: SocketAddr, i: u64, extra: &str) -> Bytes {
    let to = ruri.trim_start_matches("sip:");
    Bytes::from(format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-micro-{i};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@{from}>;tag=c{i}\r\nTo: <sip:{to}>\r\n\
         Call-ID: micro-{i}\r\nCSeq: 1 {method}\r\nContact: <sip:caller@{from}>\r\n{extra}\
         Content-Length: 0\r\n\r\n"
    ))
}

fn bench_sip(c: &mut Criterion) {
    if !wanted("sip") {
        return;
    }
    let invite = invite_bytes();
    let ok = ok_bytes();
    assert!((600..900).contains(&invite.len()), "INVITE is {} bytes", invite.len());
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite_sdp", |b| {
        b.iter(|| Message::parse(std::hint::black_box(invite.clone())).map(|m| m.body().len()))
    });
    g.bench_function("parse_200_ok_sdp", |b| {
        b.iter(|| Message::parse(std::hint::black_box(ok.clone())).map(|m| m.body().len()))
    });
    // What the proxy does to each forwarded request (RFC 3261 16.6): parse,
    // then one edit list serialised over the received bytes.
    g.bench_function("parse_forward_edits_serialize_invite", |b| {
        b.iter(|| {
            let Ok(msg) = Message::parse(std::hint::black_box(invite.clone())) else { return 0 };
            let hops = match msg.max_forwards() {
                Ok(Some(n)) => n.saturating_sub(1),
                _ => 70,
            };
            let mut edits = Edits::default();
            edits.set(HeaderName::MaxForwards, hops.to_string());
            edits.prepend("Record-Route", "<sip:198.51.100.1;lr>");
            edits.prepend("Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-fwd-1;rport");
            sip::serialize(&msg, &edits).len()
        })
    });
    g.finish();
}

// ------------------------------------------------------- a proxy to drive

/// The proxy core's router: runs the real runtime and reports, per request,
/// how long the runtime's invocation took and when it ended.
struct Timed {
    runtime: Runtime,
    done: Sender<(Duration, Instant)>,
}

impl Router for Timed {
    fn on_request(&self, tx: ServerTx) -> BoxFut {
        let runtime = self.runtime.clone();
        let done = self.done.clone();
        Box::pin(async move {
            let start = Instant::now();
            runtime.on_request(tx).await;
            let end = Instant::now();
            let _ = done.send((end - start, end));
        })
    }

    fn on_reply(&self, tx: ServerTx, hook: Arc<str>, reply: Message) -> BoxFut {
        self.runtime.on_reply(tx, hook, reply)
    }

    fn on_failure(&self, tx: ServerTx, hook: Arc<str>, best: Message) -> BoxFut {
        self.runtime.on_failure(tx, hook, best)
    }
}

/// A runtime and proxy core on a UDP listener, with a caller socket that
/// receives the responses.
struct Proxy {
    tokio: tokio::runtime::Runtime,
    runtime: Runtime,
    core: Core,
    bus: EventBus,
    listener: SocketAddr,
    caller: UdpSocket,
    done: Receiver<(Duration, Instant)>,
    next: AtomicU64,
}

impl Proxy {
    fn start(source: RouteSource, vars: &[(&str, &str)], limits: Limits) -> anyhow::Result<Proxy> {
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        // The location store and the runtime start background tasks.
        let _guard = tokio.enter();
        let (invoker, invocations) = runtime::invocations(1024);
        let bus = EventBus::new(&EventsConfig::default(), SinkSchemes::new(), Some(invoker.notify_handler()))?;
        let location = Location::open(&LocationConfig { db_path: None, ..LocationConfig::default() })?;
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let transactions = Transactions::default();
        let services = RouteServices {
            location,
            bus: bus.clone(),
            transactions: transactions.clone(),
            vars,
            http: sipbox::runtime::HttpClient::network().expect("HTTP client"),
            auth: sipbox::auth::Auth::in_memory(false),
        };
        let runtime = Runtime::new(limits, source, services, invocations)?;
        let (tx, done) = std::sync::mpsc::channel();
        let timed = Arc::new(Timed { runtime: runtime.clone(), done: tx });
        let (core, listener) = tokio.block_on(async {
            let listen = [ListenSpec { proto: Proto::Udp, addr: "127.0.0.1:0".parse()? }];
            let (transports, listeners) = Transports::bind(&listen).await?;
            let listener = transports.listeners()[0].addr;
            // Short timers: a finished transaction's Timer J/I (64*T1, T4)
            // ends within a second, so thousands of iterations do not pile
            // up live transactions.
            let timers = Timers { t1_ms: 20, t4_ms: 100, ..Timers::default() };
            let core = Core::with_transactions(transports, timers, timed, transactions);
            listeners.start(Arc::new(core.clone()), &Shutdown::new());
            anyhow::Ok((core, listener))
        })?;
        let caller = UdpSocket::bind("127.0.0.1:0")?;
        caller.set_read_timeout(Some(WAIT))?;
        Ok(Proxy { tokio, runtime, core, bus, listener, caller, done, next: AtomicU64::new(0) })
    }

    fn caller_addr(&self) -> SocketAddr {
        self.caller.local_addr().unwrap_or_else(|e| panic!("caller socket: {e}"))
    }

    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a request to the proxy core as its UDP listener would.
    fn inject(&self, bytes: Bytes) {
        let msg = Message::parse(bytes).unwrap_or_else(|e| panic!("bench request does not parse: {e}"));
        let _guard = self.tokio.enter();
        self.core.on_message(Inbound { msg, src: self.caller_addr(), proto: Proto::Udp, local: self.listener });
    }

    /// The next route invocation's duration and end.
    fn invocation(&self) -> (Duration, Instant) {
        self.done.recv_timeout(WAIT).unwrap_or_else(|e| panic!("route invocation did not end: {e}"))
    }

    /// The next response at the caller with a status of at least `min`.
    fn response(&self, min: u16) -> Message {
        let mut buf = vec![0u8; 65536];
        loop {
            let len = self.caller.recv(&mut buf).unwrap_or_else(|e| panic!("no response from the proxy: {e}"));
            let Ok(msg) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else { continue };
            if msg.status().is_some_and(|s| s >= min) {
                return msg;
            }
        }
    }
}

/// A UAS answering every request 200 OK, until dropped.
struct Phone {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Phone {
    fn start() -> anyhow::Result<Phone> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, src)) = socket.recv_from(&mut buf) else { continue };
                let Ok(req) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else { continue };
                if req.is_request() {
                    let ok = sip::response(&req, 200, "OK", Some("phone"), &[], None);
                    let _ = socket.send_to(&ok, src);
                }
            }
        });
        Ok(Phone { addr, stop, thread: Some(thread) })
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ route

fn bench_route(c: &mut Criterion) {
    if wanted("route") {
        route_group(c, "route", Limits::default());
    }
    // The same invocations on warm instances (`[limits] instance_reuse`):
    // what is left of an invocation once instantiation is amortised.
    if wanted("route_reused") {
        route_group(c, "route_reused", Limits { instance_reuse: 1000, ..Limits::default() });
    }
}

fn route_group(c: &mut Criterion, group: &str, limits: Limits) {
    let fresh_instances = limits.instance_reuse == 1;
    let proxy = Proxy::start(RouteSource::Embedded, &[], limits).unwrap_or_else(|e| panic!("proxy: {e:#}"));
    let from = proxy.caller_addr();
    let phone = Phone::start().unwrap_or_else(|e| panic!("phone: {e:#}"));
    let host = proxy.listener;

    // bob registers, his phone being `phone`.
    let contact = format!("Contact: <sip:bob@{}>\r\nExpires: 3600\r\n", phone.addr);
    let reg = request("REGISTER", &format!("sip:{host}"), from, proxy.id(), &contact);
    let reg = String::from_utf8_lossy(&reg).replace(&format!("To: <sip:{host}>"), &format!("To: <sip:bob@{host}>"));
    proxy.inject(Bytes::from(reg));
    proxy.invocation();
    assert_eq!(proxy.response(200).status(), Some(200), "REGISTER of bob");

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));

    // (a) on-request of the default route, timed around Runtime::on_request:
    // admission, Store, instantiate, the guest's work, drop.
    for (name, user, status) in [("on_request_options_404", "nobody", 404), ("on_request_options_relay", "bob", 200)] {
        let ruri = format!("sip:{user}@{host}");
        // Once untimed, checking the route does what the name says.
        proxy.inject(request("OPTIONS", &ruri, from, proxy.id(), ""));
        proxy.invocation();
        assert_eq!(proxy.response(200).status(), Some(status), "{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    proxy.inject(request("OPTIONS", &ruri, from, proxy.id(), ""));
                    total += proxy.invocation().0;
                    proxy.response(200);
                }
                total
            })
        });
    }

    // (b) the fixed parts of an invocation, through the bench hooks.
    let rt = proxy.runtime.clone();
    // (Without reuse only: with it there is no per-invocation Store.)
    if fresh_instances {
        g.bench_function("new_store_drop", |b| b.iter(|| bench_hooks::new_store_and_drop(&rt)));
        g.bench_function("instantiate_drop", |b| {
            b.iter_custom(|iters| {
                proxy.tokio.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        if let Err(e) = bench_hooks::instantiate_and_drop(&rt).await {
                            panic!("{e:#}");
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }

    // (c) instantiate + on-event (the default route's is a no-op) + drop,
    // through the public event-route entry point.
    let route: Arc<str> = Arc::from("bench");
    let event = Event::new("E_MICRO", Params::new().with("k", "v"));
    g.bench_function("on_event_noop", |b| {
        b.iter_custom(|iters| {
            proxy.tokio.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.run_event_route(route.clone(), event.clone()).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    let traps = rt.stats().traps.load(Ordering::Relaxed) + rt.stats().timeouts.load(Ordering::Relaxed);
    assert_eq!(traps, 0, "a route invocation trapped or timed out during the benchmark");
    drop(phone);
}

// ----------------------------------------------------------------- events

fn contact_event(i: u64) -> Event {
    let params = Params::new()
        .with("domain", "location")
        .with("aor", format!("user{i}"))
        .with("uri", format!("sip:user{i}@127.0.0.1:5080"))
        .with("expires", 1_800_000_000i64);
    Event::new("E_UL_CONTACT_INSERT", params)
}

fn bench_events(c: &mut Criterion) {
    if !wanted("events") {
        return;
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    let _guard = tokio.enter();
    let bus = EventBus::new(&EventsConfig::default(), sinks::schemes(None, &Flatstore::default()), None)
        .unwrap_or_else(|e| panic!("bus: {e}"));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("subscriber socket: {e}"));
    socket.set_read_timeout(Some(WAIT)).unwrap_or_else(|e| panic!("socket: {e}"));
    let port = socket.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("socket: {e}"));
    bus.subscribe("E_UL_CONTACT_INSERT", &format!("udp:127.0.0.1:{port}"), None)
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let event = contact_event(7);
    let mut buf = vec![0u8; 65536];
    let mut recv = move || {
        socket.recv(&mut buf).unwrap_or_else(|e| panic!("event datagram not delivered: {e}"));
    };

    let mut g = c.benchmark_group("events");
    // One event in flight: latency from raise() to the datagram read.
    g.throughput(Throughput::Elements(1));
    g.bench_function("raise_to_udp_recv", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ev = event.clone();
                let start = Instant::now();
                bus.raise(ev);
                recv();
                total += start.elapsed();
            }
            total
        })
    });
    // 64 in flight: the per-event cost when the sink task is kept busy.
    const BATCH: u64 = 64;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("raise_to_udp_recv_batch64", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let evs: Vec<Event> = (0..BATCH).map(|_| event.clone()).collect();
                let start = Instant::now();
                for ev in evs {
                    bus.raise(ev);
                }
                for _ in 0..BATCH {
                    recv();
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    let dropped: u64 = bus.stats().iter().filter(|(k, _)| k == "events_dropped").map(|(_, v)| *v).sum();
    assert_eq!(dropped, 0, "the subscriber queue dropped events");
}

// ----------------------------------------------------------------- resume

fn bench_resume(c: &mut Criterion) {
    if !wanted("resume") {
        return;
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-routes/wasm32-wasip2/release/dtmf_detect.wasm");
    assert!(path.exists(), "{} missing: build the host first (cargo build)", path.display());
    let proxy = Proxy::start(RouteSource::File(path), &[("dtmf_timeout", "60")], Limits::default())
        .unwrap_or_else(|e| panic!("proxy: {e:#}"));
    let from = proxy.caller_addr();
    let ruri = format!("sip:pin-bob@{}", proxy.listener);

    // Parks one call: INVITE, then its 183, which the guest sends just
    // before it calls wait-for-event. Returns the call's id.
    let park = || {
        let i = proxy.id();
        proxy.inject(request("INVITE", &ruri, from, i, ""));
        let resp = proxy.response(101);
        assert_eq!(resp.status(), Some(183), "the PIN prompt");
        i
    };
    // The ACK for the 403, so the server transaction stops retransmitting it.
    let ack = |i: u64, resp: &Message| {
        let to = resp.header(HeaderName::To).unwrap_or_default();
        let raw = String::from_utf8_lossy(&request("ACK", &ruri, from, i, ""))
            .replace(&format!("To: <{}>", ruri), &format!("To: {to}"));
        proxy.inject(Bytes::from(raw));
    };

    let mut g = c.benchmark_group("resume");
    g.throughput(Throughput::Elements(1));
    // Timed: raise() of the call's E_DTMF until its invocation ends: the
    // waiter is matched, the fiber resumes, the guest answers 403 (the
    // wrong digit) and returns, and its Store is dropped.
    g.bench_function("raise_to_guest_done", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let i = park();
                let params = Params::new().with("callid", format!("micro-{i}")).with("digit", "9");
                let event = Event::new("E_DTMF", params);
                // The 183 can reach the caller before the guest has called
                // wait-for-event: raise again (untimed) until a waiter took it.
                let deadline = Instant::now() + WAIT;
                let start = loop {
                    let start = Instant::now();
                    if proxy.bus.raise(event.clone()) == 1 {
                        break start;
                    }
                    assert!(start < deadline, "E_DTMF matched no waiter");
                    std::thread::sleep(Duration::from_micros(50));
                };
                let (_, end) = proxy.invocation();
                total += end.saturating_duration_since(start);
                let resp = proxy.response(200);
                assert_eq!(resp.status(), Some(403), "the wrong digit");
                ack(i, &resp);
            }
            total
        })
    });
    g.finish();
}

/// Whether the command line's filter can select a benchmark of `group`, so
/// a filtered run (`-- route/`, or under callgrind) skips the other groups'
/// set-up: compiling a route module costs seconds, minutes under valgrind.
/// A filter that does not start with a group name may match any group.
fn wanted(group: &str) -> bool {
    const GROUPS: [&str; 5] = ["sip", "route", "route_reused", "events", "resume"];
    const WITH_VALUE: [&str; 9] = [
        "--profile-time",
        "--sample-size",
        "--measurement-time",
        "--warm-up-time",
        "--save-baseline",
        "--baseline",
        "--color",
        "--output-format",
        "--noise-threshold",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with('-') && (*i == 0 || !WITH_VALUE.contains(&args[i - 1].as_str())));
    let Some((_, filter)) = filter else { return true };
    let first = filter.split('/').next().unwrap_or_default();
    first == group || !GROUPS.contains(&first)
}

fn config() -> Criterion {
    // Bounded so the whole run stays within a few minutes on 2 shared cores.
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = micro;
    config = config();
    targets = bench_sip, bench_route, bench_events, bench_resume
}
criterion_main!(micro);
