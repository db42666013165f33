//! Entry points for `benches/micro.rs` that isolate the steps of one route
//! invocation, which the public API only offers together (admission, Store,
//! instantiation, the export call, drop). Not a stable API: hidden from docs
//! and meant for benchmarks and profiles only.
#![doc(hidden)]

use super::Runtime;

/// Builds the Store an invocation would get (HostState with its WASI context,
/// limits and epoch deadline) and drops it, without instantiating.
#[doc(hidden)]
pub fn new_store_and_drop(rt: &Runtime) {
    let route = rt.current();
    let store = rt.new_store(route.name.clone());
    drop(store);
}

/// Builds a Store, instantiates the current route module in it and drops
/// both: an invocation's fixed cost without the export call.
#[doc(hidden)]
pub async fn instantiate_and_drop(rt: &Runtime) -> anyhow::Result<()> {
    rt.smoke_test(&rt.current()).await
}
