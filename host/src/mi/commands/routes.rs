//! `reload_routes`: reloads the route modules, all of them or one by name,
//! re-reading `[routes]` from the config file (make-before-break: on failure
//! the old modules keep serving).

use serde_json::{Map, Value};

use super::{CmdFuture, Command, Handler};
use crate::mi::MiContext;
use crate::mi::jsonrpc::{Args, MiError};

pub(super) const COMMANDS: &[Command] = &[Command {
    module: "core",
    names: &["reload_routes"],
    recipes: &[&[], &["name"]],
    help: "reloads the route modules (or the one `name`), re-reading [routes]",
    handler: Handler::Async(reload_routes),
}];

/// `reload_routes`: `{"NAME": generation, ...}` for the modules swapped in,
/// once they serve.
///
/// # Format
/// `reload_routes` reloads every module (`main` and those of
/// `[routes.modules]`); `reload_routes name` reloads one. Errors: 500
/// "Failed to reload" with the reason in `data` (the config file is
/// invalid, no module has that name, the file is unreadable, not a
/// component, does not fit the `sipbox:route` world, traps at start-up).
fn reload_routes(ctx: &MiContext, args: Args) -> CmdFuture<'_> {
    Box::pin(async move {
        let name = if args.has("name") { Some(args.non_empty_str("name")?.into_owned()) } else { None };
        let refused = |reason: String| MiError::new(500, "Failed to reload").with_data(reason);
        let loaded = match (&ctx.reloader, &ctx.runtime) {
            (Some(reloader), _) => reloader.reload(name.as_deref(), "MI").await,
            (None, Some(runtime)) => match name.as_deref() {
                None | Some(crate::runtime::MAIN) => runtime.reload(ctx.route_source.clone()).await.map(|m| vec![m]),
                Some(other) => Err(anyhow::anyhow!("no route module named {other:?} (configured: main)")),
            },
            (None, None) => return Err(refused("no route runtime in this process".into())),
        };
        match loaded {
            Ok(loaded) => {
                let generations: Map<String, Value> =
                    loaded.iter().map(|m| (m.module.to_string(), Value::from(m.generation))).collect();
                Ok(Value::Object(generations))
            }
            Err(err) => Err(refused(format!("{err:#}"))),
        }
    })
}
