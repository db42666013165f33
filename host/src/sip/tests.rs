//! Parser, typed-view, response and framing tests.

use bytes::Bytes;

use super::*;

/// Turns `\n` line endings into CRLF (test messages are written with LF for readability).
pub(crate) fn crlf(s: &str) -> Bytes {
    Bytes::from(s.replace('\n', "\r\n"))
}

pub(crate) const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds;rport
Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKabc;received=192.0.2.9
Max-Forwards: 70
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>
Route: <sip:p3.example.com;lr>
To: Bob <sip:bob@example.com>
From: \"Alice, A.\" <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.example.com;transport=tcp>;expires=60, \"x,y\" <sip:a2@h>
Content-Type: application/sdp
Content-Length: 5

v=0
";

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(crlf(s))
}

#[test]
fn parses_request_basics() {
    let m = parse(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.request_uri(), Some("sip:bob@example.com"));
    assert_eq!(m.status(), None);
    assert_eq!(m.body(), b"v=0\r\n");
    assert_eq!(m.call_id().unwrap(), "a84b4c76e66710@pc33.example.com");
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Invite));
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.content_length().unwrap(), Some(5));
    assert_eq!(m.expires().unwrap(), None);
    let from = m.from().unwrap();
    assert_eq!(from.display, Some("Alice, A."));
    assert_eq!(from.uri, "sip:alice@example.com");
    assert_eq!(from.tag(), Some("1928301774"));
    let to = m.to().unwrap();
    assert_eq!((to.display, to.tag()), (Some("Bob"), None));
    assert_eq!(m.headers().count(), 12);
    assert_eq!(m.headers().nth(3).unwrap().name, HeaderName::Route);
}

#[test]
fn typed_via_and_routes() {
    let m = parse(INVITE).unwrap();
    let top = m.top_via().unwrap();
    assert_eq!(top.transport, "UDP");
    assert_eq!(top.host, "pc33.example.com");
    assert_eq!(top.port, None);
    assert_eq!(top.branch, Some("z9hG4bK776asdhds"));
    assert_eq!(top.rport, Some(None));
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!((vias[1].host, vias[1].port, vias[1].received), ("[2001:db8::1]", Some(5070), Some("192.0.2.9")));
    assert_eq!(vias[1].rport, None);
    let routes = m.routes().unwrap();
    let uris: Vec<_> = routes.iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["sip:p1.example.com;lr", "sip:p2.example.com;lr", "sip:p3.example.com;lr"]);
    let u = Uri::parse(routes[0].uri).unwrap();
    assert_eq!((u.host, u.param("lr")), ("p1.example.com", Some(None)));
    assert!(m.record_routes().unwrap().is_empty());
}

#[test]
fn values_do_not_split_inside_angle_brackets_or_quotes() {
    let m = parse(INVITE).unwrap();
    let c = m.values(HeaderName::Contact);
    assert_eq!(c, ["<sip:alice@pc33.example.com;transport=tcp>;expires=60", "\"x,y\" <sip:a2@h>"]);
    let Contacts::List(list) = m.contacts().unwrap() else { panic!("expected a list") };
    assert_eq!(list[0].param("expires"), Some(Some("60")));
    assert_eq!(list[1].display, Some("x,y"));
    // From is not a list header: the comma inside quotes and the whole value stay together.
    assert_eq!(m.values(HeaderName::From).len(), 1);
    let m = parse(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\n\
         Call-ID: x\nCSeq: 1 OPTIONS\nRoute: <sip:a,b@h;lr>, \"q,\\\",r\" <sip:c@d>\n\
         Authorization: Digest username=\"a\", realm=\"b\"\nX-List: a, b\n\n",
    )
    .unwrap();
    assert_eq!(m.values(HeaderName::Route), ["<sip:a,b@h;lr>", "\"q,\\\",r\" <sip:c@d>"]);
    assert_eq!(m.values_by_name("authorization").len(), 1, "auth headers are not lists");
    assert_eq!(m.values_by_name("X-List"), ["a, b"], "unknown headers are one value per line");
}

#[test]
fn compact_forms() {
    let m = parse(
        "MESSAGE sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nf: <sip:a@b>;tag=1\nt: <sip:c@d>\ni: cid\n\
         CSeq: 1 MESSAGE\nm: <sip:a@h>\nc: text/plain\nl: 2\ns: hi\nk: path\no: presence\nx: 90\n\nok",
    )
    .unwrap();
    assert_eq!(m.call_id().unwrap(), "cid");
    assert_eq!(m.header(HeaderName::ContentType), Some("text/plain"));
    assert_eq!(m.header_by_name("Content-Type"), Some("text/plain"));
    assert_eq!(m.header_by_name("i"), Some("cid"));
    assert_eq!(m.header_by_name("SUBJECT"), Some("hi"));
    assert_eq!(m.header_by_name("Supported"), Some("path"));
    assert_eq!(m.header_by_name("event"), Some("presence"));
    assert_eq!(m.header_by_name("Session-Expires"), Some("90"));
    assert_eq!(m.values_by_name("m"), ["<sip:a@h>"]);
    assert_eq!(m.count_by_name("Contact"), 1);
    assert_eq!(m.body(), b"ok");
    assert_eq!(HeaderName::from_name("V"), HeaderName::Via);
    assert_eq!(HeaderName::from_name("call-id"), HeaderName::CallId);
    assert_eq!(HeaderName::from_name("l"), HeaderName::ContentLength);
    assert_eq!(HeaderName::from_name("record-ROUTE"), HeaderName::RecordRoute);
    assert_eq!(HeaderName::from_name("e"), HeaderName::Other);
    assert_eq!(HeaderName::from_name("Viaa"), HeaderName::Other);
}

#[test]
fn folded_headers_belong_to_the_previous_line() {
    let m = parse(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1,\n SIP/2.0/UDP h2;branch=z9hG4bK2\n\
         Subject: first\n\tsecond\nTo:\n <sip:a@b>\nFrom: <sip:a@b>\n  ;tag=9\nCall-ID: x\nCSeq: 1\n OPTIONS\n\n",
    )
    .unwrap();
    assert_eq!(m.headers().count(), 6);
    assert_eq!(m.header_by_name("subject"), Some("first\r\n\tsecond"));
    assert_eq!(m.to().unwrap().uri, "sip:a@b");
    assert_eq!(m.from().unwrap().tag(), Some("9"));
    let hosts: Vec<_> = m.vias().unwrap().iter().map(|v| v.host).collect();
    assert_eq!(hosts, ["h1", "h2"]);
    assert_eq!(m.cseq().unwrap().seq, 1);
}

#[test]
fn multi_value_via_on_one_line_and_several() {
    let one = parse(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2:5070;branch=z9hG4bK2\n\
         Via: SIP/2.0/UDP h3\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\n\n",
    )
    .unwrap();
    let vias = one.vias().unwrap();
    assert_eq!(
        vias.iter().map(|v| (v.host, v.port)).collect::<Vec<_>>(),
        [("h1", None), ("h2", Some(5070)), ("h3", None)]
    );
    assert_eq!(one.top_via().unwrap().branch, Some("z9hG4bK1"));
    assert_eq!(vias[2].branch, None);
}

#[test]
fn response_parsing() {
    let m = parse(
        "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>;tag=2\n\
         Call-ID: x\nCSeq: 7 INVITE\nContent-Length: 0\n\n",
    )
    .unwrap();
    assert!(!m.is_request());
    assert_eq!((m.status(), m.reason(), m.method()), (Some(180), Some("Ringing"), None));
    assert_eq!(m.cseq().unwrap().method, Method::Invite);
    let m =
        parse("SIP/2.0 200\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 7 BYE\n\n").unwrap();
    assert_eq!(m.reason(), Some(""));
}

#[test]
fn precise_errors() {
    let base = "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\n";
    let with = |extra: &str| parse(&format!("{base}{extra}\n"));
    let swap = |from: &str, to: &str| parse(&format!("{}\n", base.replace(from, to)));
    assert!(with("").is_ok());
    assert_eq!(with("Content-Length: 5\n").unwrap_err(), ParseError::BodyTruncated { declared: 5, available: 0 });
    assert!(matches!(with("Content-Length: x\n"), Err(ParseError::BadHeader { header: "Content-Length", .. })));
    assert!(matches!(with("Max-Forwards: -1\n"), Err(ParseError::BadHeader { header: "Max-Forwards", .. })));
    assert_eq!(with("Call-ID: y\n").unwrap_err(), ParseError::Duplicate("Call-ID"));
    assert!(matches!(with(" folded-into-cseq\n"), Err(ParseError::BadHeader { header: "CSeq", .. })));
    assert!(with("X-A: 1\n folded\n").is_ok());
    assert_eq!(swap("Call-ID: x\n", "").unwrap_err(), ParseError::Missing("Call-ID"));
    assert_eq!(swap("Via: SIP/2.0/UDP h;branch=z9hG4bK1\n", "").unwrap_err(), ParseError::Missing("Via"));
    assert!(matches!(swap("1 OPTIONS", "1 INVITE"), Err(ParseError::CSeqMismatch { .. })));
    assert!(matches!(swap("1 OPTIONS", "4294967296 OPTIONS"), Err(ParseError::BadHeader { header: "CSeq", .. })));
    assert_eq!(swap("SIP/2.0\n", "SIP/3.0\n").unwrap_err(), ParseError::Version);
    assert!(matches!(swap("OPTIONS sip", "OPT(IONS sip"), Err(ParseError::Method)));
    assert_eq!(parse(base).unwrap_err(), ParseError::Unterminated);
    assert_eq!(Message::parse(Bytes::from_static(b"\r\n\r\n")).unwrap_err(), ParseError::Empty);
    assert_eq!(Message::parse(Bytes::new()).unwrap_err(), ParseError::Empty);
    let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
    assert_eq!(Message::parse(Bytes::from(big)).unwrap_err(), ParseError::TooLarge(MAX_MESSAGE_SIZE + 1));
    assert_eq!(with("X-Bad: a\rb\n").unwrap_err(), ParseError::ControlChar);
    let not_utf8 = [base.replace('\n', "\r\n").as_bytes(), b"X: \xff\r\n\r\n"].concat();
    assert_eq!(Message::parse(Bytes::from(not_utf8)).unwrap_err(), ParseError::NotUtf8);
    assert_eq!(parse("SIP/2.0 99 Low\nVia: SIP/2.0/UDP h\n\n").unwrap_err(), ParseError::Status);
    assert_eq!(parse("SIP/2.0 700 High\nVia: SIP/2.0/UDP h\n\n").unwrap_err(), ParseError::Status);
    // Errors read well in logs and 400 reasons.
    assert_eq!(ParseError::Missing("Call-ID").to_string(), "missing Call-ID");
    assert_eq!(ParseError::bad("CSeq", "x").to_string(), "bad CSeq: x");
}

#[test]
fn body_is_truncated_to_content_length() {
    let m =
        Message::parse(Bytes::from([INVITE.replace('\n', "\r\n").as_bytes(), b"trailing garbage"].concat())).unwrap();
    assert_eq!(m.body(), b"v=0\r\n");
    let no_cl = parse("MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 MESSAGE\n\nhello").unwrap();
    assert_eq!(no_cl.body(), b"hello");
    assert_eq!(no_cl.content_length().unwrap(), None);
}

#[test]
fn uri_parsing() {
    let u = Uri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y").unwrap();
    assert_eq!((u.scheme, u.user, u.host, u.port), ("sips", Some("alice"), "[2001:db8::1]", Some(5061)));
    assert_eq!((u.params, u.headers), (";transport=tcp;lr", "subject=x&h=y"));
    assert_eq!((u.param("TRANSPORT"), u.param("lr"), u.param("maddr")), (Some(Some("tcp")), Some(None), None));
    let u = Uri::parse("sip:example.com").unwrap();
    assert_eq!((u.user, u.host, u.port, u.params), (None, "example.com", None, ""));
    let t = Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap();
    assert_eq!((t.host, t.param("phone-context")), ("+1-201-555-0123", Some(Some("x"))));
    for bad in
        ["", "sip:", "nocolon", "sip:@h", "sip:a@", "sip:h:99999", "sip:h x", "1sip:h", "sip:h:5060x", "sip:[::1"]
    {
        assert!(Uri::parse(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn name_addr_forms() {
    let n = NameAddr::parse("sip:a@b;tag=x").unwrap();
    assert_eq!((n.display, n.uri, n.tag()), (None, "sip:a@b", Some("x")));
    let n = NameAddr::parse("A  B <sip:a@b;lr>;q=0.5").unwrap();
    assert_eq!((n.display, n.uri, n.param("q")), (Some("A  B"), "sip:a@b;lr", Some(Some("0.5"))));
    let n = NameAddr::parse("\"q\\\"x\"<sip:a@b>").unwrap();
    assert_eq!(n.display, Some("q\\\"x"));
    for bad in [
        "\"open <sip:a@b>",
        "a, b <sip:a@b>",
        "< sip:a@b>",
        "<sip:a@b",
        "sip:a@b;;tag=1",
        "<sip:a@b> junk",
        "<nouri>",
        "sip:a@b?x=y",
    ] {
        assert!(NameAddr::parse(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn via_forms() {
    let v = Via::parse("SIP / 2.0 / UDP 10.0.0.1 : 5060 ; branch = z9hG4bK1 ; rport = 7").unwrap();
    assert_eq!(
        (v.transport, v.host, v.port, v.branch, v.rport),
        ("UDP", "10.0.0.1", Some(5060), Some("z9hG4bK1"), Some(Some(7)))
    );
    assert_eq!(v.param("BRANCH"), Some(Some("z9hG4bK1")));
    for bad in [
        "SIP/2.0/UDP",
        "SIP/3.0/UDP h",
        "SIP/2.0/ h",
        "SIP/2.0/UDP h;;",
        "SIP/2.0/UDP h:x",
        "SIP/2.0/UDP h;rport=x",
        "HTTP/2.0/UDP h",
    ] {
        assert!(Via::parse(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn contact_star() {
    let base = "REGISTER sip:b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 REGISTER\nExpires: 0\n";
    let m = parse(&format!("{base}Contact: *\n\n")).unwrap();
    assert_eq!(m.contacts().unwrap(), Contacts::Star);
    assert_eq!(m.expires().unwrap(), Some(0));
    let m = parse(&format!("{base}Contact: *, <sip:a@h>\n\n")).unwrap();
    assert!(m.contacts().is_err());
    let m = parse(&format!("{base}\n")).unwrap();
    assert_eq!(m.contacts().unwrap(), Contacts::List(vec![]));
    let m = parse(&base.replace("Expires: 0", "Expires: 99999999999")).unwrap_err();
    assert!(matches!(m, ParseError::Unterminated));
    let m = parse(&format!("{}\n", base.replace("Expires: 0", "Expires: 99999999999"))).unwrap();
    assert_eq!(m.expires().unwrap(), Some(u32::MAX), "Expires saturates");
}

#[test]
fn method_names() {
    assert_eq!(Method::from_token("INVITE"), Method::Invite);
    assert_eq!(Method::from_token("invite"), Method::Other("invite".into()), "methods are case-sensitive");
    assert_eq!(Method::from_token("PUBLISH").as_str(), "PUBLISH");
    assert_eq!(Method::Other("FOO".into()).to_string(), "FOO");
}

#[test]
fn builds_responses() {
    let req = parse(INVITE).unwrap();
    let r = response(&req, 180, "Ringing", Some("abc"), &[("Contact", "<sip:p@h>")], None);
    let text = std::str::from_utf8(&r).unwrap();
    assert_eq!(
        text,
        "SIP/2.0 180 Ringing\r\n\
         Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds;rport\r\n\
         Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKabc;received=192.0.2.9\r\n\
         To: Bob <sip:bob@example.com>;tag=abc\r\n\
         From: \"Alice, A.\" <sip:alice@example.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710@pc33.example.com\r\n\
         CSeq: 314159 INVITE\r\n\
         Contact: <sip:p@h>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let parsed = Message::parse(r).unwrap();
    assert_eq!(parsed.to().unwrap().tag(), Some("abc"));
    // 100 Trying never gets a To tag; an existing tag is kept.
    let trying = Message::parse(response(&req, 100, "Trying", Some("abc"), &[], None)).unwrap();
    assert_eq!(trying.to().unwrap().tag(), None);
    let with_body =
        Message::parse(response(&req, 200, "OK\r\nX: injected", Some("t"), &[], Some(("text/plain", b"hi")))).unwrap();
    assert_eq!((with_body.reason(), with_body.body()), (Some("OKX: injected"), &b"hi"[..]));
    assert_eq!(with_body.header(HeaderName::ContentType), Some("text/plain"));
    let again = Message::parse(response(&with_body, 200, "OK", Some("other"), &[], None)).unwrap();
    assert_eq!(again.to().unwrap().tag(), Some("t"));
}

#[test]
fn replies_to_malformed_requests() {
    let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP g\r\nFrom: <sip:a@b>;tag=1\r\n\
                To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: many\r\n\r\n";
    assert!(Message::parse(Bytes::from_static(raw)).is_err());
    let r = reply_to_malformed(raw, "bad Max-Forwards").unwrap();
    let m = Message::parse(r).unwrap_or_else(|e| panic!("400 must parse: {e}"));
    assert_eq!((m.status(), m.reason()), (Some(400), Some("bad Max-Forwards")));
    assert!(m.max_forwards().unwrap().is_none(), "only Via/From/To/Call-ID/CSeq are copied");
    assert_eq!(m.vias().unwrap().len(), 2);
    assert!(m.to().unwrap().tag().is_some());
    assert!(
        reply_to_malformed(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", "x").is_none(),
        "never answer a response"
    );
    assert!(
        reply_to_malformed(b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", "x").is_none(),
        "never answer an ACK"
    );
    assert!(reply_to_malformed(b"INVITE sip:a@b SIP/2.0\r\nFrom: x\r\n\r\n", "x").is_none(), "no Via, nowhere to send");
    assert!(reply_to_malformed(b"garbage", "x").is_none());
    let r = reply_to_malformed(b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\n\r\n", "").unwrap();
    assert!(r.starts_with(b"SIP/2.0 400 Bad Request\r\nv: SIP/2.0/UDP h\r\n"));
}

#[test]
fn frame_len_basics() {
    let one = crlf(INVITE);
    assert_eq!(frame_len(&one).unwrap(), Some(one.len()));
    assert_eq!(frame_len(&one[..one.len() - 1]).unwrap(), None);
    assert_eq!(
        frame_len(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n").unwrap(),
        Some(33),
        "no Content-Length: empty body"
    );
    assert!(frame_len(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n").is_err());
    assert!(frame_len(b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nab").is_err());
    assert!(matches!(frame_len(b"OPTIONS sip:a SIP/2.0\r\nl: 70000\r\n\r\n"), Err(ParseError::TooLarge(_))));
    assert!(matches!(frame_len(&vec![b'a'; MAX_MESSAGE_SIZE + 10]), Err(ParseError::TooLarge(_))));
    let broken = b"OPTIONS sip:a SIP/2.0\r\n folded first\r\nno colon here\r\nX: \x00\r\nl: 2\r\n\r\nab";
    assert_eq!(frame_len(broken).unwrap(), Some(broken.len()), "framing survives malformed lines");
    assert!(Message::parse(Bytes::from_static(broken)).is_err());
    assert_eq!(skip_keepalive(b"\r\n\r\nINVITE"), 4);
    assert_eq!(skip_keepalive(b""), 0);
}

/// Three messages on one stream, cut at every byte offset: the framer must find exactly the
/// same boundaries whatever the read sizes.
#[test]
fn frame_len_split_anywhere() {
    let a = crlf(INVITE);
    let b = crlf(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: y\nCSeq: 2 OPTIONS\nContent-Length: 0\n\n",
    );
    let c = crlf(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>\nTo: <sip:a@b>\nCall-ID: y\nCSeq: 2 OPTIONS\nl: 5\n\nhello",
    );
    let mut stream = Vec::new();
    for m in [&a, &b, &c] {
        stream.extend_from_slice(b"\r\n"); // keep-alive between messages
        stream.extend_from_slice(m);
    }
    let expected: Vec<&[u8]> = vec![&a, &b, &c];
    for cut in 0..=stream.len() {
        let mut buf: Vec<u8> = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for chunk in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(chunk);
            loop {
                let skip = skip_keepalive(&buf);
                buf.drain(..skip);
                match frame_len(&buf).unwrap() {
                    Some(n) => {
                        got.push(buf.drain(..n).collect());
                    }
                    None => break,
                }
            }
        }
        assert!(buf.is_empty(), "cut {cut}: leftover {buf:?}");
        assert_eq!(got, expected, "cut {cut}");
        for m in &got {
            Message::parse(Bytes::from(m.clone())).unwrap();
        }
    }
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(483), "Too Many Hops");
    assert_eq!(reason_phrase(499), "Client Error");
    assert_eq!(reason_phrase(42), "Unknown");
}

/// The top Via, From, To and CSeq are kept as ranges by `Message::parse`;
/// rebuilt from them they must equal a fresh parse of the header value, in
/// every form the parser accepts (display names, addr-spec with parameters,
/// compact names, folded lines, several Vias on one line, IPv6, rport).
#[test]
fn cached_views_equal_a_fresh_parse() {
    let messages = [
        INVITE.to_string(),
        "OPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/udp [::1]:5070;rport=5;received=10.0.0.1;branch=z9hG4bKx, SIP/2.0/TCP h2\n\
         t:\n sip:a@b;tag=7\nf: Al <sip:a@b;transport=tcp>\n  ;tag=9;x\ni: x\nCSeq:\t42\n OPTIONS\n\n"
            .to_string(),
        "SIP/2.0 180 Ringing\nVia: SIP/2.0/TLS h;branch=z9hG4bK1;received=1.2.3.4\nFrom: \"A \\\"q\\\"\" <sips:a@b>;tag=1\n\
         To: <tel:+123>;tag=2\nCall-ID: y\nCSeq: 1 FOO\n\n"
            .to_string(),
    ];
    for text in &messages {
        let m = parse(text).unwrap();
        let value = |name| m.header(name).unwrap();
        let top = header::list_values(value(HeaderName::Via)).next().unwrap();
        assert_eq!(m.top_via().unwrap(), typed::Via::parse(top).unwrap(), "{text}");
        assert_eq!(m.from().unwrap(), NameAddr::parse_header(value(HeaderName::From), "From").unwrap(), "{text}");
        assert_eq!(m.to().unwrap(), NameAddr::parse_header(value(HeaderName::To), "To").unwrap(), "{text}");
        assert_eq!(m.cseq().unwrap(), CSeq::parse(value(HeaderName::CSeq)).unwrap(), "{text}");
    }
}
