//! Requests the proxy originates (CANCEL, RFC 3261 section 9.1; ACK for a non-2xx, section
//! 17.1.1.3), the source stamp of a received request's Via (18.2.1, RFC 3581), response
//! destinations (section 18.2.2, RFC 3581) and small helpers.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use rand::Rng;

use crate::sip::{HeaderName, Message, Via};
use crate::transport::{Host, Proto};

/// CANCEL for a forwarded INVITE (9.1): same Request-URI, Call-ID, From, To, CSeq number and
/// Route headers, one Via equal to the INVITE's (our branch), method CANCEL.
/// `fwd` is the forwarded INVITE without our Via; `via` is our Via value.
pub(crate) fn cancel(fwd: &Message, via: &str) -> Bytes {
    let to = fwd.header(HeaderName::To).unwrap_or("");
    hop_request(fwd, via, "CANCEL", to, None)
}

/// [`cancel`] with a `Reason` header (RFC 3326), e.g. "call completed elsewhere".
pub(crate) fn cancel_with_reason(fwd: &Message, via: &str, reason: &str) -> Bytes {
    let to = fwd.header(HeaderName::To).unwrap_or("");
    hop_request(fwd, via, "CANCEL", to, Some(reason))
}

/// ACK for a 300-699 response to a forwarded INVITE (17.1.1.3): the INVITE's Request-URI,
/// Call-ID, From, CSeq number and Route headers, the To of the response (with its tag),
/// one Via equal to the INVITE's.
pub(crate) fn ack(fwd: &Message, via: &str, resp: &Message) -> Bytes {
    let to = resp.header(HeaderName::To).or_else(|| fwd.header(HeaderName::To)).unwrap_or("");
    hop_request(fwd, via, "ACK", to, None)
}

fn hop_request(fwd: &Message, via: &str, method: &str, to: &str, reason: Option<&str>) -> Bytes {
    let ruri = fwd.request_uri().unwrap_or("");
    let seq = fwd.cseq().map(|c| c.seq).unwrap_or(0);
    let mut s = String::with_capacity(512);
    let _ = write!(s, "{method} {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n");
    for h in fwd.headers().filter(|h| h.name == HeaderName::Route) {
        let _ = write!(s, "Route: {}\r\n", h.value.trim());
    }
    if let Some(r) = reason {
        let _ = write!(s, "Reason: {r}\r\n");
    }
    let from = fwd.header(HeaderName::From).unwrap_or("");
    let call_id = fwd.header(HeaderName::CallId).unwrap_or("");
    let _ = write!(
        s,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n",
        from.trim(),
        to.trim(),
        call_id.trim()
    );
    Bytes::from(s)
}

/// The received request with its top Via stamped with where it came from, or `None` when it
/// needs no stamp (or cannot take one). RFC 3261 18.2.1: `received=IP` when the sent-by host
/// is a name or another address than the source; RFC 3581: a bare `rport` gets the source
/// port, and then `received` is added even when it matches. The stamp travels with the
/// request: responses the proxy makes copy the Via, relayed requests carry it downstream and
/// relayed responses bring it back, so a phone behind NAT learns its public address.
pub(crate) fn stamp_top_via(msg: &Message, src: SocketAddr) -> Option<Message> {
    let via = msg.top_via().ok()?;
    let bare_rport = via.rport == Some(None);
    let sent_by_is_src = literal_addr(via.host, 0).is_some_and(|a| a.ip() == src.ip());
    let add_received = via.received.is_none() && (bare_rport || !sent_by_is_src);
    msg.with_top_via_stamp(bare_rport.then_some(src.port()), add_received.then_some(src.ip()))
}

/// Where a response to a request received from `src` goes (18.2.2, RFC 3581): over TCP back
/// to the connection (the source address); over UDP to the source IP and, when the Via has
/// `rport`, the source port, else the Via port (default 5060).
pub(crate) fn reply_destination(via: Option<&Via<'_>>, proto: Proto, src: SocketAddr) -> SocketAddr {
    match (proto, via) {
        (Proto::Tcp, _) | (Proto::Udp, None) => src,
        (Proto::Udp, Some(v)) => {
            let port = if v.rport.is_some() { src.port() } else { v.port.unwrap_or(5060) };
            SocketAddr::new(src.ip(), port)
        }
    }
}

/// Where a response is forwarded statelessly (18.2.1/18.2.2, RFC 3581) given the Via below
/// ours: its `received` (or sent-by host) and its `rport` value (or sent-by port).
/// Returns the transport, the host (an IP literal or a name) and the port; `None` for an
/// unsupported transport.
pub(crate) fn via_destination(via: &Via<'_>) -> Option<(Proto, Host, u16)> {
    let proto = Proto::from_name(via.transport)?;
    let host = via.received.unwrap_or(via.host);
    let port = match via.rport {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(5060),
    };
    Some((proto, Host::from_uri_host(host), port))
}

/// An IP literal host ("10.0.0.1", "[::1]", "::1") with a port as a socket address.
pub(crate) fn literal_addr(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port))
}

/// Resolves a host (IP literal or name) to one socket address; names go through the
/// system resolver without blocking the runtime.
pub(crate) async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Some(a) = literal_addr(host, port) {
        return Some(a);
    }
    let mut addrs = tokio::net::lookup_host((host, port)).await.ok()?;
    addrs.next()
}

/// A fresh random tag (To tags of our responses), 16 hex digits.
pub(crate) fn random_tag() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// `<sip:...>` or bare URI: the URI inside.
pub(crate) fn strip_brackets(uri: &str) -> &str {
    let u = uri.trim();
    u.strip_prefix('<').and_then(|u| u.split_once('>')).map_or(u, |(inner, _)| inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.to_owned())).expect("valid")
    }

    const FWD: &str = "INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKup\r\n\
        Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nMax-Forwards: 69\r\n\
        From: <sip:a@x>;tag=f\r\nTo: <sip:b@x>\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\n\
        Content-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0";

    #[test]
    fn cancel_copies_the_invite_fields() {
        let c =
            msg(std::str::from_utf8(&cancel(&msg(FWD), "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKme")).expect("utf8"));
        assert_eq!(c.request_uri(), Some("sip:bob@10.0.0.2"));
        assert_eq!(c.vias().expect("vias").len(), 1);
        assert_eq!(c.top_via().expect("via").branch, Some("z9hG4bKme"));
        assert_eq!(c.routes().expect("routes").len(), 2);
        assert_eq!(c.cseq().expect("cseq").seq, 7);
        assert_eq!(c.cseq().expect("cseq").method, crate::sip::Method::Cancel);
        assert_eq!(c.from().expect("from").tag(), Some("f"));
        assert_eq!(c.to().expect("to").tag(), None);
        assert!(c.body().is_empty());
    }

    #[test]
    fn ack_takes_the_to_of_the_response() {
        let resp = msg("SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKme\r\n\
            From: <sip:a@x>;tag=f\r\nTo: <sip:b@x>;tag=t9\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n");
        let a =
            msg(std::str::from_utf8(&ack(&msg(FWD), "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKme", &resp))
                .expect("utf8"));
        assert_eq!(a.cseq().expect("cseq").method, crate::sip::Method::Ack);
        assert_eq!(a.to().expect("to").tag(), Some("t9"));
        assert_eq!(a.top_via().expect("via").branch, Some("z9hG4bKme"));
    }

    fn stamped(via: &str, src: &str) -> Option<String> {
        let req = format!(
            "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let msg = Message::parse(Bytes::from(req)).expect("request");
        let out = stamp_top_via(&msg, src.parse().expect("src"))?;
        Some(out.header(HeaderName::Via).expect("via").to_owned())
    }

    #[test]
    fn top_via_is_stamped_with_the_source() {
        // RFC 3581: a bare rport gets the port, and received is added even when it matches.
        assert_eq!(
            stamped("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKa", "10.0.0.5:40000").as_deref(),
            Some("SIP/2.0/UDP 10.0.0.5:5060;rport=40000;branch=z9hG4bKa;received=10.0.0.5")
        );
        assert_eq!(
            stamped("SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bKa;RPORT", "203.0.113.7:1024").as_deref(),
            Some("SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bKa;RPORT=1024;received=203.0.113.7")
        );
        // 18.2.1: a name, or another address, gets received; the second Via is untouched.
        assert_eq!(
            stamped(
                "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKa, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKb",
                "192.0.2.4:5060"
            )
            .as_deref(),
            Some(
                "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKa;received=192.0.2.4, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKb"
            )
        );
        assert_eq!(
            stamped("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKa", "[2001:db8::9]:5070").as_deref(),
            Some("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKa;received=2001:db8::9")
        );
        // Nothing to add: the sent-by is the source, no rport; or both are there already.
        assert_eq!(stamped("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa", "10.0.0.5:5060"), None);
        assert_eq!(stamped("SIP/2.0/UDP h.example;branch=z9hG4bKa;received=10.0.0.5;rport=4", "10.0.0.5:9"), None);
        // A stamped request still parses as the same transaction's request.
        let v = stamped("SIP/2.0/UDP 10.0.0.5;rport;branch=z9hG4bKa", "10.0.0.6:7").expect("stamped");
        let via = Via::parse(&v).expect("via");
        assert_eq!((via.branch, via.rport, via.received), (Some("z9hG4bKa"), Some(Some(7)), Some("10.0.0.6")));
    }

    #[test]
    fn response_destinations() {
        let src: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let with_rport = Via::parse("SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa;rport").expect("via");
        let without = Via::parse("SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa").expect("via");
        let no_port = Via::parse("SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKa").expect("via");
        assert_eq!(reply_destination(Some(&with_rport), Proto::Udp, src), src);
        assert_eq!(reply_destination(Some(&without), Proto::Udp, src), "192.0.2.7:5070".parse().expect("addr"));
        assert_eq!(reply_destination(Some(&no_port), Proto::Udp, src), "192.0.2.7:5060".parse().expect("addr"));
        assert_eq!(reply_destination(Some(&without), Proto::Tcp, src), src);

        let v = Via::parse("SIP/2.0/TCP host.example:5070;branch=z9hG4bKa;received=192.0.2.9;rport=4444").expect("via");
        assert_eq!(via_destination(&v), Some((Proto::Tcp, Host::Ip([192, 0, 2, 9].into()), 4444)));
        let v = Via::parse("SIP/2.0/UDP host.example;branch=z9hG4bKa").expect("via");
        assert_eq!(via_destination(&v), Some((Proto::Udp, Host::Name("host.example".into()), 5060)));
        let v = Via::parse("SIP/2.0/TLS host.example;branch=z9hG4bKa").expect("via");
        assert_eq!(via_destination(&v), None);
    }

    #[test]
    fn literals_and_brackets() {
        assert_eq!(literal_addr("[::1]", 5060), Some("[::1]:5060".parse().expect("addr")));
        assert_eq!(literal_addr("::1", 5), Some("[::1]:5".parse().expect("addr")));
        assert_eq!(literal_addr("10.0.0.1", 1), Some("10.0.0.1:1".parse().expect("addr")));
        assert_eq!(literal_addr("example.com", 1), None);
        assert_eq!(strip_brackets(" <sip:a@b;lr>;x=y"), "sip:a@b;lr");
        assert_eq!(strip_brackets("sip:a@b"), "sip:a@b");
        assert_ne!(random_tag(), random_tag());
        assert_eq!(random_tag().len(), 16);
    }
}
