//! `get_statistics` (OpenSIPS `statistics.c`): counters of every layer as
//! `"group:name": value`, selected by name, by `group:` or `all`.
//!
//! Groups: `core` (uptime, malformed messages), `tm` (live transactions),
//! `net` (transport), `runtime` (route invocations: traps by cause, refusals
//! of the counted `[limits]`, guests parked), `routes` (reloads, the
//! generation of each route module, and `errors`: handlers that returned
//! `Err`), `usrloc` (registrations), `evi` (per-subscriber delivery
//! counters), `ebr` (waiters and notify subscriptions live now; waits woken,
//! timed out, cancelled; notifications run and dropped; refusals at
//! `ebr_max_waiters`), `auth` (authorized, challenged, failed, stale,
//! replayed, throttled requests; sources blocked; subscribers).

use serde_json::{Map, Value};

use super::{Command, Handler};
use crate::mi::MiContext;
use crate::mi::jsonrpc::{Args, MiError, MiResult};

pub(super) const COMMANDS: &[Command] = &[Command {
    module: "core",
    names: &["get_statistics"],
    recipes: &[&["statistics"]],
    help: "prints statistics: `all`, a `group:` or single names",
    handler: Handler::Sync(get_statistics),
}];

/// One statistic.
struct Stat {
    group: &'static str,
    name: String,
    value: u64,
}

impl Stat {
    fn new(group: &'static str, name: impl Into<String>, value: impl TryInto<u64>) -> Stat {
        Stat { group, name: name.into(), value: value.try_into().unwrap_or(u64::MAX) }
    }
}

/// Every statistic the context can reach, group by group.
fn collect(ctx: &MiContext) -> Vec<Stat> {
    use std::sync::atomic::Ordering::Relaxed;

    let mut out = vec![Stat::new("core", "timestamp", ctx.started_at.elapsed().as_secs())];
    if let Some(core) = &ctx.core {
        let tm = core.stats();
        out.push(Stat::new("core", "bad_msg_hdr", tm.malformed));
        out.push(Stat::new("tm", "inuse_transactions", tm.server));
        out.push(Stat::new("tm", "inuse_client_transactions", tm.client));
        out.push(Stat::new("tm", "stateless_replies", tm.stateless_responses));
        out.push(Stat::new("tm", "rejected_overload", tm.rejected_overload));
        out.push(Stat::new("tm", "branches_refused", tm.branches_refused));
    }
    if let Some(transports) = &ctx.transports {
        let net = transports.stats();
        out.push(Stat::new("net", "udp_send_drops", net.udp_send_drops));
        out.push(Stat::new("net", "malformed", net.malformed));
        out.push(Stat::new("net", "tcp_connections", net.tcp_connections));
        out.push(Stat::new("net", "tcp_refused_per_ip", net.tcp_refused_per_ip));
        out.push(Stat::new("net", "tcp_timeouts", net.tcp_timeouts));
    }
    if let Some(runtime) = &ctx.runtime {
        let rt = runtime.stats();
        out.push(Stat::new("runtime", "invocations", rt.invocations.load(Relaxed)));
        out.push(Stat::new("runtime", "instantiations", rt.instantiations.load(Relaxed)));
        out.push(Stat::new("runtime", "replays", rt.replays.load(Relaxed)));
        out.push(Stat::new("runtime", "instances_in_use", runtime.instances().0));
        out.push(Stat::new("runtime", "traps", rt.traps.load(Relaxed)));
        out.push(Stat::new("runtime", "cpu_exceeded", rt.cpu_exceeded.load(Relaxed)));
        out.push(Stat::new("runtime", "stack_overflows", rt.stack_overflows.load(Relaxed)));
        out.push(Stat::new("runtime", "memory_exceeded", rt.memory_exceeded.load(Relaxed)));
        out.push(Stat::new("runtime", "timeouts", rt.timeouts.load(Relaxed)));
        // The limits the imports count (`[limits]`, runtime/budget.rs).
        let limited = runtime.limit_stats();
        out.push(Stat::new("runtime", "raises_refused", limited.raises_refused.load(Relaxed)));
        out.push(Stat::new("runtime", "subscriptions_refused", limited.subscriptions_refused.load(Relaxed)));
        out.push(Stat::new("runtime", "waits_cut", limited.waits_cut.load(Relaxed)));
        out.push(Stat::new("runtime", "parked", limited.parked.load(Relaxed)));
        out.push(Stat::new("runtime", "parked_refused", limited.parked_refused.load(Relaxed)));
        out.push(Stat::new("runtime", "log_lines_dropped", limited.log_lines_dropped.load(Relaxed)));
        out.push(Stat::new("runtime", "http_refused", limited.http_refused.load(Relaxed)));
        out.push(Stat::new("runtime", "edits_refused", limited.edits_refused.load(Relaxed)));
        out.push(Stat::new("runtime", "rejected_busy", rt.rejected_busy.load(Relaxed)));
        out.push(Stat::new("runtime", "reloads", rt.reloads.load(Relaxed)));
        // Every reload path counts here: SIGHUP, MI and the file watch.
        out.push(Stat::new("routes", "reloads", rt.reloads.load(Relaxed)));
        out.push(Stat::new("routes", "reload_failures", rt.reload_failures.load(Relaxed)));
        // Handlers that returned `Err` (traps are `runtime:traps`).
        out.push(Stat::new("routes", "errors", rt.route_errors.load(Relaxed)));
        for module in runtime.modules() {
            let name = match &*module.module {
                crate::runtime::MAIN => "generation".to_string(),
                named => format!("generation.{named}"),
            };
            out.push(Stat::new("routes", name, module.generation));
        }
    }
    let bindings = ctx.location.dump();
    let aors = bindings.chunk_by(|a, b| a.aor == b.aor).count();
    out.push(Stat::new("usrloc", "registered_users", aors));
    out.push(Stat::new("usrloc", "location-users", aors));
    out.push(Stat::new("usrloc", "location-contacts", bindings.len()));
    out.push(Stat::new("evi", "events", ctx.bus.events().len()));
    out.extend(ctx.bus.stats().into_iter().map(|(name, value)| Stat::new("evi", name, value)));
    let ebr = ctx.bus.ebr_stats();
    out.extend([
        Stat::new("ebr", "waiters", ebr.waiters),
        Stat::new("ebr", "notify_subscriptions", ebr.notify_subscriptions),
        Stat::new("ebr", "woken", ebr.woken),
        Stat::new("ebr", "timed_out", ebr.timed_out),
        Stat::new("ebr", "cancelled", ebr.cancelled),
        Stat::new("ebr", "notified", ebr.notified),
        Stat::new("ebr", "notify_dropped", ebr.notify_dropped),
        Stat::new("ebr", "refused", ebr.refused),
    ]);
    if let Some(auth) = &ctx.auth {
        let s = auth.stats();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        out.extend([
            Stat::new("auth", "authorized", get(&s.authorized)),
            Stat::new("auth", "challenged", get(&s.challenged)),
            Stat::new("auth", "failed", get(&s.failed)),
            Stat::new("auth", "stale", get(&s.stale)),
            Stat::new("auth", "replayed", get(&s.replayed)),
            Stat::new("auth", "throttled", get(&s.throttled)),
            Stat::new("auth", "blocked_sources", get(&s.blocked_sources)),
            Stat::new("auth", "subscribers", auth.store().len()),
        ]);
    }
    out
}

/// `get_statistics`: `{"group:name": value, ...}`.
///
/// # Format
/// `get_statistics statistics` where `statistics` is an array of selectors
/// (a single string is accepted too): `all`, `group:` (every statistic of
/// the group), or a statistic's name with or without its group
/// (case-insensitive). Unknown selectors are skipped. Errors: 404
/// "Statistics Not Found" when nothing matched; -32602 for a bad array.
fn get_statistics(ctx: &MiContext, args: &Args) -> MiResult {
    let selectors = selectors(args)?;
    let stats = collect(ctx);
    let mut out = Map::new();
    for sel in &selectors {
        let picked = stats.iter().filter(|s| {
            if sel == "all" {
                return true;
            }
            if let Some(group) = sel.strip_suffix(':')
                && !group.is_empty()
                && stats.iter().any(|s| s.group == group)
            {
                return s.group == group;
            }
            s.name.eq_ignore_ascii_case(sel) || format!("{}:{}", s.group, s.name).eq_ignore_ascii_case(sel)
        });
        for s in picked {
            out.insert(format!("{}:{}", s.group, s.name), Value::from(s.value));
        }
    }
    if out.is_empty() {
        return Err(MiError::new(404, "Statistics Not Found"));
    }
    Ok(Value::Object(out))
}

fn selectors(args: &Args) -> Result<Vec<String>, MiError> {
    let bad_item = || MiError::invalid_params("Bad type for array item in parameter 'statistics'");
    match args.get("statistics") {
        Some(Value::Array(items)) if items.is_empty() => {
            Err(MiError::invalid_params("Empty array in parameter 'statistics'"))
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad_item()),
            })
            .collect(),
        Some(Value::String(_)) => Ok(vec![args.str("statistics")?.into_owned()]),
        _ => Err(MiError::invalid_params("Bad type for parameter 'statistics'")),
    }
}
