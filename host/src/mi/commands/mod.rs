//! The MI command table and dispatch. One file per command group:
//! [`events`] (the Event Interface), [`usrloc`] (registrations), [`core`]
//! (process info and `which`), [`stats`] (`get_statistics`), [`routes`]
//! (`reload_routes`), [`subscribers`] (who may authenticate).
//!
//! Names follow OpenSIPS: each command belongs to a module and is callable
//! as `module:name` (4.0+ style, e.g. `evi:subscribe`) or by any of its flat
//! names (3.x style, e.g. `event_subscribe`). Each command lists its
//! parameter recipes; [`Args::bind`] picks the one a request fits.

mod core;
mod events;
mod routes;
mod stats;
pub(crate) mod subscribers;
mod usrloc;

use std::future::Future;
use std::pin::Pin;

use super::MiContext;
use super::jsonrpc::{Args, MiError, MiResult, ParamsIn};

/// The future of an async command.
pub(crate) type CmdFuture<'a> = Pin<Box<dyn Future<Output = MiResult> + Send + 'a>>;

/// How a command runs.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// Runs to completion without waiting (most commands).
    Sync(fn(&MiContext, &Args) -> MiResult),
    /// Awaits something (a route reload compiles a module).
    Async(for<'a> fn(&'a MiContext, Args) -> CmdFuture<'a>),
}

/// One MI command.
pub(crate) struct Command {
    /// OpenSIPS module the command belongs to (`core`, `evi`, `usrloc`, ...).
    pub(crate) module: &'static str,
    /// Names callable without the module prefix; the first is the canonical
    /// one after `module:`, the others are aliases (3.x names).
    pub(crate) names: &'static [&'static str],
    /// Accepted parameter lists, by name (positional params follow this order).
    pub(crate) recipes: &'static [&'static [&'static str]],
    /// One line for `which`-style listings.
    pub(crate) help: &'static str,
    pub(crate) handler: Handler,
}

impl Command {
    /// `module:name`.
    pub(crate) fn full_name(&self) -> String {
        format!("{}:{}", self.module, self.names.first().copied().unwrap_or(""))
    }

    fn answers_to(&self, method: &str) -> bool {
        if self.names.contains(&method) {
            return true;
        }
        match method.split_once(':') {
            Some((module, name)) => module == self.module && self.names.contains(&name),
            None => false,
        }
    }
}

const GROUPS: &[&[Command]] =
    &[events::COMMANDS, usrloc::COMMANDS, core::COMMANDS, stats::COMMANDS, routes::COMMANDS, subscribers::COMMANDS];

/// Every command, in listing order.
pub(crate) fn all() -> impl Iterator<Item = &'static Command> {
    GROUPS.iter().flat_map(|group| group.iter())
}

/// The command `method` names, by full or flat name (case-sensitive, as OpenSIPS).
pub(crate) fn lookup(method: &str) -> Option<&'static Command> {
    all().find(|c| c.answers_to(method))
}

/// Runs `method` with `params`.
pub(crate) async fn dispatch(ctx: &MiContext, method: &str, params: ParamsIn) -> MiResult {
    let cmd = lookup(method).ok_or_else(|| MiError::method_not_found(method))?;
    let args = Args::bind(cmd.recipes, params)?;
    match cmd.handler {
        Handler::Sync(run) => run(ctx, &args),
        Handler::Async(run) => run(ctx, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_resolve() {
        let mut seen = std::collections::HashSet::new();
        for cmd in all() {
            assert!(!cmd.names.is_empty() && !cmd.recipes.is_empty(), "{}", cmd.full_name());
            assert!(seen.insert(cmd.full_name()), "duplicate {}", cmd.full_name());
            for name in cmd.names {
                assert!(seen.insert((*name).to_owned()), "duplicate name {name}");
                assert!(std::ptr::eq(lookup(name).expect("resolves"), cmd), "{name} resolves to its command");
                let full = format!("{}:{name}", cmd.module);
                assert!(std::ptr::eq(lookup(&full).expect("module:name resolves"), cmd), "{full}");
            }
        }
        for alias in [
            "event_subscribe",
            "evi:subscribe",
            "subscribe",
            "events_list",
            "evi:list",
            "subscribers_list",
            "evi:subscribers",
            "raise_event",
            "evi:raise",
            "evi_flat_rotate",
            "event_flatstore:rotate",
            "ul_dump",
            "ul_show_contact",
            "ps",
            "uptime",
            "version",
            "which",
            "get_statistics",
            "reload_routes",
            "subscriber_add",
            "auth:subscriber_list",
        ] {
            assert!(lookup(alias).is_some(), "{alias}");
        }
        assert!(lookup("evi:ps").is_none(), "a module prefix must match the command's module");
        assert!(lookup("EVENTS_LIST").is_none(), "names are case-sensitive");
    }
}
