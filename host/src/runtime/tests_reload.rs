//! Hot reload with the two versions `examples/reload-a` and `reload-b`
//! (which stamp their name on what they do): named event-route modules
//! reloaded on their own, a guest waiting across a reload finishing on its
//! version in both suspend modes, `[routes]` re-read from a config file, the
//! file watch, and the compile cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::modules::example_route_path;
use super::{CompileCache, Compiled, Limits, MAIN, Reloader, RouteSet, RouteSource, RoutesUpdate, Runtime, Suspend};
use crate::config::Config;
use crate::events::ebr::Filters;
use crate::events::{Event, Params};
use crate::shutdown::Shutdown;

const WITHIN: Duration = Duration::from_secs(10);

fn example_path(name: &str) -> PathBuf {
    PathBuf::from(example_route_path(name).expect("example built by build.rs"))
}

fn example(name: &str) -> RouteSource {
    RouteSource::File(example_path(name))
}

fn limits() -> Limits {
    Limits { max_instances: 8, ..Limits::default() }
}

fn runtime_with(routes: &RouteSet, limits: Limits) -> Runtime {
    Runtime::standalone_with(limits, routes, None).expect("the modules load")
}

/// Polls `cond` every 5 ms for at most [`WITHIN`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs event route `route` (waiting for E_RELOAD_RESUME first when `wait`)
/// in the background, and returns the version the module that ran it said
/// it was, from its `E_ROUTE_VERSION`.
fn run_event(rt: &Runtime, route: &str, wait: bool) -> tokio::task::JoinHandle<String> {
    let filters = Filters::parse(&[format!("route={route}")]).expect("filter");
    let said = rt.bus().wait_for_event("E_ROUTE_VERSION", filters, WITHIN).expect("observe E_ROUTE_VERSION");
    let params = if wait { Params::new().with("wait", "yes") } else { Params::new() };
    let (rt, route) = (rt.clone(), Arc::<str>::from(route));
    tokio::spawn(async move {
        rt.run_event_route(route.clone(), Event::new("E_TEST", params)).await;
        let event = said.await.unwrap_or_else(|| panic!("route {route} raised no E_ROUTE_VERSION"));
        match event.param("version") {
            Some(crate::events::Value::Str(version)) => version.clone(),
            other => panic!("E_ROUTE_VERSION without a version string: {other:?}"),
        }
    })
}

async fn version_of(rt: &Runtime, route: &str) -> String {
    run_event(rt, route, false).await.expect("the event route task")
}

fn update(main: RouteSource, named: &[(&str, RouteSource)]) -> RoutesUpdate {
    let named = named.iter().map(|(name, source)| (name.to_string(), source.clone())).collect();
    RoutesUpdate { routes: RouteSet { main, named }, vars: BTreeMap::new(), watch: false }
}

#[tokio::test]
async fn named_modules_serve_their_event_routes_and_reload_one_by_one() {
    let routes = update(example("reload-a"), &[("audit", example("reload-b"))]).routes;
    let rt = runtime_with(&routes, limits());
    assert_eq!(version_of(&rt, "audit").await, "reload-b", "route:audit runs in module audit");
    assert_eq!(version_of(&rt, "other").await, "reload-a", "a route with no module of its own runs in main");

    // Only `audit` reloads (to the other version); main keeps its generation.
    let swapped = rt
        .apply(update(example("reload-a"), &[("audit", example("reload-a"))]), Some("audit"))
        .await
        .expect("audit reloads");
    assert_eq!(swapped.iter().map(|m| (&*m.module, m.generation)).collect::<Vec<_>>(), [("audit", 2)]);
    assert_eq!(rt.current().generation, 1, "main was not reloaded");
    assert_eq!(version_of(&rt, "audit").await, "reload-a");

    // A name the table does not have is refused, naming what it has.
    let err = rt.apply(update(example("reload-a"), &[]), Some("nope")).await.unwrap_err().to_string();
    assert!(err.contains("no route module named \"nope\"") && err.contains("configured: main"), "{err}");

    // A full reload without `audit` drops it: its events go to main again.
    let swapped = rt.apply(update(example("reload-b"), &[]), None).await.expect("full reload");
    assert_eq!(swapped.iter().map(|m| (&*m.module, m.generation)).collect::<Vec<_>>(), [(MAIN, 2)]);
    assert!(rt.module("audit").is_none());
    assert_eq!(version_of(&rt, "audit").await, "reload-b", "main (now reload-b) runs route:audit");
    // Loaded again later, the name goes on from its last generation.
    rt.apply(update(example("reload-b"), &[("audit", example("reload-a"))]), Some("audit")).await.expect("re-added");
    assert_eq!(rt.module("audit").map(|m| m.generation), Some(3));

    let stats = rt.stats();
    assert_eq!((stats.reloads.load(Ordering::Relaxed), stats.reload_failures.load(Ordering::Relaxed)), (3, 1));
}

#[tokio::test]
async fn a_bad_module_in_a_full_reload_swaps_in_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(example_path("reload-b")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let rt = runtime_with(&RouteSet::main(example("reload-a")), limits());

    let bad = update(example("reload-b"), &[("audit", RouteSource::File(truncated))]);
    let err = format!("{:#}", rt.apply(bad, None).await.unwrap_err());
    assert!(err.contains("truncated.wasm") && err.contains("failed to compile"), "{err}");
    assert_eq!(rt.current().generation, 1, "main was not swapped although it loaded");
    assert_eq!(version_of(&rt, "x").await, "reload-a");
    assert_eq!(rt.stats().reload_failures.load(Ordering::Relaxed), 1);
}

/// A guest parked in `wait-for-event` when the main module is reloaded
/// finishes on the module it started on; the next invocation runs the new one.
async fn waiting_guest_finishes_on_its_version(suspend: Suspend) {
    let rt = runtime_with(&RouteSet::main(example("reload-a")), Limits { suspend, ..limits() });
    let waiting = run_event(&rt, "held", true);
    // Our own observer of E_ROUTE_VERSION is one waiter; the parked guest the other.
    eventually("the guest parks in wait-for-event", || rt.bus().ebr_stats().waiters == 2).await;

    rt.reload(example("reload-b")).await.expect("reload-b loads");
    assert_eq!(rt.current().generation, 2);
    assert_eq!(version_of(&rt, "fresh").await, "reload-b", "new invocations run the new module");

    rt.bus().raise(Event::new("E_RELOAD_RESUME", Params::new()));
    let finished_on = tokio::time::timeout(WITHIN, waiting).await.expect("the guest resumes").expect("task");
    assert_eq!(finished_on, "reload-a", "the waiting guest finished on the version it started on ({suspend:?})");
    let replays = rt.stats().replays.load(Ordering::Relaxed);
    assert_eq!(replays, u64::from(suspend == Suspend::Replay), "resumed by replay only in replay mode");
    assert_eq!(rt.stats().traps.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_guest_waiting_in_place_across_a_reload_finishes_on_its_version() {
    waiting_guest_finishes_on_its_version(Suspend::InPlace).await;
}

#[tokio::test]
async fn a_guest_resumed_by_replay_after_a_reload_finishes_on_its_version() {
    waiting_guest_finishes_on_its_version(Suspend::Replay).await;
}

fn write_config(path: &Path, module: &Path, vars: &str) {
    let text =
        format!("[routes]\nmodule = {:?}\nwatch = false\n\n[routes.vars]\n{vars}\n", module.display().to_string());
    std::fs::write(path, text).unwrap();
}

fn reloader_for(rt: &Runtime, config: &Path) -> Reloader {
    let applied = Config::load(config).expect("config").routes.update();
    let path = config.to_path_buf();
    Reloader::new(rt.clone(), applied, Box::new(move || Ok(Config::load(&path)?.routes.update())))
}

#[tokio::test]
async fn a_reload_rereads_routes_and_refuses_a_broken_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sipbox.toml");
    write_config(&config, &example_path("reload-a"), "greeting = \"hello\"");
    let rt = runtime_with(&RouteSet::main(example("reload-a")), limits());
    let reloader = reloader_for(&rt, &config);

    write_config(&config, &example_path("reload-b"), "greeting = \"hi\"");
    reloader.reload(None, "test").await.expect("reload");
    assert_eq!(version_of(&rt, "x").await, "reload-b", "the module path was re-read");
    assert_eq!(rt.vars().get("greeting").map(String::as_str), Some("hi"), "[routes.vars] was re-read");

    std::fs::write(&config, "[routes]\nmodlue = \"typo.wasm\"\n").unwrap();
    let err = format!("{:#}", reloader.reload(None, "test").await.unwrap_err());
    assert!(err.contains("config file was refused") && err.contains("modlue"), "{err}");
    assert_eq!(rt.current().generation, 2, "the old module keeps serving");
    assert_eq!(rt.vars().get("greeting").map(String::as_str), Some("hi"), "and the old vars");
    assert_eq!(rt.stats().reload_failures.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_module_file_replaced_by_rename_is_reloaded_by_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("route.wasm");
    std::fs::copy(example_path("reload-a"), &module).unwrap();
    let config = dir.path().join("sipbox.toml");
    write_config(&config, &module, "");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("watch = false", "watch = true"))
        .unwrap();
    let rt = runtime_with(&RouteSet::main(RouteSource::File(module.clone())), limits());
    let watching = Shutdown::new();
    super::watch_modules(reloader_for(&rt, &config), &watching);

    // A deploy: the new version written beside the old, then renamed over it.
    let staged = dir.path().join(".route.wasm.new");
    std::fs::copy(example_path("reload-b"), &staged).unwrap();
    std::fs::rename(&staged, &module).unwrap();
    eventually("the replaced file is reloaded", || rt.current().generation == 2).await;
    assert_eq!(version_of(&rt, "x").await, "reload-b");

    // A broken file dropped in is refused; the module that serves stays.
    let generation = rt.current().generation;
    std::fs::write(&staged, b"\0asm\x01\x00\x00\x00").unwrap();
    std::fs::rename(&staged, &module).unwrap();
    eventually("the broken file is refused", || rt.stats().reload_failures.load(Ordering::Relaxed) >= 1).await;
    assert_eq!(rt.current().generation, generation);
    assert_eq!(version_of(&rt, "x").await, "reload-b");
    watching.stop().await;
}

#[test]
fn the_compile_cache_reuses_entries_and_recompiles_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(&dir.path().join("cache")).expect("cache dir");
    let engine = super::engine::build_engine(&limits()).expect("engine");
    let wasm = std::fs::read(example_path("reload-a")).unwrap();

    let (_, first) = cache.load_or_compile(&engine, &wasm, "reload-a").expect("compiles");
    assert_eq!(first, Compiled::Fresh);
    let (_, second) = cache.load_or_compile(&engine, &wasm, "reload-a").expect("loads");
    assert_eq!(second, Compiled::Cached);

    // A corrupt entry (one flipped byte) and a truncated one are ignored and rewritten.
    let entry = cache.entry_path(&engine, &wasm);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    assert_eq!(cache.load_or_compile(&engine, &wasm, "reload-a").unwrap().1, Compiled::Fresh);
    assert_eq!(cache.load_or_compile(&engine, &wasm, "reload-a").unwrap().1, Compiled::Cached);
    std::fs::write(&entry, &bytes[..100]).unwrap();
    assert_eq!(cache.load_or_compile(&engine, &wasm, "reload-a").unwrap().1, Compiled::Fresh);

    // Another module, or another engine setting, is another entry.
    let other = std::fs::read(example_path("reload-b")).unwrap();
    assert_ne!(cache.entry_path(&engine, &other), entry);
    let bigger = super::engine::build_engine(&Limits { memory_mb: 32, ..limits() }).expect("engine");
    assert_ne!(cache.entry_path(&bigger, &wasm), entry, "memory_mb changes the compiled code");
}

#[test]
fn a_cache_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = CompileCache::open(&open).unwrap_err().to_string();
    assert!(err.contains("writable by others"), "{err}");
}

#[tokio::test]
async fn a_runtime_started_again_loads_its_modules_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path()).expect("cache dir");
    let routes = update(RouteSource::Embedded, &[("audit", example("reload-b"))]).routes;
    let cold = Runtime::standalone_with(limits(), &routes, Some(cache.clone())).expect("cold start");
    assert!(cold.modules().iter().all(|m| m.compiled == Compiled::Fresh));
    let warm = Runtime::standalone_with(limits(), &routes, Some(cache)).expect("warm start");
    assert!(warm.modules().iter().all(|m| m.compiled == Compiled::Cached), "{:?}", warm.modules());
    assert_eq!(version_of(&warm, "audit").await, "reload-b", "a cached module runs");
}
