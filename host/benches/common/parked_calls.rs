//! The server both parked-call benches run (`suspend.rs`, `suspend_heap.rs`):
//! the `dtmf-detect` route on one UDP listener, sized for `n` calls parked in
//! `wait-for-event` at once, and the INVITE and response helpers of its caller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sipbox::events::{EventBus, EventsConfig};
use sipbox::location::{Location, LocationConfig};
use sipbox::runtime::{Limits, RouteSource, Runtime};
use sipbox::transaction::{Core, Timers};
use sipbox::transport::{DeferredHandler, ListenSpec, Proto, Transports};

/// Instances beyond `n`: room for the load-time smoke instantiation and strays.
const HEADROOM: usize = 64;

/// A running server with room for `n` parked calls.
pub struct ParkedCallServer {
    pub runtime: Runtime,
    #[allow(dead_code)] // suspend_heap.rs never wakes its calls
    pub bus: EventBus,
    /// Its UDP listener.
    pub addr: SocketAddr,
    // Kept alive for the bench's lifetime.
    _core: Core,
}

/// Pool slots the engine sizes for `n` calls (`max_instances` + the 16
/// slots `engine::pooling` adds).
#[allow(dead_code)] // used by suspend.rs only
pub fn pool_slots(n: usize) -> u32 {
    (n + HEADROOM + 16) as u32
}

/// Starts the `dtmf-detect` route (built by `cargo build`) with a 600 s DTMF
/// wait, so parked calls stay parked until the bench raises their event.
pub async fn start(n: usize) -> anyhow::Result<ParkedCallServer> {
    let route = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-routes/wasm32-wasip2/release/dtmf_detect.wasm");
    anyhow::ensure!(route.exists(), "{} missing: build the host first (cargo build)", route.display());

    let location = Location::open(&LocationConfig { db_path: None, ..LocationConfig::default() })?;
    let limits = Limits { max_instances: (n + HEADROOM) as u32, memory_mb: 4, ..Limits::default() };
    let runtime = Runtime::new(limits, location, RouteSource::File(route))?;
    let bus = EventBus::new(&EventsConfig { ebr_max_waiters: n + HEADROOM, ..EventsConfig::default() });
    runtime.set_event_bus(bus.clone());
    let mut vars = std::collections::BTreeMap::new();
    vars.insert("dtmf_timeout".to_string(), "600".to_string());
    runtime.set_vars(vars);
    let deferred = DeferredHandler::new();
    let listen = [ListenSpec { proto: Proto::Udp, addr: "127.0.0.1:0".parse()? }];
    let transports = Transports::bind(&listen, deferred.clone()).await?;
    let addr = transports.listeners()[0].addr;
    let core = Core::new(transports, Timers::default(), Arc::new(runtime.clone()));
    runtime.set_core(core.clone());
    deferred.set(Arc::new(core.clone()));
    Ok(ParkedCallServer { runtime, bus, addr, _core: core })
}

/// Call `i`'s INVITE (Call-ID `bench-i`) to the parking route's user.
pub fn invite(i: usize, from: SocketAddr, to: SocketAddr) -> String {
    format!(
        "INVITE sip:pin-bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-bench-{i};rport\r\n\
         From: <sip:caller@{from}>;tag=t{i}\r\nTo: <sip:pin-bob@{to}>\r\nCall-ID: bench-{i}\r\n\
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
