//! `reload_routes`: reloads the route module from the configured source
//! (make-before-break: on failure the old module keeps serving).

use super::{CmdFuture, Command, Handler};
use crate::mi::MiContext;
use crate::mi::jsonrpc::{self, Args, MiError};

pub(super) const COMMANDS: &[Command] = &[Command {
    module: "core",
    names: &["reload_routes"],
    recipes: &[&[]],
    help: "reloads the route module from the configured source",
    handler: Handler::Async(reload_routes),
}];

/// `reload_routes`: `"OK"` once the new module serves new requests.
///
/// # Format
/// `reload_routes` (no params). Errors: 500 "Failed to reload" with the
/// reason the module was refused in `data` (unreadable file, not a
/// component, does not fit the `sipbox:route` world, traps at start-up).
fn reload_routes(ctx: &MiContext, _args: Args) -> CmdFuture<'_> {
    Box::pin(async move {
        let Some(runtime) = &ctx.runtime else {
            return Err(MiError::new(500, "Failed to reload").with_data("no route runtime in this process"));
        };
        match runtime.reload(ctx.route_source.clone()).await {
            Ok(loaded) => {
                tracing::info!(module = %loaded.name, generation = loaded.generation, "routes reloaded over MI");
                jsonrpc::ok()
            }
            Err(err) => {
                let reason = format!("{err:#}");
                tracing::error!("MI reload_routes refused, the old module keeps serving: {reason}");
                Err(MiError::new(500, "Failed to reload").with_data(reason))
            }
        }
    })
}
