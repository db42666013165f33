//! Registration commands in OpenSIPS usrloc shapes (`modules/usrloc/ul_mi.c`):
//! `ul_dump`, `ul_show_contact`, `ul_rm`, `ul_rm_contact`. sipbox has one
//! location table; it answers to OpenSIPS's default name, `location`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{Command, Handler};
use crate::location::Binding;
use crate::mi::MiContext;
use crate::mi::jsonrpc::{self, Args, MiError, MiResult};

/// The one table's name, as OpenSIPS's default `location` table.
pub(crate) const TABLE: &str = "location";

pub(super) const COMMANDS: &[Command] = &[
    Command {
        module: "usrloc",
        names: &["ul_dump"],
        recipes: &[&[], &["brief"]],
        help: "dumps every registered AOR with its contacts",
        handler: Handler::Sync(ul_dump),
    },
    Command {
        module: "usrloc",
        names: &["ul_show_contact"],
        recipes: &[&["aor"], &["table_name", "aor"]],
        help: "shows the contacts of one AOR",
        handler: Handler::Sync(ul_show_contact),
    },
    Command {
        module: "usrloc",
        names: &["ul_rm"],
        recipes: &[&["aor"], &["table_name", "aor"]],
        help: "removes an AOR with all its contacts",
        handler: Handler::Sync(ul_rm),
    },
    Command {
        module: "usrloc",
        names: &["ul_rm_contact"],
        recipes: &[&["aor", "contact"], &["table_name", "aor", "contact"]],
        help: "removes one contact of an AOR",
        handler: Handler::Sync(ul_rm_contact),
    },
];

/// `ul_dump`: `{"Domains":[{"name":"location","AORs":[{"AOR", "Contacts":[..]}]}]}`.
///
/// # Format
/// `ul_dump [brief]`. With a non-zero `brief` only the AOR names are listed.
/// A contact is `{"Contact", "Expires" (seconds left), "Q" ("" when the UA
/// gave none), "Callid", "Cseq", "User-agent"?, "Received"?, "Flags",
/// "Cflags", "Last-Modified" (unix seconds)}`.
fn ul_dump(ctx: &MiContext, args: &Args) -> MiResult {
    let brief = args.has("brief") && args.int("brief")? != 0;
    let now = unix_now();
    let mut aors: Vec<Value> = Vec::new();
    let bindings = ctx.location.dump();
    // dump() lists AORs in name order, so one AOR's bindings are adjacent.
    for group in bindings.chunk_by(|a, b| a.aor == b.aor) {
        let Some(first) = group.first() else { continue };
        aors.push(aor_json(&first.aor, group, now, brief));
    }
    Ok(json!({ "Domains": [ { "name": TABLE, "AORs": aors } ] }))
}

/// `ul_show_contact`: `{"AOR", "Contacts":[..]}` (contact shape as in `ul_dump`).
///
/// # Format
/// `ul_show_contact [table_name] aor`; `aor` is `user`, `user@domain` or a
/// SIP URI. Errors: 404 "Table not found", 404 "AOR not found".
fn ul_show_contact(ctx: &MiContext, args: &Args) -> MiResult {
    check_table(args)?;
    let aor = args.non_empty_str("aor")?;
    let bindings = ctx.location.lookup(&aor);
    let Some(first) = bindings.first() else { return Err(MiError::new(404, "AOR not found")) };
    Ok(aor_json(&first.aor, &bindings, unix_now(), false))
}

/// `ul_rm`: removes every contact of an AOR.
///
/// # Format
/// `ul_rm [table_name] aor`. Errors: 404 "Table not found", 404 "AOR not found".
fn ul_rm(ctx: &MiContext, args: &Args) -> MiResult {
    check_table(args)?;
    let aor = args.non_empty_str("aor")?;
    if ctx.location.unregister(&aor, None) == 0 {
        return Err(MiError::new(404, "AOR not found"));
    }
    jsonrpc::ok()
}

/// `ul_rm_contact`: removes one contact (URI comparison as for REGISTER).
///
/// # Format
/// `ul_rm_contact [table_name] aor contact`. Errors: 404 "Table not
/// found", 404 "AOR not found", 404 "Contact not found".
fn ul_rm_contact(ctx: &MiContext, args: &Args) -> MiResult {
    check_table(args)?;
    let aor = args.non_empty_str("aor")?;
    let contact = args.non_empty_str("contact")?;
    if ctx.location.lookup(&aor).is_empty() {
        return Err(MiError::new(404, "AOR not found"));
    }
    if ctx.location.unregister(&aor, Some(&contact)) == 0 {
        return Err(MiError::new(404, "Contact not found"));
    }
    jsonrpc::ok()
}

fn check_table(args: &Args) -> Result<(), MiError> {
    if args.has("table_name") && args.str("table_name")? != TABLE {
        return Err(MiError::new(404, "Table not found"));
    }
    Ok(())
}

fn aor_json(aor: &str, bindings: &[Binding], now: u64, brief: bool) -> Value {
    if brief {
        return json!({ "AOR": aor });
    }
    let contacts: Vec<Value> = bindings.iter().map(|b| contact_json(b, now)).collect();
    json!({ "AOR": aor, "Contacts": contacts })
}

fn contact_json(b: &Binding, now: u64) -> Value {
    let mut c = Map::new();
    c.insert("Contact".into(), b.contact.clone().into());
    let expires = match b.expires_at.checked_sub(now) {
        Some(left) if left > 0 => Value::from(left),
        _ => Value::from("expired"),
    };
    c.insert("Expires".into(), expires);
    c.insert("Q".into(), q2str(b.q).into());
    c.insert("Callid".into(), b.call_id.clone().into());
    c.insert("Cseq".into(), b.cseq.into());
    if let Some(ua) = &b.user_agent {
        c.insert("User-agent".into(), ua.clone().into());
    }
    if let Some(received) = &b.received {
        c.insert("Received".into(), received.to_string().into());
    }
    c.insert("Flags".into(), 0.into());
    c.insert("Cflags".into(), "".into());
    c.insert("Last-Modified".into(), b.last_modified.into());
    Value::Object(c)
}

/// A q-value as OpenSIPS's `q2str` prints it: "" when unspecified, "1.0",
/// "0", or up to three decimals without trailing zeros ("0.5").
pub(crate) fn q2str(q: Option<f32>) -> String {
    match q {
        None => String::new(),
        Some(q) if q >= 1.0 => "1.0".into(),
        Some(q) if q <= 0.0 || q.is_nan() => "0".into(),
        Some(q) => {
            let s = format!("{q:.3}");
            let s = s.trim_end_matches('0');
            if s.ends_with('.') { format!("{s}0") } else { s.to_owned() }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_print_like_opensips() {
        assert_eq!(q2str(None), "");
        assert_eq!(q2str(Some(1.0)), "1.0");
        assert_eq!(q2str(Some(0.0)), "0");
        assert_eq!(q2str(Some(0.5)), "0.5");
        assert_eq!(q2str(Some(0.125)), "0.125");
        assert_eq!(q2str(Some(0.1)), "0.1");
    }
}
