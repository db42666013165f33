//! The in-memory location index: address-of-record → bindings, plus the
//! expiry order, and the RFC 3261 10.3 step 7 binding-update rules.
//!
//! Everything here is plain data driven by an explicit `now` (unix seconds):
//! no locks, clocks, channels or I/O, so the rules are unit-tested directly.
//! Every mutation reports what it did as [`Change`]s, in order; the caller
//! ([`super::Location`]) turns them into events and persistence ops while it
//! still holds the lock, so observers see changes in the order they happened.

use std::collections::{BTreeSet, HashMap};

use super::Binding;
use crate::transport::NextHop;

/// One stored binding and its match key (the Contact URI reduced to what
/// RFC 3261 19.1.4 compares; see `registrar::contact_key`).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) binding: Binding,
}

/// What a mutation did, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    /// The AOR got its first binding (emitted before that binding's `Inserted`).
    AorInserted(String),
    /// The AOR lost its last binding (emitted after that binding's `Deleted`).
    AorDeleted(String),
    Inserted(Binding),
    /// Something besides the expiry changed (contact text, q, received,
    /// User-Agent or Call-ID). `previous` is needed to drop its persisted key
    /// when the contact text changed.
    Updated {
        previous: Binding,
        current: Binding,
    },
    /// Only the expiry (and CSeq) changed: a plain re-registration.
    Refreshed(Binding),
    Deleted(Binding),
}

/// One contact of a REGISTER, already validated by the registrar.
#[derive(Clone, Debug)]
pub(crate) struct ContactUpdate {
    /// Contact URI as sent, without angle brackets.
    pub(crate) uri: String,
    pub(crate) key: String,
    /// Granted interval in seconds; 0 removes the binding.
    pub(crate) expires: u32,
    pub(crate) q: Option<f32>,
    pub(crate) received: Option<NextHop>,
}

/// What a REGISTER asks for.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// No Contact header: just list the bindings.
    Fetch,
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    /// Add, refresh or remove (expires 0) each contact, in order.
    Set(Vec<ContactUpdate>),
}

/// A REGISTER reduced to what the store needs (RFC 3261 10.3 steps 6-7).
#[derive(Clone, Debug)]
pub(crate) struct RegisterUpdate {
    pub(crate) aor: String,
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) user_agent: Option<String>,
    pub(crate) action: Action,
}

/// Why a REGISTER was refused; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Same Call-ID as a stored binding and a CSeq not higher than its own
    /// (RFC 3261 10.3 step 7: "the update MUST be aborted and the request fails").
    OutOfOrder { stored_cseq: u32 },
    /// The AOR would hold more than `max_contacts` bindings.
    TooManyContacts { max: u32 },
}

/// The index. Invariant: `expiry` holds exactly one `(expires_at, aor, key)`
/// per stored binding, and no AOR maps to an empty list.
#[derive(Default, Debug)]
pub(crate) struct Store {
    aors: HashMap<String, Vec<Entry>>,
    expiry: BTreeSet<(u64, String, String)>,
}

impl Store {
    /// Adds a binding read back from the database (no change is reported:
    /// nothing changed, and nobody can have subscribed yet).
    pub(crate) fn insert_loaded(&mut self, key: String, binding: Binding) {
        let list = self.aors.entry(binding.aor.clone()).or_default();
        if let Some(old) = list.iter_mut().find(|e| e.key == key) {
            // Two persisted spellings of one contact: keep the newer.
            if old.binding.last_modified > binding.last_modified {
                return;
            }
            self.expiry.remove(&(old.binding.expires_at, binding.aor.clone(), key.clone()));
            self.expiry.insert((binding.expires_at, binding.aor.clone(), key.clone()));
            *old = Entry { key, binding };
        } else {
            self.expiry.insert((binding.expires_at, binding.aor.clone(), key.clone()));
            list.push(Entry { key, binding });
        }
    }

    /// Applies a REGISTER atomically: either every contact is updated, or
    /// nothing is and the rejection says why (RFC 3261 10.3 step 7: updates
    /// are committed "if and only if all binding updates and additions succeed").
    /// Bindings of this AOR that expired but were not purged yet are purged
    /// first (and reported), whatever the outcome.
    pub(crate) fn register(
        &mut self,
        req: &RegisterUpdate,
        now: u64,
        max_contacts: u32,
        changes: &mut Vec<Change>,
    ) -> Result<(), Rejection> {
        self.purge_aor(&req.aor, now, changes);
        let original: &[Entry] = self.aors.get(&req.aor).map_or(&[], Vec::as_slice);

        let stale = |key: &str| {
            original
                .iter()
                .find(|e| e.key == key && e.binding.call_id == req.call_id && req.cseq <= e.binding.cseq)
                .map(|e| Rejection::OutOfOrder { stored_cseq: e.binding.cseq })
        };
        let updated: Vec<Entry> = match &req.action {
            Action::Fetch => return Ok(()),
            Action::RemoveAll => {
                // Step 7 for "*": every binding is checked the same way.
                if let Some(rejection) = original.iter().find_map(|e| stale(&e.key)) {
                    return Err(rejection);
                }
                Vec::new()
            }
            Action::Set(contacts) => {
                if let Some(rejection) = contacts.iter().find_map(|c| stale(&c.key)) {
                    return Err(rejection);
                }
                let mut work = original.to_vec();
                for c in contacts {
                    let pos = work.iter().position(|e| e.key == c.key);
                    if c.expires == 0 {
                        if let Some(pos) = pos {
                            work.remove(pos);
                        }
                        continue;
                    }
                    let entry = Entry {
                        key: c.key.clone(),
                        binding: Binding {
                            aor: req.aor.clone(),
                            contact: c.uri.clone(),
                            q: c.q,
                            expires_at: now.saturating_add(u64::from(c.expires)),
                            call_id: req.call_id.clone(),
                            cseq: req.cseq,
                            received: c.received.clone(),
                            user_agent: req.user_agent.clone(),
                            last_modified: now,
                        },
                    };
                    match pos {
                        Some(pos) => work[pos] = entry,
                        None => work.push(entry),
                    }
                }
                // Only growth is refused: a UA must always be able to refresh
                // or shed bindings, even after max_contacts was lowered.
                let max = max_contacts as usize;
                if max_contacts > 0 && work.len() > max && work.len() > original.len() {
                    return Err(Rejection::TooManyContacts { max: max_contacts });
                }
                work
            }
        };
        self.replace(&req.aor, updated, changes);
        Ok(())
    }

    /// Removes every binding of `aor` (`key` None) or the one matching `key`.
    /// Returns how many were removed.
    pub(crate) fn remove(&mut self, aor: &str, key: Option<&str>, changes: &mut Vec<Change>) -> usize {
        let Some(original) = self.aors.get(aor) else { return 0 };
        let kept: Vec<Entry> = match key {
            None => Vec::new(),
            Some(key) => original.iter().filter(|e| e.key != key).cloned().collect(),
        };
        let removed = original.len() - kept.len();
        if removed > 0 {
            self.replace(aor, kept, changes);
        }
        removed
    }

    /// Removes every binding with `expires_at <= now`, earliest first.
    pub(crate) fn purge_expired(&mut self, now: u64, changes: &mut Vec<Change>) {
        while let Some(first) = self.expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, aor, key)) = self.expiry.pop_first() {
                self.remove_expired_entry(&aor, &key, changes);
            }
        }
    }

    /// Earliest `expires_at` of any binding, for the purge task's timer.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(at, _, _)| *at)
    }

    /// Live bindings of `aor`: q descending (absent q ranks as 1.0), then
    /// most recently registered first.
    pub(crate) fn lookup(&self, aor: &str, now: u64) -> Vec<Binding> {
        let mut out: Vec<Binding> = self
            .aors
            .get(aor)
            .into_iter()
            .flatten()
            .filter(|e| e.binding.expires_at > now)
            .map(|e| e.binding.clone())
            .collect();
        sort_for_lookup(&mut out);
        out
    }

    /// Every live binding, AORs in name order, each AOR in lookup order.
    pub(crate) fn all(&self, now: u64) -> Vec<Binding> {
        let mut aors: Vec<&String> = self.aors.keys().collect();
        aors.sort();
        aors.into_iter().flat_map(|aor| self.lookup(aor, now)).collect()
    }

    /// Number of stored bindings (live or awaiting purge).
    pub(crate) fn len(&self) -> usize {
        self.expiry.len()
    }

    fn purge_aor(&mut self, aor: &str, now: u64, changes: &mut Vec<Change>) {
        let Some(list) = self.aors.get(aor) else { return };
        if list.iter().any(|e| e.binding.expires_at <= now) {
            let kept = list.iter().filter(|e| e.binding.expires_at > now).cloned().collect();
            self.replace(aor, kept, changes);
        }
    }

    fn remove_expired_entry(&mut self, aor: &str, key: &str, changes: &mut Vec<Change>) {
        let Some(list) = self.aors.get_mut(aor) else { return };
        let Some(pos) = list.iter().position(|e| e.key == key) else { return };
        let entry = list.remove(pos);
        changes.push(Change::Deleted(entry.binding));
        if list.is_empty() {
            self.aors.remove(aor);
            changes.push(Change::AorDeleted(aor.to_owned()));
        }
    }

    /// Makes `updated` the binding list of `aor`, keeping the expiry index in
    /// step and reporting the difference: deletions first, then insertions and
    /// updates in list order, bracketed by the AOR events.
    fn replace(&mut self, aor: &str, updated: Vec<Entry>, changes: &mut Vec<Change>) {
        let original = self.aors.remove(aor).unwrap_or_default();
        if original.is_empty() && !updated.is_empty() {
            changes.push(Change::AorInserted(aor.to_owned()));
        }
        for old in &original {
            if !updated.iter().any(|e| e.key == old.key) {
                self.expiry.remove(&(old.binding.expires_at, aor.to_owned(), old.key.clone()));
                changes.push(Change::Deleted(old.binding.clone()));
            }
        }
        for new in &updated {
            match original.iter().find(|e| e.key == new.key) {
                None => {
                    self.expiry.insert((new.binding.expires_at, aor.to_owned(), new.key.clone()));
                    changes.push(Change::Inserted(new.binding.clone()));
                }
                Some(old) if old.binding == new.binding => {}
                Some(old) => {
                    self.expiry.remove(&(old.binding.expires_at, aor.to_owned(), old.key.clone()));
                    self.expiry.insert((new.binding.expires_at, aor.to_owned(), new.key.clone()));
                    changes.push(if is_material_change(&old.binding, &new.binding) {
                        Change::Updated { previous: old.binding.clone(), current: new.binding.clone() }
                    } else {
                        Change::Refreshed(new.binding.clone())
                    });
                }
            }
        }
        if updated.is_empty() {
            if !original.is_empty() {
                changes.push(Change::AorDeleted(aor.to_owned()));
            }
        } else {
            self.aors.insert(aor.to_owned(), updated);
        }
    }
}

/// A change worth `ContactUpdated` rather than `ContactRefreshed`: anything a
/// router uses to reach the UA (contact text, q, received), or a new
/// registration session (Call-ID: the UA restarted) or device (User-Agent).
fn is_material_change(old: &Binding, new: &Binding) -> bool {
    old.contact != new.contact
        || old.q != new.q
        || old.received != new.received
        || old.user_agent != new.user_agent
        || old.call_id != new.call_id
}

/// q descending with an absent q ranking as 1.0 (the RFC 3261 `q` grammar
/// tops out at 1; OpenSIPS's `default_q` would rank it 0 instead), then the
/// most recently registered first.
pub(crate) fn sort_for_lookup(bindings: &mut [Binding]) {
    bindings.sort_by(|a, b| {
        let (qa, qb) = (a.q.unwrap_or(1.0), b.q.unwrap_or(1.0));
        qb.total_cmp(&qa).then(b.last_modified.cmp(&a.last_modified))
    });
}

#[cfg(test)]
#[path = "tests_store.rs"]
mod tests;
