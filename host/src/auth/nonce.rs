//! Nonces a server can check without remembering them, and the `nc` record
//! that makes each usable once per count.
//!
//! A nonce is `hex(ts || salt || mac)`: the unix second it was minted (8
//! bytes), 8 random bytes, and the first 16 bytes of
//! `HMAC-SHA256(secret, ts || salt || realm)`. Verifying it needs only the
//! secret: nothing is stored when challenging, so a scanner's millions of
//! unanswered challenges cost no memory. Its age tells a stale nonce
//! (answered with `stale=true`, RFC 7616 section 3.3) from a forged one.
//!
//! Replays: a nonce that verified and was used with a correct response is
//! remembered with the highest `nc` seen; the same or a lower `nc` again is a
//! replay (RFC 7616 section 3.4). Entries go when their nonce expires, and the
//! table is bounded: when it is full, a nonce not in it is treated as stale
//! (the UA is challenged again) rather than accepted unchecked.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const TS_LEN: usize = 8;
const SALT_LEN: usize = 8;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = TS_LEN + SALT_LEN + MAC_LEN;

/// Nonces remembered for `nc` checks at most: one per client that
/// authenticated within a nonce lifetime (~100 bytes each).
pub(crate) const MAX_TRACKED_NONCES: usize = 200_000;

/// What a nonce turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Minted by us (this secret, this realm) within the lifetime.
    Fresh,
    /// Minted by us, but older than the lifetime.
    Stale,
    /// Not ours: bad encoding, wrong MAC, another realm, or from the future.
    Forged,
}

/// Mints and checks nonces with one secret.
pub(crate) struct Nonces {
    secret: Vec<u8>,
    lifetime_s: u64,
}

impl Nonces {
    pub(crate) fn new(secret: Vec<u8>, lifetime_s: u64) -> Nonces {
        Nonces { secret, lifetime_s }
    }

    pub(crate) fn mint(&self, realm: &str, now: u64) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..TS_LEN].copy_from_slice(&now.to_be_bytes());
        rand::Rng::fill(&mut rand::rng(), &mut raw[TS_LEN..TS_LEN + SALT_LEN]);
        let mac = self.mac(&raw[..TS_LEN + SALT_LEN], realm);
        raw[TS_LEN + SALT_LEN..].copy_from_slice(&mac[..MAC_LEN]);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn check(&self, nonce: &str, realm: &str, now: u64) -> NonceCheck {
        let Some(raw) = unhex::<RAW_LEN>(nonce) else { return NonceCheck::Forged };
        let mac = self.mac(&raw[..TS_LEN + SALT_LEN], realm);
        if !bool::from(mac[..MAC_LEN].ct_eq(&raw[TS_LEN + SALT_LEN..])) {
            return NonceCheck::Forged;
        }
        let minted = u64::from_be_bytes(raw[..TS_LEN].try_into().unwrap_or_default());
        match now.checked_sub(minted) {
            // A clock step backwards of a few seconds is no forgery.
            None if minted - now > 5 => NonceCheck::Forged,
            Some(age) if age > self.lifetime_s => NonceCheck::Stale,
            _ => NonceCheck::Fresh,
        }
    }

    /// When the nonce was minted (for the tracker's expiry); `None` if it does not decode.
    pub(crate) fn minted_at(nonce: &str) -> Option<u64> {
        unhex::<RAW_LEN>(nonce).map(|raw| u64::from_be_bytes(raw[..TS_LEN].try_into().unwrap_or_default()))
    }

    fn mac(&self, data: &[u8], realm: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(data);
        mac.update(realm.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// The outcome of presenting a nonce count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CountCheck {
    /// Higher than any count seen with this nonce: recorded.
    Accepted,
    /// Seen before (or lower): a replay.
    Replayed,
    /// The table is full and this nonce is not in it.
    Full,
}

/// Highest `nc` per nonce in use, expiring with the nonces.
pub(crate) struct NonceCounts {
    inner: Mutex<Counts>,
    lifetime_s: u64,
    capacity: usize,
}

#[derive(Default)]
struct Counts {
    highest: HashMap<String, u32>,
    /// (minted at, nonce) in insertion order; minted times grow with it
    /// closely enough, since a nonce is used soon after it is minted.
    order: VecDeque<(u64, String)>,
}

impl NonceCounts {
    pub(crate) fn new(lifetime_s: u64, capacity: usize) -> NonceCounts {
        NonceCounts { inner: Mutex::new(Counts::default()), lifetime_s, capacity }
    }

    pub(crate) fn use_count(&self, nonce: &str, nc: u32, minted_at: u64, now: u64) -> CountCheck {
        let mut counts = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Forget nonces past their lifetime (they check as stale anyway).
        while let Some((minted, _)) = counts.order.front() {
            if now.saturating_sub(*minted) <= self.lifetime_s {
                break;
            }
            if let Some((_, old)) = counts.order.pop_front() {
                counts.highest.remove(&old);
            }
        }
        if let Some(highest) = counts.highest.get_mut(nonce) {
            if nc <= *highest {
                return CountCheck::Replayed;
            }
            *highest = nc;
            return CountCheck::Accepted;
        }
        if counts.highest.len() >= self.capacity {
            return CountCheck::Full;
        }
        counts.highest.insert(nonce.to_owned(), nc);
        counts.order.push_back((minted_at, nonce.to_owned()));
        CountCheck::Accepted
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).highest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_check_fresh_stale_and_forged() {
        let nonces = Nonces::new(b"secret".to_vec(), 300);
        let n = nonces.mint("sipbox", 1000);
        assert_eq!(n.len(), RAW_LEN * 2);
        assert_eq!(nonces.check(&n, "sipbox", 1000), NonceCheck::Fresh);
        assert_eq!(nonces.check(&n, "sipbox", 1300), NonceCheck::Fresh);
        assert_eq!(nonces.check(&n, "sipbox", 1301), NonceCheck::Stale);
        assert_eq!(nonces.check(&n, "other", 1000), NonceCheck::Forged, "bound to its realm");
        assert_eq!(nonces.check(&n, "sipbox", 900), NonceCheck::Forged, "from the future");
        assert_eq!(Nonces::new(b"other".to_vec(), 300).check(&n, "sipbox", 1000), NonceCheck::Forged);
        let mut tampered = n.clone().into_bytes();
        tampered[3] = if tampered[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(nonces.check(std::str::from_utf8(&tampered).unwrap(), "sipbox", 1000), NonceCheck::Forged);
        assert_eq!(nonces.check("zz", "sipbox", 1000), NonceCheck::Forged);
        assert_ne!(nonces.mint("sipbox", 1000), n, "salted");
    }

    #[test]
    fn counts_refuse_replays_expire_and_stay_bounded() {
        let counts = NonceCounts::new(100, 2);
        assert_eq!(counts.use_count("a", 1, 0, 0), CountCheck::Accepted);
        assert_eq!(counts.use_count("a", 1, 0, 1), CountCheck::Replayed);
        assert_eq!(counts.use_count("a", 2, 0, 1), CountCheck::Accepted);
        assert_eq!(counts.use_count("b", 1, 0, 1), CountCheck::Accepted);
        assert_eq!(counts.use_count("c", 1, 0, 1), CountCheck::Full);
        // Past the lifetime a and b are forgotten, making room.
        assert_eq!(counts.use_count("c", 1, 150, 150), CountCheck::Accepted);
        assert_eq!(counts.len(), 1);
    }
}
