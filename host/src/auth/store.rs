//! The subscriber store: who may authenticate, as HA1 hashes per realm and
//! algorithm (never a password). [`SubscriberStore`] is the seam a shared
//! store (Redis, for several nodes) implements; the embedded one is
//! [`RedbSubscribers`]: an in-memory index read on the SIP path (no I/O per
//! REGISTER) written through to a redb file on every change, which commits
//! before the change is acknowledged (changes are rare operator actions).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use anyhow::Context as _;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::digest::Algorithm;

const SUBSCRIBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("subscribers");

/// One subscriber of one realm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub user: String,
    pub realm: String,
    /// `H(user:realm:password)` in lowercase hex, by algorithm token.
    pub ha1: BTreeMap<String, String>,
}

impl Subscriber {
    /// The hashes of `password` for every algorithm, so the operator can
    /// change `[auth] algorithms` later without new passwords.
    pub fn with_password(user: &str, realm: &str, password: &str) -> Subscriber {
        let ha1 = Algorithm::ALL.iter().map(|a| (a.token().to_owned(), a.ha1(user, realm, password))).collect();
        Subscriber { user: user.to_owned(), realm: realm.to_owned(), ha1 }
    }

    pub fn ha1(&self, algorithm: Algorithm) -> Option<&str> {
        self.ha1.get(algorithm.token()).map(String::as_str)
    }
}

/// Where subscribers live. Reads are on the SIP path and must not block;
/// writes come from the operator (MI, CLI).
pub trait SubscriberStore: Send + Sync {
    fn get(&self, realm: &str, user: &str) -> Option<Subscriber>;
    /// Adds or replaces; true when the subscriber is new. Durable when it returns.
    fn put(&self, subscriber: Subscriber) -> anyhow::Result<bool>;
    /// True when there was one to remove. Durable when it returns.
    fn remove(&self, realm: &str, user: &str) -> anyhow::Result<bool>;
    /// Every subscriber, by realm then user.
    fn list(&self) -> Vec<Subscriber>;
    /// How many there are.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Index = BTreeMap<(String, String), Subscriber>;

/// The embedded store (`[auth] db_path`); with no file, memory only.
pub struct RedbSubscribers {
    db: Option<Database>,
    index: RwLock<Index>,
}

impl RedbSubscribers {
    /// A store that keeps nothing across a restart.
    pub fn in_memory() -> RedbSubscribers {
        RedbSubscribers { db: None, index: RwLock::default() }
    }

    /// Opens (or creates) the file and loads it. Blocking: at start-up.
    ///
    /// # Errors
    /// The file cannot be opened (another process has it open, for one:
    /// the running server, whose MI `subscriber_add` is then the way in).
    pub fn open(path: &Path) -> anyhow::Result<RedbSubscribers> {
        let db = Database::create(path).with_context(|| format!("opening subscriber database {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(SUBSCRIBERS)?;
        txn.commit()?;
        let mut index = Index::new();
        let txn = db.begin_read()?;
        let table = txn.open_table(SUBSCRIBERS)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (realm, user) = key.value();
            match serde_json::from_slice::<Subscriber>(value.value()) {
                Ok(s) => {
                    index.insert((realm.to_owned(), user.to_owned()), s);
                }
                Err(err) => tracing::warn!(realm, user, %err, "skipping unreadable subscriber record"),
            }
        }
        drop(table);
        Ok(RedbSubscribers { db: Some(db), index: RwLock::new(index) })
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<(&str, &str), &[u8]>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let Some(db) = &self.db else { return Ok(()) };
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(SUBSCRIBERS)?;
            f(&mut table)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl SubscriberStore for RedbSubscribers {
    fn get(&self, realm: &str, user: &str) -> Option<Subscriber> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.get(&(realm.to_owned(), user.to_owned())).cloned()
    }

    fn put(&self, s: Subscriber) -> anyhow::Result<bool> {
        let bytes = serde_json::to_vec(&s)?;
        // The file first: what the index shows is on disk.
        self.write(|t| {
            t.insert((s.realm.as_str(), s.user.as_str()), bytes.as_slice())?;
            Ok(())
        })?;
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        Ok(index.insert((s.realm.clone(), s.user.clone()), s).is_none())
    }

    fn remove(&self, realm: &str, user: &str) -> anyhow::Result<bool> {
        self.write(|t| {
            t.remove((realm, user))?;
            Ok(())
        })?;
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        Ok(index.remove(&(realm.to_owned(), user.to_owned())).is_some())
    }

    fn list(&self) -> Vec<Subscriber> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn len(&self) -> usize {
        self.index.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_survive_a_reopen_and_keep_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subscribers.redb");
        {
            let store = RedbSubscribers::open(&path).unwrap();
            assert!(store.put(Subscriber::with_password("alice", "sipbox", "s3cret-pw")).unwrap());
            assert!(!store.put(Subscriber::with_password("alice", "sipbox", "n3w-pw")).unwrap(), "replaced");
            assert!(store.put(Subscriber::with_password("bob", "sipbox", "pw")).unwrap());
            assert!(store.remove("sipbox", "bob").unwrap());
            assert!(!store.remove("sipbox", "bob").unwrap());
        }
        let store = RedbSubscribers::open(&path).unwrap();
        let alice = store.get("sipbox", "alice").expect("alice persisted");
        assert_eq!(alice.ha1(Algorithm::Md5), Some(Algorithm::Md5.ha1("alice", "sipbox", "n3w-pw").as_str()));
        assert!(store.get("sipbox", "bob").is_none());
        assert!(store.get("other", "alice").is_none(), "per realm");
        let file = std::fs::read(&path).unwrap();
        assert!(!file.windows(6).any(|w| w == b"n3w-pw"), "no password on disk");
    }
}
