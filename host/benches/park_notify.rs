//! Calls parked the notify way (issue 4): N INVITEs over real UDP to the
//! `push-notification` route, each of which subscribes to
//! `E_UL_CONTACT_INSERT` for the callee (`notify-on-event`), POSTs a push to
//! a local HTTP receiver and keeps its transaction open with
//! `tm.wait-for-new-branches`, then returns: its instance is dropped, and
//! the call waits with no guest at all, as OpenSIPS's
//! `async(wait_for_event(..), resume_route)` and `notify_on_event` scripts do.
//! Reports the RSS each parked call costs (transaction, subscription,
//! response context), to set beside `benches/suspend.rs`, where the guest
//! itself is parked in `wait-for-event`.
//!
//! `cargo bench -p sipbox --bench park_notify [-- N]` (default 10000).

/// The allocator the server runs with (see `main.rs`), so heap figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

#[path = "common/parked_calls.rs"]
mod parked_calls;

// The push provider of the end-to-end tests.
#[allow(dead_code, reason = "mi_call and some accessors are for the tests")]
#[path = "../../tests/e2e/harness/http.rs"]
mod http;
const LOCALHOST: &str = "127.0.0.1";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sipbox::server::init_logging("warn");
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let pushes = http::HttpReceiver::start(200);
    let url = pushes.url("/push");
    // Subscriptions outlive the bench; Timer C (180 s) bounds each wait.
    let vars = [("push_url", url.as_str()), ("push_timeout", "600")];
    let parked = parked_calls::start_route(n, "push_notification", &vars, sipbox::runtime::Suspend::InPlace).await?;
    let (runtime, server) = (&parked.runtime, parked.addr);

    // The caller only needs its socket drained; a final response means a
    // call was not parked.
    let caller = UdpSocket::bind("127.0.0.1:0")?;
    let from = caller.local_addr()?;
    let receiver = caller.try_clone()?;
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    let finals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = finals.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok(len) = receiver.recv(&mut buf) else { continue };
            if parked_calls::parse_response(&buf[..len]).is_some_and(|(_, status)| status >= 200) {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });

    let base_rss = parked_calls::rss_kib();
    let park_start = Instant::now();
    let mut pushed: HashSet<String> = HashSet::with_capacity(n);
    let take_pushes = |pushed: &mut HashSet<String>, within: Duration| {
        while let Some(req) = pushes.next_within(within) {
            if let Some(id) = req.json()["call_id"].as_str() {
                pushed.insert(id.to_string());
            }
        }
    };
    for i in 0..n {
        caller.send_to(parked_calls::invite_to("bob", i, from, server).as_bytes(), server)?;
        // At most 100 calls between INVITE and push, so loopback buffers rarely drop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pushed.len() + 100 < i && Instant::now() < deadline {
            take_pushes(&mut pushed, Duration::from_millis(1));
        }
    }
    // Retransmit INVITEs whose push has not come, as a UAC would (the
    // server absorbs a retransmission of a call it already parked).
    let deadline = Instant::now() + Duration::from_secs(60);
    while pushed.len() < n && Instant::now() < deadline {
        take_pushes(&mut pushed, Duration::from_millis(500));
        for i in (0..n).filter(|i| !pushed.contains(&format!("bench-{i}"))) {
            caller.send_to(parked_calls::invite_to("bob", i, from, server).as_bytes(), server)?;
        }
    }
    let park_time = park_start.elapsed();
    // Parked once every route invocation has returned.
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime.instances().0 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (live, _) = runtime.instances();
    let parked_rss = parked_calls::rss_kib();
    let parked_calls = pushed.len();
    let per_call = parked_rss.saturating_sub(base_rss) as f64 / parked_calls.max(1) as f64;

    println!("| metric | value |");
    println!("|---|---|");
    println!("| calls sent | {n} |");
    println!("| calls parked (push received) | {parked_calls} |");
    println!("| final responses while parked (should be 0) | {} |", finals.load(std::sync::atomic::Ordering::Relaxed));
    println!("| route instances live while parked | {live} |");
    println!("| time to park all | {:.2} s |", park_time.as_secs_f64());
    println!("| RSS before / parked | {} MiB / {} MiB |", base_rss / 1024, parked_rss / 1024);
    println!("| RSS per parked call (transaction, subscription, response context) | {per_call:.1} KiB |");
    anyhow::ensure!(parked_calls == n, "only {parked_calls} of {n} calls parked");
    // The parked calls are not woken: their memory is what was measured.
    std::process::exit(0)
}
