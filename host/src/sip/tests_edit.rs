//! Edit-list serialisation tests.

use bytes::Bytes;

use super::tests::{INVITE, crlf};
use super::*;

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn no_edits_is_the_received_bytes() {
    let raw = crlf(INVITE);
    let m = Message::parse(raw.clone()).unwrap();
    let out = serialize(&m, &Edits::default());
    assert_eq!(out, raw);
    assert_eq!(out.as_ptr(), raw.as_ptr(), "zero-copy slice of the received buffer");
    // Leading keep-alives and bytes past Content-Length are not forwarded.
    let padded = Bytes::from([b"\r\n".as_slice(), &raw, b"junk"].concat());
    assert_eq!(serialize(&Message::parse(padded).unwrap(), &Edits::default()), raw);
}

/// A proxy's typical edit: Via on top, top Route popped, Max-Forwards decremented. Every other
/// byte, including odd spacing, case and compact names, is forwarded as received.
#[test]
fn forwarding_is_byte_exact() {
    let raw = crlf(
        "INVITE sip:bob@example.com SIP/2.0\n\
         v:  SIP/2.0/UDP pc33.example.com ;branch=z9hG4bK776\n\
         max-forwards:   70\n\
         ROUTE: <sip:p1.example.com;lr> ,  <sip:p2.example.com;lr>\n\
         t: Bob <sip:bob@example.com>\n\
         f: <sip:alice@example.com>;tag=19\n\
         i: a84b4c76e66710\n\
         CSeq:   314159   INVITE\n\
         X-Folded: one\n  two\n\
         l: 5\n\nv=0\n",
    );
    let m = Message::parse(raw).unwrap();
    let mut e = Edits::default();
    e.pop_first_value(HeaderName::Route);
    e.set(HeaderName::MaxForwards, "69");
    e.prepend("Via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1");
    let out = serialize(&m, &e);
    assert_eq!(
        text(&out),
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1\r\n\
         v:  SIP/2.0/UDP pc33.example.com ;branch=z9hG4bK776\r\n\
         max-forwards:   69\r\n\
         ROUTE: <sip:p2.example.com;lr>\r\n\
         t: Bob <sip:bob@example.com>\r\n\
         f: <sip:alice@example.com>;tag=19\r\n\
         i: a84b4c76e66710\r\n\
         CSeq:   314159   INVITE\r\n\
         X-Folded: one\r\n  two\r\n\
         l: 5\r\n\r\nv=0\r\n"
    );
    let again = Message::parse(out).unwrap();
    assert_eq!(again.vias().unwrap().len(), 2);
    assert_eq!(again.routes().unwrap().len(), 1);
}

#[test]
fn pop_walks_lines_and_values() {
    let m = Message::parse(crlf(INVITE)).unwrap();
    let routes = |e: &Edits| {
        let out = Message::parse(serialize(&m, e)).unwrap();
        out.routes().unwrap().iter().map(|r| r.uri.to_string()).collect::<Vec<_>>()
    };
    let mut e = Edits::default();
    e.pop_first_value(HeaderName::Route);
    assert_eq!(routes(&e), ["sip:p2.example.com;lr", "sip:p3.example.com;lr"]);
    e.pop_first_value(HeaderName::Route);
    assert_eq!(routes(&e), ["sip:p3.example.com;lr"]);
    assert!(!text(&serialize(&m, &e)).contains("Route: <sip:p2"), "emptied line is removed");
    e.pop_first_value(HeaderName::Route);
    assert!(routes(&e).is_empty());
    e.pop_first_value(HeaderName::Route);
    assert!(routes(&e).is_empty(), "popping past the end is harmless");
}

#[test]
fn prepend_order_append_remove_set() {
    let m = Message::parse(crlf(INVITE)).unwrap();
    let mut e = Edits::default();
    e.prepend("Record-Route", "<sip:p.example.net;lr>");
    e.prepend("Via", "SIP/2.0/UDP p.example.net;branch=z9hG4bKx");
    e.append("X-Trace", "1");
    e.append("X-Gone", "queued then removed");
    assert_eq!(e.remove_all_by_name("x-gone"), 1);
    e.remove_all(HeaderName::Contact);
    e.set_by_name("Subject", "new");
    e.set_request_uri("sip:bob@10.0.0.2:5060");
    assert_eq!(e.request_uri(&m), "sip:bob@10.0.0.2:5060");
    let out = serialize(&m, &e);
    let s = text(&out);
    assert!(
        s.starts_with(
            "INVITE sip:bob@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP p.example.net;branch=z9hG4bKx\r\n\
         Record-Route: <sip:p.example.net;lr>\r\nVia: SIP/2.0/UDP pc33"
        ),
        "{s}"
    );
    assert!(s.ends_with("Content-Length: 5\r\nSubject: new\r\nX-Trace: 1\r\n\r\nv=0\r\n"), "{s}");
    assert!(!s.contains("Contact") && !s.contains("X-Gone"));
    let again = Message::parse(out).unwrap();
    assert_eq!(again.request_uri(), Some("sip:bob@10.0.0.2:5060"));
    assert_eq!(again.record_routes().unwrap()[0].uri, "sip:p.example.net;lr");
    assert_eq!(Edits::default().request_uri(&m), "sip:bob@example.com");
}

#[test]
fn set_replaces_every_line_in_place() {
    let m = Message::parse(crlf(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nX-A: 1\nFrom: <sip:a@b>;tag=1\nX-A: 2\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\nl: 0\n\n",
    ))
    .unwrap();
    let mut e = Edits::default();
    e.set_by_name("x-a", "3");
    let out = serialize(&m, &e);
    assert_eq!(
        text(&out),
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nX-A: 3\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    );
}

#[test]
fn content_length_added_and_body_replaced() {
    let m = Message::parse(crlf("MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 MESSAGE\nc: text/plain\n\nhello")).unwrap();
    let out = serialize(&m, &Edits::default());
    assert!(text(&out).ends_with("c: text/plain\r\nContent-Length: 5\r\n\r\nhello"), "{}", text(&out));
    let mut e = Edits::default();
    e.set_body(Bytes::from_static(b"{\"a\":1}"), Some("application/json".into()));
    let out = serialize(&m, &e);
    assert!(text(&out).ends_with("c: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"), "{}", text(&out));
    let mut e = Edits::default();
    e.set_body(Bytes::new(), None);
    let out = serialize(&m, &e);
    assert!(text(&out).ends_with("CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"), "{}", text(&out));
    // An existing Content-Length line is rewritten in place; one without Content-Type gets one.
    let m = Message::parse(crlf(INVITE)).unwrap();
    let mut e = Edits::default();
    e.set_body(Bytes::from_static(b"v=0\r\no=-\r\n"), None);
    let parsed = Message::parse(serialize(&m, &e)).unwrap();
    assert_eq!((parsed.content_length().unwrap(), parsed.body()), (Some(10), &b"v=0\r\no=-\r\n"[..]));
    let m = Message::parse(crlf("MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 MESSAGE\nl: 0\n\n")).unwrap();
    let mut e = Edits::default();
    e.set_body(Bytes::from_static(b"hi"), Some("text/plain".into()));
    assert!(text(&serialize(&m, &e)).ends_with("l: 2\r\nContent-Type: text/plain\r\n\r\nhi"));
}

#[test]
fn remove_then_add_keeps_later_lines() {
    let m = Message::parse(crlf(INVITE)).unwrap();
    let mut e = Edits::default();
    e.append("X-A", "before");
    e.remove_all_by_name("X-A");
    e.append("X-A", "after");
    e.remove_all(HeaderName::Other);
    e.set(HeaderName::Other, "ignored");
    e.pop_first_value(HeaderName::Other);
    let out = serialize(&m, &e);
    assert!(text(&out).contains("X-A: after\r\n") && !text(&out).contains("before"));
    assert!(!e.is_empty() && Edits::default().is_empty());
}
