//! Subscriber commands: who may authenticate (`crate::auth`). OpenSIPS keeps
//! subscribers in a database table its scripts and `opensips-cli user`
//! manage; sipbox's store is its own, so these commands are sipbox's:
//! `subscriber_add`, `subscriber_remove`, `subscriber_list`. Passwords go in
//! and never come out: only HA1 hashes are stored.

use serde_json::{Value, json};

use super::{Command, Handler};
use crate::auth::{Auth, Subscriber};
use crate::mi::MiContext;
use crate::mi::jsonrpc::{self, Args, MiError, MiResult};

pub(super) const COMMANDS: &[Command] = &[
    Command {
        module: "auth",
        names: &["subscriber_add"],
        recipes: &[&["username", "password"], &["username", "password", "realm"]],
        help: "adds a subscriber (or sets a new password), stored as HA1 hashes",
        handler: Handler::Sync(subscriber_add),
    },
    Command {
        module: "auth",
        names: &["subscriber_remove"],
        recipes: &[&["username"], &["username", "realm"]],
        help: "removes a subscriber",
        handler: Handler::Sync(subscriber_remove),
    },
    Command {
        module: "auth",
        names: &["subscriber_list"],
        recipes: &[&[], &["realm"]],
        help: "lists the subscribers (names and realms, never hashes)",
        handler: Handler::Sync(subscriber_list),
    },
];

fn auth(ctx: &MiContext) -> Result<&Auth, MiError> {
    ctx.auth.as_ref().ok_or_else(|| MiError::new(500, "authentication is not available in this server"))
}

fn realm(auth: &Auth, args: &Args) -> Result<String, MiError> {
    Ok(if args.has("realm") { args.non_empty_str("realm")?.into_owned() } else { auth.config().realm.clone() })
}

/// A user name a `Digest username="..."` can carry and a SIP URI user can be:
/// no quote, backslash, '@', ':', whitespace or control characters.
pub fn check_username(name: &str) -> Result<(), String> {
    let bad = |c: char| c.is_control() || c.is_whitespace() || "\"\\@:;<>".contains(c);
    if name.is_empty() || name.len() > 64 || name.chars().any(bad) {
        return Err(format!(
            "username {name:?} must be 1..=64 characters without whitespace, quotes, backslash, '@', ':', ';', '<' or '>'"
        ));
    }
    Ok(())
}

/// `subscriber_add username password [realm]` → `"OK"`.
fn subscriber_add(ctx: &MiContext, args: &Args) -> MiResult {
    let auth = auth(ctx)?;
    let user = args.non_empty_str("username")?;
    check_username(&user).map_err(MiError::invalid_params)?;
    let password = args.non_empty_str("password")?;
    let realm = realm(auth, args)?;
    auth.store()
        .put(Subscriber::with_password(&user, &realm, &password))
        .map_err(|e| MiError::server_error(format!("storing the subscriber failed: {e:#}")))?;
    jsonrpc::ok()
}

/// `subscriber_remove username [realm]` → `"OK"`; 404 "Subscriber not found".
fn subscriber_remove(ctx: &MiContext, args: &Args) -> MiResult {
    let auth = auth(ctx)?;
    let user = args.non_empty_str("username")?;
    let realm = realm(auth, args)?;
    match auth.store().remove(&realm, &user) {
        Ok(true) => jsonrpc::ok(),
        Ok(false) => Err(MiError::new(404, "Subscriber not found")),
        Err(e) => Err(MiError::server_error(format!("removing the subscriber failed: {e:#}"))),
    }
}

/// `subscriber_list [realm]` → `{"Subscribers": [{"username", "realm"}]}`.
fn subscriber_list(ctx: &MiContext, args: &Args) -> MiResult {
    let auth = auth(ctx)?;
    let only = if args.has("realm") { Some(args.non_empty_str("realm")?.into_owned()) } else { None };
    let list: Vec<Value> = auth
        .store()
        .list()
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|r| *r == s.realm))
        .map(|s| json!({ "username": s.user, "realm": s.realm }))
        .collect();
    Ok(json!({ "Subscribers": list }))
}
