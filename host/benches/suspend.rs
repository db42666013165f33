//! Suspended guests at scale (issue 4): N INVITEs over real UDP to the
//! `dtmf-detect` route, each of which answers 183 and parks in
//! `events.wait-for-event("E_DTMF", ["callid=..."])`. Reports the RSS each
//! parked guest costs (its instance, fiber stack and SIP transaction), then
//! raises one `E_DTMF` per call and reports the resume latency: from the
//! raise to the route's `403` arriving back at the caller's socket.
//!
//! `cargo bench -p sipbox --bench suspend [-- N] [replay]` (default 10000):
//! with `replay`, `[limits] suspend = "replay"`, so a parked guest holds
//! its journal instead of its instance, and resumes by replay.

#![allow(clippy::unwrap_used, reason = "a poisoned lock in a benchmark is a failed run")]

/// The allocator the server runs with (see `main.rs`), so heap figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{HashMap, HashSet};
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipbox::events::{Event, Params};

#[path = "common/parked_calls.rs"]
mod parked_calls;

/// A run of adjacent mappings of the same file (or of anonymous memory):
/// the pooling allocator's pools are one reservation each, split by guard
/// pages into many mappings, so they show up as one region.
#[derive(Clone, Debug)]
struct Region {
    start: u64,
    end: u64,
    name: String,
    rss_kib: u64,
    /// The part of `rss_kib` in single mappings of 64 MiB or more: in the
    /// stack + table region, the table pool is one mapping while the stacks
    /// are 1 MiB mappings between guard pages, so this tells them apart.
    rss_in_large_mappings_kib: u64,
    /// Anonymous memory right after a module's memory image: the rest of a
    /// linear-memory slot (the image splits the pool into per-slot pieces).
    follows_image: bool,
}

/// A mapping at least this large is a pool or arena on its own.
const LARGE_MAPPING: u64 = 64 << 20;

/// `/proc/self/smaps` folded into [`Region`]s.
fn regions() -> Vec<Region> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut out: Vec<Region> = Vec::new();
    let mut current: Option<Region> = None;
    let mut mapping_is_large = false;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            let name = parts.nth(4).unwrap_or("").to_string();
            mapping_is_large = end - start >= LARGE_MAPPING;
            match current.as_mut() {
                Some(r) if r.end == start && r.name == name && !name.starts_with('[') => r.end = end,
                _ => {
                    let follows_image = name.is_empty()
                        && current.as_ref().is_some_and(|r| r.end == start && r.name.contains("wasm-memory-image"));
                    out.extend(current.take());
                    current =
                        Some(Region { start, end, name, rss_kib: 0, rss_in_large_mappings_kib: 0, follows_image });
                }
            }
        } else if first == "Rss:"
            && let (Some(r), Some(kib)) = (current.as_mut(), parts.next().and_then(|v| v.parse::<u64>().ok()))
        {
            r.rss_kib += kib;
            if mapping_is_large {
                r.rss_in_large_mappings_kib += kib;
            }
        }
    }
    out.extend(current);
    out
}

const STACKS_AND_TABLES: &str = "fiber stack + table pools";

/// What a region is, from its name and size (`slots` pool slots).
fn classify(r: &Region, slots: u64) -> &'static str {
    let size = r.end - r.start;
    let per_slot = size / slots.max(1);
    if r.name == "[heap]" {
        return "Rust heap ([heap])";
    }
    if r.name.starts_with('[') {
        return "other ([stack], [vdso], ...)";
    }
    if !r.name.is_empty() {
        // Copy-on-write pages of a module's memory image, inside the
        // linear-memory pool: the guest's data segments it wrote.
        return if r.name.contains("memfd") { "linear memory: image pages (memfd)" } else { "files (binary, libs)" };
    }
    if r.follows_image {
        return "linear memory: other pages (stack, heap)";
    }
    // The sizes measured with wasmtime 48 (2 memories and 4 tables per
    // slot): the linear-memory pool is ~2 MiB per slot; the stack pool
    // (1 MiB + guard per slot) and the table pool (~0.6 MiB per slot) are
    // adjacent, so they fold into one region of ~1.6 MiB per slot.
    match per_slot {
        n if n >= 2 << 20 => "linear-memory pool (other pages)",
        n if n >= 1 << 20 => STACKS_AND_TABLES,
        _ if size >= 64 << 20 => "anon >= 64 MiB (malloc arenas)",
        _ => "anon < 64 MiB (malloc, thread stacks)",
    }
}

/// RSS per region class between two snapshots, in KiB.
fn breakdown(before: &[Region], after: &[Region], slots: u64) -> Vec<(&'static str, i64, i64)> {
    let mut classes: Vec<(&'static str, i64, i64)> = Vec::new();
    let mut add = |class: &'static str, b: i64, a: i64| match classes.iter_mut().find(|c| c.0 == class) {
        Some(c) => {
            c.1 += b;
            c.2 += a;
        }
        None => classes.push((class, b, a)),
    };
    // The stack + table region is split by mapping size (see `Region`).
    let parts = |r: &Region| -> [(&'static str, i64); 2] {
        let class = classify(r, slots);
        let large = r.rss_in_large_mappings_kib as i64;
        let small = r.rss_kib as i64 - large;
        if class == STACKS_AND_TABLES {
            [("fiber stacks (1 MiB mappings)", small), ("table pool (one mapping)", large)]
        } else {
            [(class, small), (class, large)]
        }
    };
    for r in after {
        for (class, kib) in parts(r) {
            add(class, 0, kib);
        }
    }
    for r in before {
        for (class, kib) in parts(r) {
            add(class, kib, 0);
        }
    }
    classes.sort_by_key(|c| -(c.2 - c.1));
    classes
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sipbox::server::init_logging("warn");
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let proxy = parked_calls::start(n, parked_calls::suspend_from_args()).await?;
    let (runtime, bus, server) = (&proxy.runtime, &proxy.bus, proxy.addr);

    // The caller: one socket, a thread recording when each call's 183 and
    // final response arrive.
    let caller = UdpSocket::bind("127.0.0.1:0")?;
    let receiver = caller.try_clone()?;
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    let answered_183: Arc<Mutex<HashSet<usize>>> = Arc::new(Mutex::new(HashSet::with_capacity(n)));
    let finals: Arc<Mutex<HashMap<usize, Instant>>> = Arc::new(Mutex::new(HashMap::with_capacity(n)));
    let (on_183, on_final) = (answered_183.clone(), finals.clone());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(len) = receiver.recv(&mut buf) else { continue };
            match parked_calls::parse_response(&buf[..len]) {
                Some((i, 183)) => {
                    on_183.lock().unwrap().insert(i);
                }
                Some((i, 200..=699)) => {
                    on_final.lock().unwrap().insert(i, Instant::now());
                }
                _ => {}
            }
        }
    });

    // Warm up (compile caches, pool slots), then measure the base RSS.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base_rss = parked_calls::rss_kib();
    let base_regions = regions();
    let park_start = Instant::now();
    let parked = parked_calls::park_all(&caller, server, n, &answered_183).await?;
    let park_time = park_start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parked_rss = parked_calls::rss_kib();
    let parked_regions = regions();
    let (live, size) = runtime.instances();

    // Wake each call with its own event; the wrong digit makes the route
    // answer 403 right after it resumes.
    let mut raised = Vec::with_capacity(n);
    let wake_start = Instant::now();
    for i in 0..n {
        let params = Params::new().with("callid", format!("bench-{i}")).with("digit", "9");
        raised.push(Instant::now());
        bus.raise(Event::new("E_DTMF", params));
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while finals.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wake_time = wake_start.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = thread.join();

    let finals = finals.lock().unwrap();
    let mut latencies: Vec<Duration> = finals.iter().map(|(i, at)| at.saturating_duration_since(raised[*i])).collect();
    latencies.sort();
    let per_guest = (parked_rss.saturating_sub(base_rss)) as f64 / parked.max(1) as f64;

    println!("| metric | value |");
    println!("|---|---|");
    println!("| calls sent | {n} |");
    println!("| [limits] suspend | {:?} |", parked_calls::suspend_from_args());
    println!("| guests parked in wait-for-event (183 received) | {parked} |");
    println!("| live route instances while parked | {live} of {size} |");
    println!("| time to park all | {:.2} s |", park_time.as_secs_f64());
    println!("| RSS before / parked | {} MiB / {} MiB |", base_rss / 1024, parked_rss / 1024);
    println!(
        "| RSS per parked guest (transaction and instance; journal, no instance, with replay) | {per_guest:.1} KiB |"
    );
    println!("| calls resumed and answered | {} |", finals.len());
    println!("| time to wake all (raise loop to last answer) | {:.2} s |", wake_time.as_secs_f64());
    println!("| resume latency p50 | {:.2} ms |", percentile(&latencies, 0.50).as_secs_f64() * 1e3);
    println!("| resume latency p99 | {:.2} ms |", percentile(&latencies, 0.99).as_secs_f64() * 1e3);
    // Where the parked guests' RSS is: /proc/self/smaps by region class.
    let slots = u64::from(parked_calls::pool_slots(n));
    println!();
    println!("| RSS by mapping class | before | parked | per parked guest |");
    println!("|---|---|---|---|");
    for (class, before, after) in breakdown(&base_regions, &parked_regions, slots) {
        if before == 0 && after == 0 {
            continue;
        }
        let per = (after - before) as f64 / parked.max(1) as f64;
        println!("| {class} | {} MiB | {} MiB | {per:.1} KiB |", before / 1024, after / 1024);
    }
    // The regions that grew most, to check the classification by size.
    let mut grown: Vec<(i64, &Region)> = parked_regions
        .iter()
        .map(|r| {
            let before = base_regions.iter().find(|b| b.start == r.start).map_or(0, |b| b.rss_kib);
            (r.rss_kib as i64 - before as i64, r)
        })
        .collect();
    grown.sort_by_key(|g| -g.0);
    println!();
    println!("| region (largest growth) | size | class | RSS growth |");
    println!("|---|---|---|---|");
    for (delta, r) in grown.iter().take(6) {
        let size_mib = (r.end - r.start) as f64 / (1 << 20) as f64;
        println!("| {:#x} {} | {size_mib:.0} MiB | {} | {delta} KiB |", r.start, r.name, classify(r, slots));
    }
    anyhow::ensure!(parked == n && finals.len() == n, "not every call parked and resumed");
    Ok(())
}
