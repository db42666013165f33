//! `sipbox user add|remove|list`: the subscriber database, offline. A running
//! server holds its database open (redb locks the file), so while one runs
//! its MI is the way in (`sipbox mi subscriber_add NAME PASS`), as the error
//! says.

use std::path::Path;

use super::{AuthConfig, RedbSubscribers, Subscriber, SubscriberStore};

/// One `sipbox user` action.
pub enum UserAction {
    Add { name: String, password: String, realm: Option<String> },
    Remove { name: String, realm: Option<String> },
    List,
}

/// Runs `action` on `[auth] db_path` of `cfg`; returns what to print.
///
/// # Errors
/// No database configured, one that cannot be opened (a running server has
/// it), a bad user name, or a failed write.
pub fn run(cfg: &AuthConfig, action: UserAction) -> anyhow::Result<String> {
    let Some(path) = cfg.db_path.as_deref() else {
        anyhow::bail!("[auth] db_path is \"\" (subscribers in memory): add them with `sipbox mi subscriber_add`");
    };
    let store = open(path)?;
    let realm = |given: Option<String>| given.unwrap_or_else(|| cfg.realm.clone());
    match action {
        UserAction::Add { name, password, realm: given } => {
            crate::mi::check_username(&name).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            let realm = realm(given);
            let new = store.put(Subscriber::with_password(&name, &realm, &password))?;
            let verb = if new { "added" } else { "set a new password for" };
            Ok(format!("{verb} {name} (realm {realm}) in {}", path.display()))
        }
        UserAction::Remove { name, realm: given } => {
            let realm = realm(given);
            anyhow::ensure!(store.remove(&realm, &name)?, "no subscriber {name} in realm {realm}");
            Ok(format!("removed {name} (realm {realm}) from {}", path.display()))
        }
        UserAction::List => {
            Ok(store.list().iter().map(|s| format!("{}\t{}", s.user, s.realm)).collect::<Vec<_>>().join("\n"))
        }
    }
}

fn open(path: &Path) -> anyhow::Result<RedbSubscribers> {
    RedbSubscribers::open(path).map_err(|err| {
        err.context(format!(
            "cannot use {} (if a sipbox server has it open, go through its MI: \
             `sipbox mi subscriber_add NAME PASSWORD`)",
            path.display()
        ))
    })
}
