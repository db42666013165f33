//! Event delivery throughput (issue 3): events raised into the registry and
//! delivered to one `udp:` subscriber, against a plain `sendto` loop sending
//! the same payloads from one socket, measured in the same run.
//!
//! `cargo bench -p sipbox --bench events_udp [-- N]` (default 200000).
//! The subscriber's queue is sized to N so the comparison measures delivery,
//! not the drop policy; loopback UDP can still drop when the receiver falls
//! behind, so both rows report what arrived.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sipbox::events::{Event, EventBus, EventsConfig, Params};
use sipbox::sinks::{self, Flatstore};

/// A receiver thread counting datagrams; returns (count, time of the last).
/// The receiver's port, its thread (which returns the count and the time of the last
/// datagram), and the live count.
type Receiver = (u16, std::thread::JoinHandle<(usize, Instant)>, Arc<AtomicUsize>);

fn receiver(expected: usize) -> anyhow::Result<Receiver> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let port = socket.local_addr()?.port();
    let count = Arc::new(AtomicUsize::new(0));
    let shared = count.clone();
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        let mut n = 0;
        while n < expected {
            match socket.recv(&mut buf) {
                Ok(_) => {
                    n += 1;
                    last = Instant::now();
                    shared.store(n, Ordering::Relaxed);
                }
                Err(_) => break, // 500 ms of silence: the rest was dropped
            }
        }
        (n, last)
    });
    Ok((port, handle, count))
}

fn event(i: usize) -> Event {
    let params = Params::new()
        .with("domain", "location")
        .with("aor", format!("user{i}"))
        .with("uri", format!("sip:user{i}@127.0.0.1:5080"))
        .with("expires", 1_800_000_000i64);
    Event::new("E_UL_CONTACT_INSERT", params)
}

fn row(name: &str, sent: usize, got: usize, took: Duration) {
    println!(
        "| {name} | {sent} | {got} | {:.3} s | {:.0} |",
        took.as_secs_f64(),
        got as f64 / took.as_secs_f64().max(1e-9)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    println!("| path | events sent | received | time | events/s received |");
    println!("|---|---|---|---|---|");

    // 1. Plain sendto loop: the floor any event transport pays.
    let payloads: Vec<String> = (0..n).map(|i| event(i).to_jsonrpc_string()).collect();
    let (port, handle, _) = receiver(n)?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let start = Instant::now();
    for p in &payloads {
        let _ = sender.send_to(p.as_bytes(), ("127.0.0.1", port));
    }
    let (got, last) = handle.join().map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    row("plain sendto loop (payloads prebuilt)", n, got, last.duration_since(start));

    // 2. raise() -> registry -> subscriber queue -> udp sink task -> socket.
    let cfg = EventsConfig { queue_len: n, ..EventsConfig::default() };
    let bus = EventBus::new(&cfg, sinks::schemes(None, &Flatstore::default()), None)?;
    let (port, handle, _) = receiver(n)?;
    bus.subscribe("E_UL_CONTACT_INSERT", &format!("udp:127.0.0.1:{port}"), None)?;
    let start = Instant::now();
    for i in 0..n {
        bus.raise(event(i));
        if i % 1024 == 1023 {
            tokio::task::yield_now().await;
        }
    }
    let raised = start.elapsed();
    let (got, last) =
        tokio::task::spawn_blocking(move || handle.join()).await?.map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    row("sipbox raise -> udp: subscriber (params built per event)", n, got, last.duration_since(start));
    println!();
    println!("raise() itself: {:.0} events/s (never blocks; delivery is queued)", n as f64 / raised.as_secs_f64());
    let dropped: u64 = bus.stats().iter().filter(|(k, _)| k == "events_dropped").map(|(_, v)| *v).sum();
    println!("dropped by the subscriber queue: {dropped}");
    Ok(())
}
