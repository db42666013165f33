//! Heap profile of parked guests (issue 4): what the live heap of one call
//! suspended in `events.wait-for-event` is made of, by allocation site.
//!
//! Sets up the server as `benches/suspend.rs` does (dtmf-detect route, UDP,
//! one caller socket), warms up, then starts a dhat profiler and parks N
//! guests. Once every call got its 183 and the server is quiet, the profiler
//! is dropped, which writes every allocation still live (dhat's "at t-end"
//! bytes and blocks, with full backtraces) to
//! `target/dhat-suspend-N.json`, and the process exits without waking them.
//! Start-up (compilation, pools, sockets) happens before the profiler starts
//! and is not counted; allocations that grow with N (hash tables) are.
//!
//! The allocator is the system one (dhat wraps it), so these are requested
//! sizes: mimalloc's size-class rounding and page slack come on top (compare
//! with the "mimalloc arenas" line of `benches/suspend.rs`).
//!
//! ```sh
//! cargo bench -p sipbox --bench suspend_heap -- 1000
//! cargo bench -p sipbox --bench suspend_heap -- 2000
//! python3 bench/heap_by_owner.py target/dhat-suspend-1000.json target/dhat-suspend-2000.json
//! ```
//! The script divides the difference by 1000, so fixed costs cancel out.
//! With `replay` after N, the guests park with `[limits] suspend = "replay"`
//! (the output file is the same: run one mode at a time).

#![allow(clippy::unwrap_used, reason = "a poisoned lock in a benchmark is a failed run")]

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/parked_calls.rs"]
mod parked_calls;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sipbox::server::init_logging("warn");
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let proxy = parked_calls::start(n, parked_calls::suspend_from_args()).await?;
    let (runtime, server) = (&proxy.runtime, proxy.addr);

    let caller = UdpSocket::bind("127.0.0.1:0")?;
    let receiver = caller.try_clone()?;
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    let seen: Arc<Mutex<HashSet<usize>>> = Arc::new(Mutex::new(HashSet::with_capacity(n)));
    let recorder = seen.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok(len) = receiver.recv(&mut buf) else { continue };
            if let Some((i, 183)) = parked_calls::parse_response(&buf[..len]) {
                recorder.lock().unwrap().insert(i);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let profiler = dhat::Profiler::builder()
        .file_name(root.join(format!("target/dhat-suspend-{n}.json")))
        .trim_backtraces(None)
        .build();
    let started = Instant::now();
    let parked = parked_calls::park_all(&caller, server, n, &seen).await?;
    // Let the 183s' retransmission bookkeeping and task wake-ups settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = dhat::HeapStats::get();
    println!(
        "parked {parked} of {n} in {:.1} s; live instances {:?}; heap since profiler start: \
         {} bytes in {} blocks ({:.0} B, {:.1} blocks per guest)",
        started.elapsed().as_secs_f64(),
        runtime.instances(),
        stats.curr_bytes,
        stats.curr_blocks,
        stats.curr_bytes as f64 / parked.max(1) as f64,
        stats.curr_blocks as f64 / parked.max(1) as f64,
    );
    anyhow::ensure!(parked == n, "only {parked} of {n} calls parked");
    drop(profiler);
    // The parked guests are not woken: their heap is what was measured.
    std::process::exit(0)
}
