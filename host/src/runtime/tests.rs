//! Module loading and hot reload, without sockets: a bad module is refused
//! with the reason and the serving one stays; a good one is swapped in.

use std::path::PathBuf;

use super::modules::example_route_path;
use super::{Limits, RouteSource, Runtime};
use crate::location::{Location, LocationConfig};

fn runtime() -> Runtime {
    let location = Location::open(&LocationConfig { db_path: None, ..LocationConfig::default() })
        .expect("memory location store");
    Runtime::new(Limits { max_instances: 8, ..Limits::default() }, location, RouteSource::Embedded)
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
