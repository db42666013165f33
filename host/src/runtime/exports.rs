//! A route instance's exports, looked up when called rather than all at
//! instantiation.
//!
//! `bindgen!`'s `RoutePre::instantiate_async` looks up and type-checks all
//! five `route` exports for every new instance, although an invocation calls
//! one. [`RouteModulePre::new`] runs that check once, when the module is
//! loaded (a module whose exports do not fit the world is refused), so an
//! instance starts as a bare component instance and
//! only the export an invocation calls is looked up, by an index resolved at
//! load. Measured (`route/instantiate_drop`, criterion): 14.9 -> 13.4 µs per
//! instance, about a tenth of an instantiation.
//!
//! Every export returns `result<_, string>`: the outer `Result` of a call
//! here is the host's (a trap, an interrupt), the inner [`GuestResult`] the
//! route's own (`Err` with its reason when the handler could not go on).

use wasmtime::component::{ComponentExportIndex, Instance, InstancePre, Resource};
use wasmtime::{AsContextMut, Result};

use super::bindings::RoutePre;
use super::bindings::types::{Event, Tid};
use super::host::message::{ReplyHandle, RequestHandle};
use super::state::HostState;

/// What a route's handler returned: `Err` with the route's reason when it
/// failed (the runtime logs and counts it, and answers an unhandled request
/// 500).
pub(crate) type GuestResult = std::result::Result<(), String>;

/// A route module linked against the host and checked against the `route`
/// world, ready to instantiate.
pub(crate) struct RouteModulePre {
    pre: InstancePre<HostState>,
    indices: ExportIndices,
}

/// Where each `route` export sits in the component.
#[derive(Clone, Copy)]
struct ExportIndices {
    on_request: ComponentExportIndex,
    on_reply: ComponentExportIndex,
    on_failure: ComponentExportIndex,
    on_event: ComponentExportIndex,
    on_notify: ComponentExportIndex,
}

impl RouteModulePre {
    /// Checks that `pre`'s component exports the five `route` functions with
    /// their WIT types (`RoutePre::new`, once per load) and records where they are.
    pub(crate) fn new(pre: InstancePre<HostState>) -> anyhow::Result<RouteModulePre> {
        RoutePre::new(pre.clone())?;
        let component = pre.component();
        let index = |name: &str| {
            component.get_export_index(None, name).ok_or_else(|| anyhow::anyhow!("no export named `{name}`"))
        };
        let indices = ExportIndices {
            on_request: index("on-request")?,
            on_reply: index("on-reply")?,
            on_failure: index("on-failure")?,
            on_event: index("on-event")?,
            on_notify: index("on-notify")?,
        };
        Ok(RouteModulePre { pre, indices })
    }

    /// Instantiates the module in `store`: no export is looked up yet.
    pub(crate) async fn instantiate(&self, store: impl AsContextMut<Data = HostState>) -> Result<RouteExports> {
        let instance = self.pre.instantiate_async(store).await?;
        Ok(RouteExports { instance, indices: self.indices })
    }
}

/// The two exports that get a reply: a branch's response, or a transaction's failure.
#[derive(Clone, Copy)]
pub(crate) enum ReplyExport {
    OnReply,
    OnFailure,
}

/// An instantiated route module. Each call looks up its one export and
/// checks that export's type (cheap for these signatures), and runs it;
/// `call_async` also runs the export's post-return.
pub(crate) struct RouteExports {
    instance: Instance,
    indices: ExportIndices,
}

impl RouteExports {
    pub(crate) async fn call_on_request(
        &self,
        mut store: impl AsContextMut<Data = HostState>,
        request: Resource<RequestHandle>,
    ) -> Result<GuestResult> {
        let f = self
            .instance
            .get_typed_func::<(Resource<RequestHandle>,), (GuestResult,)>(&mut store, self.indices.on_request)?;
        Ok(f.call_async(&mut store, (request,)).await?.0)
    }

    /// `on-reply` or `on-failure`, which share a signature: (hook, request, reply).
    pub(crate) async fn call_with_reply(
        &self,
        mut store: impl AsContextMut<Data = HostState>,
        export: ReplyExport,
        hook: &str,
        request: Resource<RequestHandle>,
        reply: Resource<ReplyHandle>,
    ) -> Result<GuestResult> {
        let index = match export {
            ReplyExport::OnReply => self.indices.on_reply,
            ReplyExport::OnFailure => self.indices.on_failure,
        };
        let f =
            self.instance.get_typed_func::<(&str, Resource<RequestHandle>, Resource<ReplyHandle>), (GuestResult,)>(
                &mut store, index,
            )?;
        Ok(f.call_async(&mut store, (hook, request, reply)).await?.0)
    }

    pub(crate) async fn call_on_event(
        &self,
        mut store: impl AsContextMut<Data = HostState>,
        route: &str,
        event: &Event,
    ) -> Result<GuestResult> {
        let f = self.instance.get_typed_func::<(&str, &Event), (GuestResult,)>(&mut store, self.indices.on_event)?;
        Ok(f.call_async(&mut store, (route, event)).await?.0)
    }

    pub(crate) async fn call_on_notify(
        &self,
        mut store: impl AsContextMut<Data = HostState>,
        route: &str,
        event: &Event,
        tid: Tid,
    ) -> Result<GuestResult> {
        let f =
            self.instance.get_typed_func::<(&str, &Event, Tid), (GuestResult,)>(&mut store, self.indices.on_notify)?;
        Ok(f.call_async(&mut store, (route, event, tid)).await?.0)
    }
}
