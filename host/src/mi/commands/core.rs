//! Core commands: `ps`, `uptime`, `version`, `which`, `help` (OpenSIPS
//! `mi/mi_core.c` and `mi/mi.c` shapes, so opensips-cli's listings and
//! completion work).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Command, Handler};
use crate::location::clock::CivilTime;
use crate::mi::MiContext;
use crate::mi::jsonrpc::{Args, MiError, MiResult};

pub(super) const COMMANDS: &[Command] = &[
    Command {
        module: "core",
        names: &["ps"],
        recipes: &[&[]],
        help: "lists the server's processing units (one process; its listeners and workers)",
        handler: Handler::Sync(ps),
    },
    Command {
        module: "core",
        names: &["uptime"],
        recipes: &[&[]],
        help: "prints the current time, the start time and the uptime",
        handler: Handler::Sync(uptime),
    },
    Command {
        module: "core",
        names: &["version"],
        recipes: &[&[]],
        help: "prints the server name and version",
        handler: Handler::Sync(version),
    },
    Command {
        module: "core",
        names: &["which"],
        recipes: &[&[], &["command"]],
        help: "lists the MI commands, or the parameter lists of one command",
        handler: Handler::Sync(which),
    },
    Command {
        module: "core",
        names: &["help"],
        recipes: &[&[], &["mi_cmd"]],
        help: "describes an MI command",
        handler: Handler::Sync(help),
    },
];

/// `ps`: `{"Processes":[{"ID","PID","Type"}]}`.
///
/// # Format
/// `ps` (no params). sipbox is one process: the entries are its main task,
/// one per SIP listener and one per async worker thread, all with the same PID.
fn ps(ctx: &MiContext, _args: &Args) -> MiResult {
    let pid = std::process::id();
    let mut types = vec!["main".to_owned()];
    if let Some(transports) = &ctx.transports {
        types.extend(transports.listeners().iter().map(|l| format!("SIP receiver {l}")));
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let workers = handle.metrics().num_workers();
        types.extend((0..workers).map(|i| format!("worker {i}")));
    }
    let procs: Vec<Value> =
        types.into_iter().enumerate().map(|(id, ty)| json!({"ID": id, "PID": pid, "Type": ty})).collect();
    Ok(json!({ "Processes": procs }))
}

/// `uptime`: `{"Now": ctime, "Up since": ctime, "Up time": "N [sec]"}`.
///
/// # Format
/// `uptime` (no params). Times are `ctime(3)` strings in UTC.
fn uptime(ctx: &MiContext, _args: &Args) -> MiResult {
    Ok(json!({
        "Now": ctime(SystemTime::now()),
        "Up since": ctime(ctx.started),
        "Up time": format!("{} [sec]", ctx.started_at.elapsed().as_secs()),
    }))
}

/// `version`: `{"Server": "sipbox (VERSION (ARCH/OS))"}`, like OpenSIPS's
/// `Server` header value.
///
/// # Format
/// `version` (no params).
fn version(_ctx: &MiContext, _args: &Args) -> MiResult {
    Ok(json!({ "Server": server_string() }))
}

/// The product string (`sipbox (0.1.0 (x86_64/linux))`).
pub(crate) fn server_string() -> String {
    format!("sipbox ({} ({}/{}))", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH, std::env::consts::OS)
}

/// `which`: every command name; with `command`, that command's parameter
/// lists (an array of arrays of names), or with `module:` the module's commands.
///
/// # Format
/// `which [command]`. Errors: 404 "unknown MI command".
fn which(_ctx: &MiContext, args: &Args) -> MiResult {
    if !args.has("command") {
        let mut names = Vec::new();
        for cmd in super::all() {
            names.extend(cmd.names.iter().map(|n| Value::String((*n).to_owned())));
            names.push(Value::String(cmd.full_name()));
        }
        return Ok(Value::Array(names));
    }
    let name = args.str("command")?;
    if let Some(module) = name.strip_suffix(':') {
        let names: Vec<Value> =
            super::all().filter(|c| c.module == module).map(|c| Value::String(c.full_name())).collect();
        if names.is_empty() {
            return Err(MiError::new(404, "unknown MI command"));
        }
        return Ok(Value::Array(names));
    }
    let cmd = super::lookup(&name).ok_or_else(|| MiError::new(404, "unknown MI command"))?;
    Ok(Value::Array(cmd.recipes.iter().map(|r| json!(r)).collect()))
}

/// `help`: `{"Help": text, "Exported by": module}` for `mi_cmd`, or the
/// usage line without params.
///
/// # Format
/// `help [mi_cmd]`. Errors: 404 "unknown MI command".
fn help(_ctx: &MiContext, args: &Args) -> MiResult {
    if !args.has("mi_cmd") {
        return Ok(Value::String("Usage: help mi_cmd - returns information about 'mi_cmd'".into()));
    }
    let name = args.str("mi_cmd")?;
    let cmd = super::lookup(&name).ok_or_else(|| MiError::new(404, "unknown MI command"))?;
    Ok(json!({ "Help": cmd.help, "Exported by": cmd.module }))
}

/// `ctime(3)` without the newline, in UTC: `Thu Aug 20 14:03:07 2026`.
pub(crate) fn ctime(t: SystemTime) -> String {
    let d = CivilTime::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!("{} {} {:2} {:02}:{:02}:{:02} {}", d.weekday, d.month, d.day, d.hour, d.minute, d.second, d.year)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ctime_matches_known_dates() {
        let at = |s: u64| ctime(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(at(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(at(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(at(4_107_542_399), "Sun Feb 28 23:59:59 2100");
    }

    #[test]
    fn server_string_names_the_version() {
        assert!(server_string().starts_with(&format!("sipbox ({} (", env!("CARGO_PKG_VERSION"))));
    }
}
