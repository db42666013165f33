//! The server the parked-call benches run (`suspend.rs`, `suspend_heap.rs`,
//! `park_notify.rs`): a route module on one UDP listener, sized for `n` calls
//! parked at once, and the INVITE, response and RSS helpers of its caller.

#![allow(dead_code, reason = "each bench uses a part of this file")]

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipbox::events::{EventBus, EventsConfig, SinkSchemes};
use sipbox::location::{Location, LocationConfig};
use sipbox::runtime::{self, Limits, RouteServices, RouteSource, Runtime, Suspend};
use sipbox::shutdown::Shutdown;
use sipbox::transaction::{Core, Timers, Transactions};
use sipbox::transport::{ListenSpec, Proto, Transports};

/// Instances beyond `n`: room for the load-time smoke instantiation and strays.
const HEADROOM: usize = 64;

/// A running server with room for `n` parked calls.
pub struct ParkedCallServer {
    pub runtime: Runtime,
    pub bus: EventBus,
    /// Its UDP listener.
    pub addr: SocketAddr,
    // Kept alive for the bench's lifetime.
    _core: Core,
}

/// Pool slots the engine sizes for `n` calls (`max_instances` + the 16
/// slots `engine::pooling` adds).
pub fn pool_slots(n: usize) -> u32 {
    (n + HEADROOM + 16) as u32
}

/// Starts the `dtmf-detect` route with a 600 s DTMF wait, so parked calls
/// stay parked until the bench raises their event; `suspend` is how.
pub async fn start(n: usize, suspend: Suspend) -> anyhow::Result<ParkedCallServer> {
    start_route(n, "dtmf_detect", &[("dtmf_timeout", "600")], suspend).await
}

/// `[limits] suspend` from the bench's arguments: `replay`, else in place.
pub fn suspend_from_args() -> Suspend {
    if std::env::args().skip(1).any(|a| a == "replay") { Suspend::Replay } else { Suspend::InPlace }
}

/// Starts example route `module` (built by `cargo build`) with `vars`.
pub async fn start_route(
    n: usize,
    module: &str,
    vars: &[(&str, &str)],
    suspend: Suspend,
) -> anyhow::Result<ParkedCallServer> {
    let route = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/wasm-routes/wasm32-wasip2/release/{module}.wasm"));
    anyhow::ensure!(route.exists(), "{} missing: build the host first (cargo build)", route.display());

    let (invoker, invocations) = runtime::invocations(1024);
    let events = EventsConfig { ebr_max_waiters: n + HEADROOM, ..EventsConfig::default() };
    let bus = EventBus::new(&events, SinkSchemes::new(), Some(invoker.notify_handler()))?;
    let location = Location::open(&LocationConfig { db_path: None, ..LocationConfig::default() })?;
    let limits = Limits { max_instances: (n + HEADROOM) as u32, memory_mb: 4, suspend, ..Limits::default() };
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
    let runtime = Runtime::new(limits, RouteSource::File(route), services, invocations)?;
    let listen = [ListenSpec { proto: Proto::Udp, addr: "127.0.0.1:0".parse()? }];
    let (transports, listeners) = Transports::bind(&listen).await?;
    let addr = transports.listeners()[0].addr;
    let core = Core::with_transactions(transports, Timers::default(), Arc::new(runtime.clone()), transactions);
    listeners.start(Arc::new(core.clone()), &Shutdown::new());
    Ok(ParkedCallServer { runtime, bus, addr, _core: core })
}

/// Sends the `dtmf-detect` INVITEs of calls `0..n` from `caller` to `server`, at most 100
/// ahead of the calls in `parked` (filled by the caller's receiver as 183s arrive), then, as a
/// UAC would, resends the INVITEs of calls not parked yet (a datagram was dropped; the server
/// absorbs a retransmission and resends the 183) until all are, for at most two minutes.
/// Returns how many calls are parked.
pub async fn park_all(
    caller: &UdpSocket,
    server: SocketAddr,
    n: usize,
    parked: &Mutex<HashSet<usize>>,
) -> anyhow::Result<usize> {
    let from = caller.local_addr()?;
    let count = || parked.lock().unwrap_or_else(|p| p.into_inner()).len();
    for i in 0..n {
        caller.send_to(invite(i, from, server).as_bytes(), server)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while count() + 100 < i && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let missing: Vec<usize> = {
            let parked = parked.lock().unwrap_or_else(|p| p.into_inner());
            (0..n).filter(|i| !parked.contains(i)).collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            return Ok(count());
        }
        for i in missing {
            caller.send_to(invite(i, from, server).as_bytes(), server)?;
        }
    }
}

/// The process's resident set, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Call `i`'s INVITE (Call-ID `bench-i`) to `pin-bob`, whom `dtmf-detect`
/// parks.
pub fn invite(i: usize, from: SocketAddr, to: SocketAddr) -> String {
    invite_to("pin-bob", i, from, to)
}

/// Call `i`'s INVITE (Call-ID `bench-i`) to `user`.
pub fn invite_to(user: &str, i: usize, from: SocketAddr, to: SocketAddr) -> String {
    format!(
        "INVITE sip:{user}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-bench-{i};rport\r\n\
         From: <sip:caller@{from}>;tag=t{i}\r\nTo: <sip:{user}@{to}>\r\nCall-ID: bench-{i}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Call index and status of a response, from its Call-ID `bench-N`.
pub fn parse_response(buf: &[u8]) -> Option<(usize, u16)> {
    let text = std::str::from_utf8(buf).ok()?;
    let status = text.get(8..11)?.parse().ok()?;
    let start = text.find("Call-ID: bench-")? + "Call-ID: bench-".len();
    let end = start + text[start..].find("\r\n")?;
    Some((text[start..end].parse().ok()?, status))
}
