//! Hot reload under load: SIPp calls at a steady rate through the proxy while
//! the route module file is replaced every two seconds, by rename as a
//! deploy tool would, letting the file watch reload it. The two versions
//! (`examples/reload-a`, `reload-b`) relay alike but stamp their name in
//! `X-Route-Version`, which the callee requires and logs. Broken files
//! dropped in mid-load (a truncated module, a core module, a component that
//! does not export the route world) are refused with their reason. Every
//! call must succeed, both versions must have routed calls, and the MI's
//! `routes:*` statistics must count each good and each refused reload.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{
    LOCALHOST, Route, Server, ServerConfig, Sipp, TestEnv, free_ports, mi_call, tail_file, uac, wait_until,
};

/// Calls per second, and for how long.
const RATE: u32 = 200;
const SECONDS: u32 = 30;
/// Time between two replacements of the module file.
const EVERY: Duration = Duration::from_secs(2);

/// What is renamed over the module file, in order, one every [`EVERY`].
#[derive(Clone, Copy, Debug)]
enum Replacement {
    Good(&'static str),
    /// The first half of a good module.
    Truncated,
    /// `(module)`: WebAssembly, but a core module.
    CoreModule,
    /// The smallest component: valid, but exports nothing of the route world.
    EmptyComponent,
}

const SCHEDULE: &[Replacement] = &[
    Replacement::Good("reload_b.wasm"),
    Replacement::Good("reload_a.wasm"),
    Replacement::Good("reload_b.wasm"),
    Replacement::Truncated,
    Replacement::Good("reload_a.wasm"),
    Replacement::Good("reload_b.wasm"),
    Replacement::CoreModule,
    Replacement::Good("reload_a.wasm"),
    Replacement::Good("reload_b.wasm"),
    Replacement::EmptyComponent,
    Replacement::Good("reload_a.wasm"),
    Replacement::Good("reload_b.wasm"),
    Replacement::Good("reload_a.wasm"),
];

fn bytes_of(drop: Replacement) -> Vec<u8> {
    let good = |name| std::fs::read(Route::example_path(name)).expect("example module (host/build.rs builds it)");
    match drop {
        Replacement::Good(name) => good(name),
        Replacement::Truncated => {
            let bytes = good("reload_b.wasm");
            bytes[..bytes.len() / 2].to_vec()
        }
        Replacement::CoreModule => b"\0asm\x01\x00\x00\x00".to_vec(),
        Replacement::EmptyComponent => b"\0asm\x0d\x00\x01\x00".to_vec(),
    }
}

/// Writes `bytes` beside `module` and renames them over it.
fn replace(module: &Path, bytes: &[u8]) {
    let staged = module.with_extension("wasm.next");
    std::fs::write(&staged, bytes).expect("stage the new module");
    std::fs::rename(&staged, module).expect("rename it into place");
}

fn routes_stats(server: &Server) -> serde_json::Value {
    let resp = mi_call(server.mi_addr(), "get_statistics", json!({"statistics": ["routes:"]}));
    resp.get("result").cloned().unwrap_or_else(|| panic!("get_statistics failed: {resp}"))
}

fn stat(stats: &serde_json::Value, name: &str) -> u64 {
    stats.get(name).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[test]
fn module_replaced_every_two_seconds_under_load_drops_no_call() {
    let env = TestEnv::new("reload_under_load");
    let [uas_port] = free_ports();
    let module = env.path().join("route.wasm");
    std::fs::write(&module, bytes_of(Replacement::Good("reload_a.wasm"))).expect("install reload-a");
    let config = ServerConfig { route: Route::File(module.clone()), mi: true, ..ServerConfig::default() }
        .var("next_hop", format!("{LOCALHOST}:{uas_port}"));
    let server = Server::start(&env, config);

    let calls = RATE * SECONDS;
    let run_for = Duration::from_secs(u64::from(SECONDS) + 30);
    let versions_log = env.path().join("uas-versions.log");
    let callee = Sipp::new(&env, "uas_version.xml")
        .local_port(uas_port)
        .calls(calls)
        .timeout(run_for)
        .without_message_trace()
        .arg("-trace_logs")
        .arg("-log_file")
        .arg(&versions_log)
        .spawn();
    let caller = uac(&env, &server, "uac_call.xml", "carol")
        .calls(calls)
        .rate(RATE)
        .timeout(run_for)
        .without_message_trace()
        .spawn();

    // The replacements, on a fixed schedule while the calls run.
    let started = Instant::now();
    for (n, drop) in SCHEDULE.iter().enumerate() {
        let at = EVERY * (n as u32 + 1);
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        replace(&module, &bytes_of(*drop));
    }

    let caller = caller.wait();
    caller.assert_ok(&format!("{calls} calls at {RATE}/s while the module was replaced every {EVERY:?}"));
    let callee = callee.wait();
    callee.assert_ok("the callee got every call with an X-Route-Version");

    // Both versions routed calls, and every call was routed by one of them.
    let log = std::fs::read_to_string(&versions_log).unwrap_or_default();
    let count = |version: &str| log.lines().filter(|l| l.trim() == format!("routed-by {version}")).count();
    let (a, b) = (count("reload-a"), count("reload-b"));
    assert!(a > 0 && b > 0, "both versions must have served: reload-a {a}, reload-b {b} calls");
    assert_eq!(a + b, calls as usize, "one version line per call\n{}", tail_file(&versions_log, 20));

    // Each good file was reloaded, each broken one refused, each once.
    let good = SCHEDULE.iter().filter(|d| matches!(d, Replacement::Good(_))).count() as u64;
    let broken = SCHEDULE.len() as u64 - good;
    let counted = wait_until(Duration::from_secs(10), || {
        let stats = routes_stats(&server);
        stat(&stats, "routes:reloads") + stat(&stats, "routes:reload_failures") >= good + broken
    });
    let stats = routes_stats(&server);
    assert!(counted, "not every replacement was acted on: {stats}");
    assert_eq!(stat(&stats, "routes:reloads"), good, "{stats}");
    assert_eq!(stat(&stats, "routes:reload_failures"), broken, "{stats}");
    assert_eq!(stat(&stats, "routes:generation"), good + 1, "one generation per good load: {stats}");

    // The refusals name their reasons.
    let server_log = server.log();
    for reason in ["failed to compile", "a core WebAssembly module, not a component", "lacks the sipbox:route exports"]
    {
        assert!(
            server_log.lines().any(|l| l.contains("route reload refused") && l.contains(reason)),
            "no refusal naming {reason:?} in the server log\n{}",
            server_log.lines().filter(|l| l.contains("reload")).collect::<Vec<_>>().join("\n")
        );
    }
}
