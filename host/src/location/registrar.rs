//! REGISTER processing (RFC 3261 section 10.3, steps 4-8) and the canonical
//! forms of addresses-of-record and Contact URIs.
//!
//! Steps 1-3 (is the Request-URI our domain, `Require`, authentication) are
//! the route's business; [`Location::save`] starts at step 4. The request is
//! validated completely (400, 423) before the index lock is taken; the
//! Call-ID/CSeq rules and `max_contacts`, which depend on stored bindings,
//! are applied atomically under it (500, 503).
//!
//! # Out-of-order requests (step 7)
//! For a binding with the request's Call-ID and a CSeq not lower than the
//! request's, the RFC says "the update MUST be aborted and the request
//! fails", and that a failed update fails the request with a 500 and rolls
//! back every tentative change. sipbox does exactly that: the whole REGISTER
//! is refused with `500 Out-of-Order CSeq` and nothing changes. (Kamailio
//! answers 200 and ignores the stale contact instead; a 500 tells the UA the
//! truth, and retransmissions never get here because the transaction layer
//! absorbs them.)

use std::net::{IpAddr, SocketAddr};

use super::clock::http_date;
use super::store::{Action, ContactUpdate, RegisterUpdate, Rejection};
use super::{Binding, Location, LocationConfig, RegisterOutcome};
use crate::sip::{Contacts, Message, Method, NameAddr, Uri};
use crate::transport::{NextHop, Proto};

impl Location {
    /// Processes a REGISTER (RFC 3261 10.3 steps 4-8) and returns the answer
    /// to send. `src` and `proto` are where the request came from: when they
    /// differ from a Contact's own address, the binding records them as
    /// `received` so requests reach a UA behind NAT.
    ///
    /// | code | when |
    /// |---|---|
    /// | 200 | bindings updated (or fetched: no Contact); lists every live binding |
    /// | 400 | malformed To/Contact/Expires/q/CSeq, `*` without `Expires: 0`, not a REGISTER |
    /// | 423 | a contact asked for less than `min_expires` (but not 0); carries `Min-Expires` |
    /// | 500 | same Call-ID as a stored binding and a CSeq not higher (see module docs) |
    /// | 503 | the AOR would exceed `max_contacts` |
    ///
    /// Only a 200 changes anything.
    pub fn save(&self, req: &Message, src: SocketAddr, proto: Proto) -> RegisterOutcome {
        let update = match parse_register(&self.shared.cfg, req, src, proto) {
            Ok(update) => update,
            Err(outcome) => return outcome,
        };
        let max_contacts = self.shared.cfg.max_contacts;
        let result = self.shared.mutate(|store, now, changes| {
            store.register(&update, now, max_contacts, changes).map(|()| (store.lookup(&update.aor, now), now))
        });
        match result {
            Ok((bindings, now)) => ok_outcome(&bindings, now),
            Err(Rejection::OutOfOrder { stored_cseq }) => {
                tracing::debug!(aor = %update.aor, cseq = update.cseq, stored_cseq, "out-of-order REGISTER refused");
                reject(500, "Out-of-Order CSeq")
            }
            Err(Rejection::TooManyContacts { max }) => {
                tracing::debug!(aor = %update.aor, max, "REGISTER refused: too many contacts");
                reject(503, "Too Many Registered Contacts")
            }
        }
    }
}

fn reject(code: u16, reason: &str) -> RegisterOutcome {
    RegisterOutcome { code, reason: reason.to_owned(), headers: Vec::new() }
}

/// 200 OK: one Contact per live binding (in the given order), then Date
/// (RFC 3261 10.3 step 8).
pub(crate) fn ok_outcome(bindings: &[Binding], now: u64) -> RegisterOutcome {
    let mut headers: Vec<(String, String)> = bindings
        .iter()
        .map(|b| {
            let mut value = format!("<{}>;expires={}", b.contact, b.expires_at.saturating_sub(now));
            if let Some(q) = b.q {
                value.push_str(";q=");
                value.push_str(&format_q(q));
            }
            ("Contact".to_owned(), value)
        })
        .collect();
    headers.push(("Date".to_owned(), http_date(now)));
    RegisterOutcome { code: 200, reason: "OK".to_owned(), headers }
}

/// Steps 4-6: everything that depends on the request alone.
fn parse_register(
    cfg: &LocationConfig,
    req: &Message,
    src: SocketAddr,
    proto: Proto,
) -> Result<RegisterUpdate, RegisterOutcome> {
    if req.method() != Some(&Method::Register) {
        return Err(reject(400, "Not a REGISTER Request"));
    }
    let to = req.to().map_err(|_| reject(400, "Bad To Header"))?;
    let to_uri = Uri::parse(to.uri).map_err(|_| reject(400, "Bad To URI"))?;
    let aor = aor_from_uri(cfg, &to_uri).ok_or_else(|| reject(400, "To URI Is Not a SIP URI With a User"))?;
    let call_id = req.call_id().map_err(|_| reject(400, "Bad Call-ID Header"))?;
    let cseq = req.cseq().map_err(|_| reject(400, "Bad CSeq Header"))?;
    if cseq.method != Method::Register {
        return Err(reject(400, "CSeq Method Is Not REGISTER"));
    }
    let expires_header = req.expires().map_err(|_| reject(400, "Bad Expires Header"))?;
    let user_agent = req.header_by_name("User-Agent").map(|ua| ua.trim().to_owned()).filter(|ua| !ua.is_empty());

    let action = match req.contacts().map_err(|_| reject(400, "Bad Contact Header"))? {
        // Step 5: "*" only alone (the parser refuses a mix) and only with Expires: 0.
        Contacts::Star if expires_header == Some(0) => Action::RemoveAll,
        Contacts::Star => return Err(reject(400, "Contact: * Requires Expires: 0")),
        Contacts::List(list) if list.is_empty() => Action::Fetch,
        Contacts::List(list) => {
            let mut updates = Vec::with_capacity(list.len());
            for contact in &list {
                updates.push(contact_update(cfg, contact, expires_header, src, proto)?);
            }
            Action::Set(updates)
        }
    };
    Ok(RegisterUpdate { aor, call_id: call_id.to_owned(), cseq: cseq.seq, user_agent, action })
}

/// Step 6 for one contact: URI, interval, q, and the NAT source.
fn contact_update(
    cfg: &LocationConfig,
    contact: &NameAddr<'_>,
    expires_header: Option<u32>,
    src: SocketAddr,
    proto: Proto,
) -> Result<ContactUpdate, RegisterOutcome> {
    let uri = Uri::parse(contact.uri).ok().filter(Uri::is_sip).ok_or_else(|| reject(400, "Bad Contact URI"))?;
    let key = contact_key_of(&uri);
    let requested = match contact.param("expires") {
        Some(Some(v)) => parse_delta_seconds(v).ok_or_else(|| reject(400, "Bad Contact expires Parameter"))?,
        Some(None) => return Err(reject(400, "Bad Contact expires Parameter")),
        None => expires_header.unwrap_or(cfg.default_expires),
    };
    // RFC 3261 10.3 step 6: 423 only for 0 < interval < min (and < 1 hour,
    // which config validation guarantees by capping min_expires at 3600).
    if requested > 0 && requested < cfg.min_expires {
        return Err(RegisterOutcome {
            code: 423,
            reason: "Interval Too Brief".to_owned(),
            headers: vec![("Min-Expires".to_owned(), cfg.min_expires.to_string())],
        });
    }
    let q = match contact.param("q") {
        Some(Some(v)) => Some(parse_q(v).ok_or_else(|| reject(400, "Bad Contact q Parameter"))?),
        Some(None) => return Err(reject(400, "Bad Contact q Parameter")),
        None => None,
    };
    Ok(ContactUpdate {
        uri: contact.uri.to_owned(),
        key,
        expires: requested.min(cfg.max_expires),
        q,
        received: received_for(&uri, src, proto),
    })
}

/// The request's source as a next hop when requests for the binding
/// must go back the way the REGISTER came rather than to the Contact:
/// - over TCP, unless the connection came from the Contact's own address and
///   port (UAs connect from ephemeral ports and may not listen; replies and
///   requests reuse the connection, RFC 5923-style);
/// - over UDP, when the source IP differs from the Contact's IP (a NAT'd
///   private address). A different port on the same IP is a UA with several
///   sockets or a third-party registration (RFC 3261 10.2), where the Contact
///   is right, as OpenSIPS does without `fix_nated_register()`.
///
/// IPv4-mapped IPv6 sources become IPv4 (stored as `udp:192.0.2.1:5060`; IPv6
/// as `udp:[2001:db8::1]:5060`).
pub(crate) fn received_for(contact: &Uri<'_>, src: SocketAddr, proto: Proto) -> Option<NextHop> {
    let sips = contact.scheme.eq_ignore_ascii_case("sips");
    let transport = match contact.param("transport") {
        Some(Some(name)) => Proto::from_name(name),
        _ if sips => Some(Proto::Tcp),
        _ => Some(Proto::Udp),
    };
    let host = contact.host.trim_start_matches('[').trim_end_matches(']');
    let port = contact.port.unwrap_or(if sips { 5061 } else { 5060 });
    let same_ip = host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical() == src.ip().to_canonical());
    let direct = match proto {
        Proto::Tcp => same_ip && port == src.port() && transport == Some(proto),
        Proto::Udp => same_ip && transport == Some(proto),
    };
    let src = SocketAddr::new(src.ip().to_canonical(), src.port());
    (!direct).then(|| NextHop::from_addr(proto, src))
}

/// The AOR of a SIP URI: the user part, plus `@host` with `use_domain`.
/// `None` unless it is a sip/sips URI with a user part.
fn aor_from_uri(cfg: &LocationConfig, uri: &Uri<'_>) -> Option<String> {
    if !uri.is_sip() {
        return None;
    }
    let user = normalize_user(uri.user?);
    Some(if cfg.use_domain { format!("{user}@{}", uri.host.to_ascii_lowercase()) } else { user })
}

/// The AOR named by an operator or a route: a SIP URI (`sip:alice@example.com`)
/// or the AOR itself (`alice`, `alice@example.com`; the domain is dropped
/// without `use_domain`, a port is dropped with it).
pub(crate) fn aor_from_input(cfg: &LocationConfig, input: &str) -> Option<String> {
    let input = input.trim();
    let is_uri = input
        .split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"));
    if is_uri {
        return Uri::parse(input).ok().and_then(|uri| aor_from_uri(cfg, &uri));
    }
    let (user, host) = match input.rsplit_once('@') {
        Some((user, host)) => (user, Some(host)),
        None => (input, None),
    };
    if user.is_empty() {
        return None;
    }
    let user = normalize_user(user);
    match host {
        Some(host) if cfg.use_domain => {
            // Drop a port, but not the colons of a bracketed IPv6 reference.
            let host = match host.rfind(':') {
                Some(i) if !host.ends_with(']') => host.get(..i).unwrap_or(host),
                _ => host,
            };
            Some(format!("{user}@{}", host.to_ascii_lowercase()))
        }
        _ => Some(user),
    }
}

/// The match key of a Contact URI (RFC 3261 19.1.4, the parts that matter
/// for bindings): scheme and host case-insensitive, user case-sensitive with
/// escapes of unreserved characters decoded, port as written (an omitted port
/// does not equal an explicit 5060), and the `transport`, `user`, `ttl`,
/// `method` and `maddr` parameters, which must match when present; other
/// parameters are ignored. `None` if `uri` is not a SIP URI.
pub(crate) fn contact_key(uri: &str) -> Option<String> {
    Uri::parse(uri).ok().filter(Uri::is_sip).map(|uri| contact_key_of(&uri))
}

fn contact_key_of(uri: &Uri<'_>) -> String {
    let mut key = uri.scheme.to_ascii_lowercase();
    key.push(':');
    if let Some(user) = uri.user {
        key.push_str(&normalize_user(user));
        key.push('@');
    }
    key.push_str(&uri.host.to_ascii_lowercase());
    if let Some(port) = uri.port {
        key.push(':');
        key.push_str(&port.to_string());
    }
    for name in ["maddr", "method", "transport", "ttl", "user"] {
        if let Some(value) = uri.param(name) {
            key.push(';');
            key.push_str(name);
            if let Some(value) = value {
                key.push('=');
                key.push_str(&value.to_ascii_lowercase());
            }
        }
    }
    key
}

/// Decodes `%HH` escapes of unreserved characters (RFC 3261 19.1.4: they are
/// equivalent to the character) and upper-cases the hex of the others, so
/// equal user parts compare equal as strings. Case is otherwise kept.
fn normalize_user(user: &str) -> String {
    let bytes = user.as_bytes();
    let mut out = String::with_capacity(user.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
        if bytes.get(i) == Some(&b'%')
            && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
        {
            let decoded = (hi * 16 + lo) as u8;
            if decoded.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&decoded) {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push_str(&format!("{:02X}", decoded));
            }
            i += 3;
            continue;
        }
        // Copy the run up to the next escape as one str slice (keeps UTF-8 intact).
        let rest = bytes.get(i + 1..).unwrap_or_default();
        let end = memchr::memchr(b'%', rest).map_or(bytes.len(), |p| i + 1 + p);
        out.push_str(user.get(i..end).unwrap_or(""));
        i = end;
    }
    out
}

/// RFC 3261 `qvalue`: `"0" ["." 0*3DIGIT]` or `"1" ["." 0*3("0")]`.
pub(crate) fn parse_q(s: &str) -> Option<f32> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u32 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths as f32 / 1000.0),
        "1" if thousandths == 0 => Some(1.0),
        _ => None,
    }
}

/// A q-value with at most three decimals and no trailing zeros ("0.5", "1").
pub(crate) fn format_q(q: f32) -> String {
    let s = format!("{:.3}", q.clamp(0.0, 1.0));
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// RFC 3261 `delta-seconds`; values past 2^32-1 saturate (section 10.2.1.1
/// treats them as that maximum), anything but digits is refused.
pub(crate) fn parse_delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u32, |n, d| n.saturating_mul(10).saturating_add(u32::from(d - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_follow_the_rfc_grammar() {
        for (s, q) in
            [("0", 0.0), ("1", 1.0), ("0.5", 0.5), ("0.", 0.0), ("0.125", 0.125), ("1.000", 1.0), ("0.05", 0.05)]
        {
            assert_eq!(parse_q(s), Some(q), "{s}");
        }
        for s in ["", "1.001", "2", "0.1234", ".5", "-0", "0.a", "01", "1e0", " 0.5"] {
            assert_eq!(parse_q(s), None, "{s:?}");
        }
        assert_eq!(
            [format_q(1.0), format_q(0.0), format_q(0.5), format_q(0.125), format_q(0.1)],
            ["1", "0", "0.5", "0.125", "0.1"]
        );
    }

    #[test]
    fn delta_seconds_saturate() {
        assert_eq!(parse_delta_seconds("3600"), Some(3600));
        assert_eq!(parse_delta_seconds("99999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds("1h"), None);
    }

    #[test]
    fn contact_keys_compare_like_rfc3261() {
        let same = |a: &str, b: &str| contact_key(a).unwrap() == contact_key(b).unwrap();
        assert!(same("sip:alice@Host.COM", "SIP:alice@host.com"));
        assert!(same("sip:%61lice@h", "sip:alice@h"));
        assert!(same("sip:a@h;transport=TCP;lr", "sip:a@h;transport=tcp"));
        assert!(same("sip:a@h;ob;foo=bar", "sip:a@h"), "unknown params ignored");
        assert!(!same("sip:Alice@h", "sip:alice@h"), "user part is case-sensitive");
        assert!(!same("sip:a@h:5060", "sip:a@h"), "explicit default port differs");
        assert!(!same("sip:a@h;transport=tcp", "sip:a@h"));
        assert!(!same("sips:a@h", "sip:a@h"));
        assert_eq!(contact_key("sip:a%40b@h;maddr=X").unwrap(), "sip:a%40b@h;maddr=x", "reserved escapes kept");
        assert_eq!(contact_key("tel:+123"), None);
        assert_eq!(contact_key("garbage"), None);
    }

    #[test]
    fn user_normalisation_keeps_case_and_reserved_escapes() {
        assert_eq!(normalize_user("%41lice"), "Alice");
        assert_eq!(normalize_user("a%3ab"), "a%3Ab");
        assert_eq!(normalize_user("100%"), "100%");
        assert_eq!(normalize_user("%zz%4"), "%zz%4");
        assert_eq!(normalize_user("ünï%2D"), "ünï-");
    }

    #[test]
    fn aors_from_input() {
        let plain = LocationConfig::default();
        let domain = LocationConfig { use_domain: true, ..LocationConfig::default() };
        assert_eq!(aor_from_input(&plain, "sip:alice@example.com").as_deref(), Some("alice"));
        assert_eq!(aor_from_input(&plain, "alice@example.com").as_deref(), Some("alice"));
        assert_eq!(
            aor_from_input(&domain, "sip:alice@EXAMPLE.com:5060;user=phone").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(aor_from_input(&domain, "alice@[2001:DB8::1]").as_deref(), Some("alice@[2001:db8::1]"));
        assert_eq!(aor_from_input(&domain, "alice@[2001:db8::1]:5060").as_deref(), Some("alice@[2001:db8::1]"));
        assert_eq!(aor_from_input(&domain, "alice@example.com:5060").as_deref(), Some("alice@example.com"));
        assert_eq!(aor_from_input(&plain, "sip:example.com"), None);
        assert_eq!(aor_from_input(&plain, "@example.com"), None);
    }
}
