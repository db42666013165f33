//! Fuzzes the typed header views. The first byte picks the view, the rest is the value:
//! parsed directly (`Via`, `NameAddr`, `CSeq`) with a rebuild-and-reparse round trip, and
//! inside an otherwise valid message through the `Message` accessors (top Via and the Via
//! list, From/To, Contact with `*`, Route, Record-Route, Max-Forwards, Expires), whose
//! numeric values are checked against a reference reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbox_fuzz::sip::{Bytes, CSeq, Contacts, HeaderName, Message, NameAddr, Via};

/// RFC 3261 `1*DIGIT` as a number, or `None` (reference for Max-Forwards/Expires).
fn digits(v: &str) -> Option<u64> {
    let t = v.trim_matches([' ', '\t', '\r', '\n']);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(t.bytes().fold(0u64, |acc, b| acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))))
}

/// A valid request with `name: value` added (or replacing the line of that name).
fn message_with(name: &str, value: &str) -> Option<Message> {
    let mut lines = vec![
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
        ("From", "<sip:a@b>;tag=1"),
        ("To", "<sip:c@d>"),
        ("Call-ID", "x"),
        ("CSeq", "1 REGISTER"),
    ];
    match lines.iter_mut().find(|(n, _)| *n == name) {
        Some(line) => line.1 = value,
        None => lines.push((name, value)),
    }
    let head: String = lines.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    Message::parse(Bytes::from(format!("REGISTER sip:r SIP/2.0\r\n{head}Content-Length: 0\r\n\r\n"))).ok()
}

fn via(s: &str) {
    let Ok(v) = Via::parse(s) else { return };
    assert!(!v.transport.is_empty() && !v.host.is_empty());
    assert_eq!(v.branch, v.param("branch").flatten());
    assert_eq!(v.received, v.param("received").flatten());
    let port = v.port.map(|p| format!(":{p}")).unwrap_or_default();
    let rebuilt = format!("SIP/2.0/{} {}{port}{}", v.transport, v.host, v.params);
    let w = Via::parse(&rebuilt).unwrap_or_else(|e| panic!("rebuilt Via {rebuilt:?}: {e}"));
    assert_eq!(w, Via { params: w.params, ..v.clone() });
    assert_eq!(w.params, v.params);
}

fn name_addr(s: &str) {
    let Ok(n) = NameAddr::parse(s) else { return };
    assert!(!n.uri.is_empty());
    assert_eq!(n.tag(), n.param("tag").flatten());
    let _ = n.parsed_uri();
    let rebuilt = format!("<{}>{}", n.uri, n.params);
    let m = NameAddr::parse(&rebuilt).unwrap_or_else(|e| panic!("rebuilt name-addr {rebuilt:?}: {e}"));
    assert_eq!((m.display, m.uri, m.params), (None, n.uri, n.params));
}

fn cseq(s: &str) {
    let Ok(c) = CSeq::parse(s) else { return };
    assert_eq!(c.method.as_str(), c.method_str);
    let rebuilt = format!("{} {}", c.seq, c.method_str);
    let again = CSeq::parse(&rebuilt).expect("rebuilt CSeq");
    assert_eq!(again, c);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    match which % 9 {
        0 => {
            via(s);
            if let Some(m) = message_with("Via", s) {
                let top = m.top_via().expect("top Via of a parsed message");
                if let Ok(all) = m.vias() {
                    assert_eq!(all.first(), Some(&top));
                }
                via(m.header(HeaderName::Via).unwrap_or(""));
            }
        }
        1 => {
            name_addr(s);
            if let Some(m) = message_with("From", s) {
                let f = m.from().expect("From of a parsed message");
                assert_eq!(NameAddr::parse(m.header(HeaderName::From).unwrap_or("")).ok(), Some(f));
            }
        }
        2 => {
            name_addr(s);
            if let Some(m) = message_with("To", s) {
                let t = m.to().expect("To of a parsed message");
                assert_eq!(t.tag(), t.param("tag").flatten());
            }
        }
        3 => {
            cseq(s);
            if let Some(m) = message_with("CSeq", s) {
                let c = m.cseq().expect("CSeq of a parsed message");
                assert_eq!(CSeq::parse(m.header(HeaderName::CSeq).unwrap_or("")).ok(), Some(c));
            }
        }
        4 => {
            if let Some(m) = message_with("Contact", s) {
                match m.contacts() {
                    Ok(Contacts::Star) => assert_eq!(m.values(HeaderName::Contact), ["*"]),
                    Ok(Contacts::List(list)) => {
                        assert_eq!(list.len(), m.values(HeaderName::Contact).len());
                        for c in list {
                            let _ = (c.param("expires"), c.param("q"), c.parsed_uri());
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        5 | 6 => {
            let name = if which % 9 == 5 { "Route" } else { "Record-Route" };
            if let Some(m) = message_with(name, s) {
                let list = if name == "Route" { m.routes() } else { m.record_routes() };
                if let Ok(list) = list {
                    let h = if name == "Route" { HeaderName::Route } else { HeaderName::RecordRoute };
                    assert_eq!(list.len(), m.values(h).len());
                    for r in list {
                        name_addr(r.uri);
                        let _ = (r.param("lr"), r.parsed_uri());
                    }
                }
            }
        }
        7 => {
            let m = message_with("Max-Forwards", s);
            if let Some(m) = &m {
                let want = digits(m.header(HeaderName::MaxForwards).unwrap_or("")).and_then(|n| u32::try_from(n).ok());
                assert_eq!(m.max_forwards().ok().flatten(), want);
            }
            if !s.contains(['\r', '\n']) && digits(s).is_some_and(|n| n <= u64::from(u32::MAX)) {
                assert!(m.is_some(), "valid Max-Forwards {s:?} rejected");
            }
        }
        _ => {
            if let Some(m) = message_with("Expires", s) {
                let want =
                    digits(m.header(HeaderName::Expires).unwrap_or("")).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                assert_eq!(m.expires().ok().flatten(), want);
            }
        }
    }
});
