//! The edit property, shared by the stable unit test (`tests_props.rs`) and the `edit` fuzz
//! target (host/fuzz compiles this file too, against the same `sip` source): for a parsed
//! message and any list of [`Op`]s a route or the proxy core can make, `serialize` gives a
//! message that parses again, and every header line the edits did not name comes out
//! byte-identical and in order (RFC 3261 section 16.6: a proxy forwards what it does not
//! touch unchanged). Only the public API and crate-wide methods of [`Message`] are used, so
//! the file compiles in both crates.

use arbitrary::Arbitrary;

use super::{Bytes, Edits, HeaderName, Message, serialize};

/// Header names edits may add, set or remove freely: token names a route may use that
/// [`Message::parse`] does not validate (so any value keeps the message parseable), in
/// several spellings and compact forms.
pub const FREE_NAMES: &[&str] = &[
    "Route",
    "route",
    "Record-Route",
    "Contact",
    "m",
    "Subject",
    "s",
    "X-Fuzz",
    "x-fuzz",
    "Allow",
    "Supported",
    "k",
    "P-Asserted-Identity",
    "Expires",
    "Content-Type",
    "c",
    "User-Agent",
    "Diversion",
];

/// Known headers that [`Edits::remove_all`], [`Edits::set`] and [`Edits::pop_first_value`]
/// may target without making the message invalid.
pub const FREE_KNOWN: &[HeaderName] = &[
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Contact,
    HeaderName::Expires,
    HeaderName::ContentType,
    HeaderName::MinExpires,
];

/// Request-URIs the proxy may set (valid SIP URIs).
pub const URIS: &[&str] = &["sip:bob@192.0.2.4", "sips:a@[2001:db8::1]:5061;transport=tcp", "sip:x.example.com;lr"];

/// Top Via values the proxy core prepends.
pub const VIAS: &[&str] = &[
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz;rport",
    "SIP/2.0/TCP [2001:db8::2];branch=z9hG4bK1",
    "SIP/2.0/TLS proxy.example.com;branch=z9hG4bK-x;received=192.0.2.9",
];

/// One edit. Indices pick from the tables above (modulo their length); values have CR, LF
/// and NUL removed, as the route runtime refuses them.
#[derive(Arbitrary, Debug, Clone)]
#[allow(missing_docs, reason = "variants mirror the Edits methods")]
pub enum Op {
    RequestUri(u8),
    Prepend(u8, String),
    Append(u8, String),
    RemoveAll(u8),
    RemoveAllByName(u8),
    Set(u8, String),
    SetByName(u8, String),
    Pop(u8),
    PrependVia(u8),
    MaxForwards(u8),
    Body(Vec<u8>, Option<String>),
}

fn pick<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

fn clean(v: &str) -> String {
    v.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')).collect()
}

/// Whether header names `a` and `b` may denote the same header for an edit: an
/// over-approximation of the edit list's matching (compact forms of unknown headers are
/// not expanded here), so "not possibly the same" really means untouched.
fn possibly_same(a: &str, b: &str) -> bool {
    let (ha, hb) = (HeaderName::from_name(a), HeaderName::from_name(b));
    ha == hb && (ha != HeaderName::Other || a.eq_ignore_ascii_case(b) || a.len() == 1 || b.len() == 1)
}

/// Exactly the same name (same known header, or the same unknown name in any case).
fn same_exact(a: &str, b: &str) -> bool {
    let (ha, hb) = (HeaderName::from_name(a), HeaderName::from_name(b));
    ha == hb && (ha != HeaderName::Other || a.eq_ignore_ascii_case(b))
}

/// What a list of ops changes, as the check needs it.
#[derive(Default)]
struct Applied {
    edits: Edits,
    /// Names whose original lines may be rewritten or dropped.
    touched: Vec<String>,
    /// Names of the lines added by prepend/append.
    added: Vec<String>,
    uri: bool,
    body: Option<Vec<u8>>,
}

fn apply(msg: &Message, ops: &[Op]) -> Applied {
    let mut a = Applied::default();
    for op in ops {
        match op {
            Op::RequestUri(i) if msg.is_request() => {
                a.edits.set_request_uri(pick(URIS, *i));
                a.uri = true;
            }
            Op::RequestUri(_) => {}
            Op::Prepend(n, v) => {
                let name = pick(FREE_NAMES, *n);
                a.edits.prepend(name, clean(v));
                a.added.push(name.to_string());
            }
            Op::Append(n, v) => {
                let name = pick(FREE_NAMES, *n);
                a.edits.append(name, clean(v));
                a.added.push(name.to_string());
            }
            Op::RemoveAll(k) => {
                let h = pick(FREE_KNOWN, *k);
                a.edits.remove_all(h);
                a.touched.push(h.as_str().to_string());
            }
            Op::RemoveAllByName(n) => {
                let name = pick(FREE_NAMES, *n);
                a.edits.remove_all_by_name(name);
                a.touched.push(name.to_string());
            }
            Op::Set(k, v) => {
                let h = pick(FREE_KNOWN, *k);
                a.edits.set(h, clean(v));
                a.touched.push(h.as_str().to_string());
            }
            Op::SetByName(n, v) => {
                let name = pick(FREE_NAMES, *n);
                a.edits.set_by_name(name, clean(v));
                a.touched.push(name.to_string());
            }
            Op::Pop(k) => {
                let h = pick(FREE_KNOWN, *k);
                a.edits.pop_first_value(h);
                a.touched.push(h.as_str().to_string());
            }
            Op::PrependVia(i) => {
                a.edits.prepend("Via", pick(VIAS, *i));
                a.added.push("Via".to_string());
            }
            Op::MaxForwards(n) => {
                a.edits.set(HeaderName::MaxForwards, n.to_string());
                a.touched.push("Max-Forwards".to_string());
            }
            Op::Body(b, ct) => {
                a.edits.set_body(Bytes::from(b.clone()), ct.as_deref().map(clean));
                a.touched.extend(["Content-Type".to_string(), "Content-Length".to_string()]);
                a.body = Some(b.clone());
            }
        }
    }
    a
}

/// The (name, whole line bytes) of every header line of `msg`, in order.
fn lines(msg: &Message) -> Vec<(&str, &[u8])> {
    msg.entries().iter().map(|e| (msg.entry_text(e.raw_name), msg.bytes(e.line))).collect()
}

/// Applies `ops` to `msg`, serialises, re-parses and checks the property (module docs).
///
/// # Errors
/// A description of the first violation, with the serialised message.
pub fn check(msg: &Message, ops: &[Op]) -> Result<(), String> {
    let a = apply(msg, ops);
    let out = serialize(msg, &a.edits);
    let fail = |what: String| format!("{what}\nops: {ops:?}\noutput:\n{}", String::from_utf8_lossy(&out));
    let again = Message::parse(out.clone()).map_err(|e| fail(format!("edited message does not parse: {e}")))?;

    let (start, _, _, _) = msg.layout();
    let (start2, _, _, _) = again.layout();
    if !a.uri && msg.bytes(start) != again.bytes(start2) {
        return Err(fail("start line changed".into()));
    }
    let want_body = a.body.as_deref().unwrap_or(msg.body());
    if again.body() != want_body {
        return Err(fail("body differs".into()));
    }
    if !a.edits.is_empty() || msg.has_content_length() {
        // Content-Length is always present after serialisation and matches the body.
        if again.content_length().ok().flatten() != Some(want_body.len()) {
            return Err(fail("Content-Length does not match the body".into()));
        }
    }

    let before = lines(msg);
    let after = lines(&again);
    let untouched: Vec<(&str, &[u8])> =
        before.iter().copied().filter(|(n, _)| !a.touched.iter().any(|t| possibly_same(n, t))).collect();
    // Every untouched line, byte for byte, in order (a subsequence of the output's lines).
    let mut rest = after.iter();
    for (name, line) in &untouched {
        if !rest.any(|(_, l)| l == line) {
            return Err(fail(format!(
                "untouched {name} line {:?} missing or out of order",
                String::from_utf8_lossy(line)
            )));
        }
    }
    // No untouched header gains or loses lines beyond the ones prepended/appended.
    for (name, _) in &untouched {
        if HeaderName::from_name(name) == HeaderName::ContentLength {
            continue;
        }
        let count = |ls: &[(&str, &[u8])]| ls.iter().filter(|(n, _)| same_exact(n, name)).count();
        let added = a.added.iter().filter(|n| same_exact(n, name)).count();
        if count(&after) != count(&before) + added {
            return Err(fail(format!(
                "{name}: {} lines before, {added} added, {} after",
                count(&before),
                count(&after)
            )));
        }
    }
    Ok(())
}
