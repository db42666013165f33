//! Transaction matching keys (RFC 3261 sections 17.1.3 and 17.2.3) and the sharded table
//! that maps them to live transactions.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;

use crate::sip::{self, Message, Method};

/// The RFC 3261 branch magic cookie (section 8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// Matches a request to a server transaction (17.2.3): the top Via branch and sent-by, and
/// the method, where ACK counts as INVITE (it belongs to the INVITE transaction) and
/// CANCEL is its own transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ServerKey {
    /// The branch, or for RFC 2543 peers (no magic cookie) a digest of the identifying fields.
    pub(crate) branch: Box<str>,
    /// Top Via sent-by, host lower-cased, "host:port" (port as written, 0 when absent).
    pub(crate) sent_by: Box<str>,
    /// The method, ACK folded into INVITE.
    pub(crate) method: Method,
}

impl ServerKey {
    /// The key of a request, or why it has none (no parsable top Via).
    pub(crate) fn of(req: &Message) -> Result<ServerKey, sip::ParseError> {
        let via = req.top_via()?;
        let method = match req.method() {
            Some(Method::Ack) => Method::Invite,
            Some(m) => m.clone(),
            None => return Err(sip::ParseError::StartLine("not a request")),
        };
        let sent_by = format!("{}:{}", via.host.to_ascii_lowercase(), via.port.unwrap_or(0)).into_boxed_str();
        let branch = match via.branch {
            Some(b) if b.starts_with(MAGIC_COOKIE) => Box::from(b),
            // 17.2.3: RFC 2543 matching by Request-URI, tags, Call-ID, CSeq and top Via. The
            // ACK to a non-2xx carries the same Request-URI and To tag (17.1.1.3), but the
            // INVITE had no To tag, so the To tag is left out.
            _ => {
                let from_tag = req.from().ok().and_then(|f| f.tag()).unwrap_or("");
                let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
                format!(
                    "2543|{}|{}|{}|{}",
                    req.request_uri().unwrap_or(""),
                    req.call_id().unwrap_or(""),
                    from_tag,
                    cseq
                )
                .into_boxed_str()
            }
        };
        Ok(ServerKey { branch, sent_by, method })
    }

    /// The same transaction's key for another method (the INVITE a CANCEL cancels).
    pub(crate) fn with_method(&self, method: Method) -> ServerKey {
        ServerKey { branch: self.branch.clone(), sent_by: self.sent_by.clone(), method }
    }
}

/// Matches a response to a client transaction (17.1.3): top Via branch and CSeq method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    /// Our branch.
    pub(crate) branch: Box<str>,
    /// The CSeq method (an ACK is never a client transaction).
    pub(crate) method: Method,
}

impl ClientKey {
    /// The key of a response.
    pub(crate) fn of_response(resp: &Message) -> Result<ClientKey, sip::ParseError> {
        let via = resp.top_via()?;
        let branch = via.branch.ok_or(sip::ParseError::bad("Via", "no branch"))?;
        let method = resp.cseq()?.method;
        Ok(ClientKey { branch: Box::from(branch), method })
    }
}

/// Number of shards: enough that two cores rarely contend, small enough to scan for stats.
const SHARDS: usize = 32;

/// A shard smaller than this is never shrunk (not worth a reallocation).
const SHRINK_ABOVE: usize = 256;

/// A map split over [`SHARDS`] std mutexes. Critical sections are a single lookup or
/// insert; a lock is never held across an `.await`.
pub(crate) struct Sharded<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V: Clone> Sharded<K, V> {
    pub(crate) fn new() -> Sharded<K, V> {
        Sharded { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, k: &K) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        let i = (self.hasher.hash_one(k) as usize) % SHARDS;
        // A panic while holding a shard lock cannot leave the map inconsistent (single
        // insert/remove calls), so a poisoned lock is still usable.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        self.shard(k).get(k).cloned()
    }

    /// Inserts unless the key is present; returns the existing value in that case.
    pub(crate) fn insert_new(&self, k: K, v: V) -> Result<(), V> {
        let mut s = self.shard(&k);
        if let Some(old) = s.get(&k) {
            return Err(old.clone());
        }
        s.insert(k, v);
        Ok(())
    }

    /// Removes `k` if `pred` holds for its value (so a finished transaction never removes
    /// a newer one that reused its key).
    pub(crate) fn remove_if(&self, k: &K, pred: impl FnOnce(&V) -> bool) -> bool {
        let mut s = self.shard(k);
        if s.get(k).is_some_and(pred) {
            s.remove(k);
            // A map keeps the capacity it grew to (a flood's 400k transactions: tens of MB
            // per table); give it back once it is mostly empty. The quarter keeps this from
            // reallocating back and forth at steady load.
            if s.capacity() > SHRINK_ABOVE && s.len() < s.capacity() / 4 {
                s.shrink_to_fit();
            }
            return true;
        }
        false
    }

    /// How many values satisfy `pred` (one shard locked at a time: a snapshot
    /// that may miss changes made meanwhile, which is all a drain needs).
    pub(crate) fn count(&self, pred: impl Fn(&V) -> bool) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|v| pred(v)).count())
            .sum()
    }

    /// The slots allocated in every shard (tests: the tables shrink after a flood).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.iter().map(|m| m.lock().map_or(0, |m| m.capacity())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(method: &str, via: &str, extra: &str) -> Message {
        let s = format!(
            "{method} sip:b@x SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=f\r\nTo: <sip:b@x>{extra}\r\n\
             Call-ID: c\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(s)).expect("valid")
    }

    #[test]
    fn server_keys_17_2_3() {
        let via = "SIP/2.0/UDP Host.Example:5070;branch=z9hG4bKx1";
        let inv = ServerKey::of(&req("INVITE", via, "")).expect("key");
        let ack = ServerKey::of(&req("ACK", via, ";tag=t")).expect("key");
        let cancel = ServerKey::of(&req("CANCEL", via, "")).expect("key");
        assert_eq!(inv, ack, "ACK belongs to the INVITE transaction");
        assert_ne!(inv, cancel, "CANCEL is its own transaction");
        assert_eq!(cancel.with_method(Method::Invite), inv);
        assert_eq!(&*inv.sent_by, "host.example:5070");
        let other_port =
            ServerKey::of(&req("INVITE", "SIP/2.0/UDP host.example:5071;branch=z9hG4bKx1", "")).expect("key");
        assert_ne!(inv, other_port, "sent-by is part of the key");
    }

    #[test]
    fn rfc2543_fallback_matches_ack_and_retransmission() {
        let via = "SIP/2.0/UDP 10.0.0.1;branch=old";
        let inv = ServerKey::of(&req("INVITE", via, "")).expect("key");
        assert_eq!(inv, ServerKey::of(&req("INVITE", via, "")).expect("key"));
        assert_eq!(inv, ServerKey::of(&req("ACK", via, ";tag=t")).expect("key"));
        assert!(inv.branch.starts_with("2543|"));
    }

    #[test]
    fn client_key_uses_branch_and_cseq_method() {
        let r = Message::parse(Bytes::from_static(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKme\r\nFrom: <sip:a@x>;tag=f\r\n\
              To: <sip:b@x>;tag=t\r\nCall-ID: c\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("valid");
        let k = ClientKey::of_response(&r).expect("key");
        assert_eq!((&*k.branch, k.method), ("z9hG4bKme", Method::Cancel));
    }

    #[test]
    fn sharded_table_insert_get_remove() {
        let t: Sharded<u32, u64> = Sharded::new();
        assert!(t.insert_new(1, 10).is_ok());
        assert_eq!(t.insert_new(1, 11), Err(10));
        assert_eq!(t.get(&1), Some(10));
        assert!(!t.remove_if(&1, |v| *v == 11), "a newer value is kept");
        assert!(t.remove_if(&1, |v| *v == 10));
        assert_eq!(t.get(&1), None);
    }

    #[test]
    fn sharded_table_gives_memory_back_once_mostly_empty() {
        let t: Sharded<u32, u64> = Sharded::new();
        for i in 0..100_000 {
            t.insert_new(i, 0).expect("new");
        }
        let grown = t.capacity();
        assert!(grown >= 100_000);
        for i in 0..100_000 {
            assert!(t.remove_if(&i, |_| true));
        }
        assert!(t.capacity() < grown / 10, "capacity {} of {grown} kept after emptying", t.capacity());
    }
}
