//! Module loading and hot reload, without sockets: a bad module is refused
//! with the reason and the serving one stays; a good one is swapped in.

use std::path::PathBuf;

use super::modules::example_route_path;
use super::{Limits, RouteSource, Runtime};

fn runtime() -> Runtime {
    Runtime::standalone(Limits { max_instances: 8, ..Limits::default() }, RouteSource::Embedded)
        .expect("embedded route loads")
}

fn example(name: &str) -> RouteSource {
    RouteSource::File(PathBuf::from(example_route_path(name).expect("example built by build.rs")))
}

#[tokio::test]
async fn embedded_route_serves_first() {
    let rt = runtime();
    assert_eq!(rt.current().generation, 1);
    assert!(rt.current().name.contains("default-route"));
}

#[tokio::test]
async fn reload_swaps_in_a_good_module() {
    let rt = runtime();
    let loaded = rt.reload(example("trap-route")).await.expect("trap-route is a valid module");
    assert!(loaded.generation > 1);
    assert!(rt.current().name.contains("trap-route"), "{}", rt.current().name);
    assert_eq!(rt.stats().reloads.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn bad_modules_are_refused_with_the_reason_and_the_old_one_keeps_serving() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.wasm");
    let err = format!("{:#}", rt.reload(RouteSource::File(missing.clone())).await.unwrap_err());
    assert!(err.contains("cannot read route module") && err.contains("missing.wasm"), "{err}");

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm").unwrap();
    let err = format!("{:#}", rt.reload(RouteSource::File(garbage)).await.unwrap_err());
    assert!(err.contains("not a WebAssembly binary"), "{err}");

    // A valid core module (not a component): `(module)`.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\x00\x00\x00").unwrap();
    let err = format!("{:#}", rt.reload(RouteSource::File(core)).await.unwrap_err());
    assert!(err.contains("core WebAssembly module"), "{err}");

    // A component that exports nothing: the smallest component binary.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
    let err = format!("{:#}", rt.reload(RouteSource::File(empty)).await.unwrap_err());
    assert!(err.contains("lacks the sipbox:route exports") || err.contains("does not fit"), "{err}");

    assert_eq!(rt.current().generation, 1, "the embedded route still serves");
    assert!(rt.current().name.contains("default-route"));
}

#[test]
fn a_pool_larger_than_the_mapping_limit_is_refused_with_the_sysctl_named() {
    let limits = Limits { max_instances: 200_000, ..Limits::default() };
    let err = limits.validate().expect_err("200k slots need ~1.2M mappings").to_string();
    assert!(err.contains("vm.max_map_count"), "{err}");
    assert!(err.contains("lower max_instances to"), "{err}");
    Limits::default().validate().expect("the defaults fit the default mapping limit");
}

/// Runs `count` `on-event` invocations of the current module one after another.
async fn run_events(rt: &Runtime, count: usize) {
    use crate::events::{Event, Params};
    for _ in 0..count {
        let event = Event::new("E_TEST", Params::new().with("n", 1i64));
        rt.run_event_route("test".into(), event).await;
    }
}

fn counter(rt: &Runtime, which: fn(&super::RuntimeStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    which(rt.stats()).load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn a_fresh_instance_serves_every_invocation_by_default() {
    let rt = runtime();
    rt.reload(example("event-logger")).await.expect("event-logger loads");
    run_events(&rt, 4).await;
    assert_eq!(counter(&rt, |s| &s.invocations), 4);
    assert_eq!(counter(&rt, |s| &s.instantiations), 4);
    assert_eq!(rt.current().warm.idle(), 0, "nothing kept warm with instance_reuse = 1");
    assert_eq!(rt.instances().0, 0, "every pool slot released");
}

#[tokio::test]
async fn reused_instances_serve_instance_reuse_invocations_then_are_replaced() {
    let limits = Limits { max_instances: 8, instance_reuse: 3, ..Limits::default() };
    let rt = Runtime::standalone(limits, RouteSource::Embedded).expect("embedded route loads");
    rt.reload(example("event-logger")).await.expect("event-logger loads");

    run_events(&rt, 7).await;
    assert_eq!(counter(&rt, |s| &s.invocations), 7);
    // Uses 1-3 on the first instance, 4-6 on the second, 7 on a third.
    assert_eq!(counter(&rt, |s| &s.instantiations), 3);
    let old = rt.current();
    assert_eq!(old.warm.idle(), 1, "the third instance is kept warm");
    assert_eq!(rt.instances().0, 1, "a warm instance holds its pool slot");

    // A reload drops the old module's warm instances and frees their slots.
    rt.reload(example("event-logger")).await.expect("event-logger reloads");
    assert_eq!(old.warm.idle(), 0);
    assert_eq!(rt.instances().0, 0);
    run_events(&rt, 1).await;
    assert_eq!(counter(&rt, |s| &s.instantiations), 4, "the new module got its own instance");
}

#[test]
fn instance_reuse_of_zero_is_refused() {
    let err = Limits { instance_reuse: 0, ..Limits::default() }.validate().unwrap_err().to_string();
    assert!(err.contains("limits.instance_reuse"), "{err}");
}

#[test]
fn replay_with_instance_reuse_is_refused() {
    let limits = Limits { suspend: super::Suspend::Replay, instance_reuse: 2, ..Limits::default() };
    let err = limits.validate().unwrap_err().to_string();
    assert!(err.contains("limits.suspend") && err.contains("instance_reuse = 1"), "{err}");
    Limits { suspend: super::Suspend::Replay, ..Limits::default() }.validate().expect("replay with fresh instances");
}

#[test]
fn suspend_is_read_by_name() {
    let limits: Limits = toml::from_str("suspend = \"replay\"").expect("replay");
    assert_eq!(limits.suspend, super::Suspend::Replay);
    let err = toml::from_str::<Limits>("suspend = \"later\"").unwrap_err().to_string();
    assert!(err.contains("in-place") && err.contains("replay"), "{err}");
}

#[tokio::test]
async fn a_handler_error_is_counted_apart_from_traps_and_keeps_its_instance() {
    use crate::events::{Event, Params};
    let limits = Limits { max_instances: 8, instance_reuse: 3, ..Limits::default() };
    let rt = Runtime::standalone(limits, RouteSource::Embedded).expect("embedded route loads");
    rt.reload(example("trap-route")).await.expect("trap-route loads");
    // trap-route's event route `error` returns Err; any other returns Ok.
    rt.run_event_route("error".into(), Event::new("E_TEST", Params::new())).await;
    rt.run_event_route("quiet".into(), Event::new("E_TEST", Params::new())).await;
    assert_eq!(counter(&rt, |s| &s.route_errors), 1);
    assert_eq!(counter(&rt, |s| &s.traps), 0, "an error is no trap");
    assert_eq!(counter(&rt, |s| &s.instantiations), 1, "the instance that returned Err served again");
}
