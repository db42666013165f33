//! Fuzzes the SIP message layer: `Message::parse`, every accessor and typed view,
//! `serialize` (a fixpoint of `parse`, and self-delimiting for TCP), `response` (a response
//! to any request parses), `with_top_via_stamp`, `frame_len` and `reply_to_malformed`.
//! None may panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use sipbox_fuzz::sip::{
    Bytes, Edits, HeaderName, Message, Method, Uri, frame_len, reply_to_malformed, response, serialize, skip_keepalive,
};

fuzz_target!(|data: &[u8]| {
    let skip = skip_keepalive(data);
    if let Ok(Some(n)) = frame_len(&data[skip..]) {
        assert!(n <= data.len() - skip);
    }
    if let Some(reply) = reply_to_malformed(data, "fuzz") {
        // Sent on the same stream: it must frame as exactly itself.
        assert_eq!(frame_len(&reply), Ok(Some(reply.len())), "400 does not frame");
    }
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(data)) else { return };
    let _ = (msg.method(), msg.request_uri(), msg.status(), msg.reason(), msg.is_request());
    let _ = (msg.top_via(), msg.vias(), msg.from(), msg.to(), msg.call_id(), msg.cseq());
    let _ = (msg.contacts(), msg.routes(), msg.record_routes(), msg.max_forwards(), msg.expires());
    assert!(msg.top_via().is_ok() && msg.from().is_ok() && msg.to().is_ok() && msg.cseq().is_ok());
    assert!(msg.call_id().is_ok() && msg.max_forwards().is_ok() && msg.content_length().is_ok());
    if let Some(uri) = msg.request_uri() {
        assert!(Uri::parse(uri).is_ok(), "a parsed Request-URI must parse as a URI");
    }
    for h in msg.headers() {
        let _ = msg.values_by_name(h.raw_name);
        assert!(msg.header_by_name(h.raw_name).is_some());
        assert!(msg.count_by_name(h.raw_name) >= 1);
    }

    let out = serialize(&msg, &Edits::default());
    assert_eq!(frame_len(&out), Ok(Some(out.len())), "serialised message does not frame as itself");
    let again = Message::parse(out.clone()).expect("serialised message must parse");
    assert_eq!(again.body(), msg.body());
    assert_eq!(serialize(&again, &Edits::default()), out);

    let mut edits = Edits::default();
    edits.pop_first_value(HeaderName::Route);
    edits.prepend("Via", "SIP/2.0/UDP fuzz.invalid;branch=z9hG4bKfuzz");
    edits.set(HeaderName::MaxForwards, "69");
    let out = serialize(&msg, &edits);
    assert_eq!(frame_len(&out), Ok(Some(out.len())));
    Message::parse(out).expect("edited message must parse");

    for (rport, received) in [
        (Some(5060), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
        (None, Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
        (Some(1), None),
    ] {
        if let Some(stamped) = msg.with_top_via_stamp(rport, received) {
            assert_eq!(stamped.from().ok(), msg.from().ok());
        }
    }

    if msg.is_request() && msg.method() != Some(&Method::Ack) {
        for (code, tag) in [(100, None), (486, Some("fuzztag")), (200, Some("t"))] {
            let r = response(&msg, code, "Fuzz", tag, &[("X-Fuzz", "1")], Some(("text/plain", b"body")));
            assert_eq!(frame_len(&r), Ok(Some(r.len())));
            let parsed = Message::parse(r.clone()).unwrap_or_else(|e| panic!("response {code} does not parse: {e}"));
            assert_eq!(parsed.status(), Some(code));
            assert_eq!(parsed.call_id().ok(), msg.call_id().ok());
        }
    }
});
