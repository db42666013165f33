//! RFC 4475-style torture tests over `host/testdata/torture/{valid,invalid}/*.sip`, and a
//! deterministic mutation property test over the same corpus (no panic on any input).

use std::path::PathBuf;

use bytes::Bytes;

use super::*;

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/torture").join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "{kind} corpus too small");
    out
}

/// Calls every accessor, so lazily parsed views are exercised too.
fn touch_everything(m: &Message) {
    let _ = (m.method(), m.request_uri(), m.status(), m.reason(), m.body());
    for h in m.headers() {
        let _ = m.values_by_name(h.raw_name);
        let _ = m.header_by_name(h.raw_name);
    }
    let _ = (m.top_via(), m.vias(), m.from(), m.to(), m.call_id(), m.cseq());
    let _ = (m.contacts(), m.routes(), m.record_routes(), m.max_forwards(), m.expires(), m.content_length());
    if let Some(uri) = m.request_uri() {
        let _ = Uri::parse(uri);
    }
}

#[test]
fn valid_torture_messages_parse_and_round_trip() {
    for (name, raw) in corpus("valid") {
        let m = Message::parse(Bytes::from(raw.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
        touch_everything(&m);
        m.vias().unwrap_or_else(|e| panic!("{name}: {e}"));
        m.contacts().unwrap_or_else(|e| panic!("{name}: {e}"));
        m.routes().unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = serialize(&m, &Edits::default());
        if m.content_length().unwrap().is_some() {
            // Byte-exact; for dblreq the trailing second request is not part of the message.
            let n = frame_len(&raw).unwrap().unwrap_or_else(|| panic!("{name}: frame_len"));
            assert_eq!(&out[..], &raw[..n], "{name}: round trip");
        } else {
            assert_eq!(Message::parse(out).unwrap().body(), m.body(), "{name}");
        }
    }
}

#[test]
fn valid_torture_details() {
    let get = |n: &str| {
        let raw = corpus("valid").into_iter().find(|(f, _)| f == n).unwrap().1;
        Message::parse(Bytes::from(raw)).unwrap()
    };
    let m = get("wsinv.sip");
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().seq, 9);
    let vias = m.vias().unwrap();
    assert_eq!(
        vias.iter().map(|v| (v.transport, v.host, v.branch)).collect::<Vec<_>>(),
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    let Contacts::List(c) = m.contacts().unwrap() else { panic!() };
    assert_eq!(
        (c[0].uri, c[0].param("newparam"), c[0].param("q")),
        ("sip:jdrosen@example.com", Some(Some("newvalue")), Some(Some("0.33")))
    );
    assert_eq!(m.header_by_name("Subject"), Some(""));
    let m = get("intmeth.sip");
    assert_eq!(m.method().unwrap().as_str(), "!interesting-Method0123456789_*+`.%indeed'~");
    assert_eq!(m.from().unwrap().tag(), Some("_token~1'+`*%!-."));
    assert_eq!(Uri::parse(m.request_uri().unwrap()).unwrap().host, "example.com");
    let m = get("dblreq.sip");
    assert_eq!((m.method(), m.body()), (Some(&Method::Register), &b""[..]));
    let m = get("transports.sip");
    assert_eq!(
        m.vias().unwrap().iter().map(|v| v.transport).collect::<Vec<_>>(),
        ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    );
    let m = get("mpart01.sip");
    assert!(m.body().contains(&0xff) && m.body().len() == m.content_length().unwrap().unwrap());
    let m = get("noreason.sip");
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
    let m = get("esc02.sip");
    assert_eq!(m.values(HeaderName::Contact).len(), 2, "C%6Fntact is another header");
    let m = get("ipv6.sip");
    assert_eq!((m.top_via().unwrap().host, m.top_via().unwrap().port), ("[2001:db8::9:1]", Some(5070)));
}

#[test]
fn invalid_torture_messages_are_rejected() {
    for (name, raw) in corpus("invalid") {
        let res = Message::parse(Bytes::from(raw.clone()));
        assert!(res.is_err(), "{name} should be rejected, parsed as {res:?}");
        let _ = reply_to_malformed(&raw, &res.unwrap_err().to_string());
        let _ = frame_len(&raw);
    }
}

/// xorshift64*: deterministic, dependency-free pseudo-randomness for the mutation test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING: &[u8] = b":;,\"<>\\\r\n \t0=@?[]%/\x00\xff\xc3";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                let chunk: Vec<u8> = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            4 => v.truncate(at),
            5 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            _ => {}
        }
    }
    v
}

/// ~20k mutated messages: parsing never panics, and whatever parses re-serialises to bytes
/// that parse again with the same body (serialize is a fixpoint of parse).
#[test]
fn mutated_corpus_never_panics() {
    let mut seeds: Vec<Vec<u8>> = corpus("valid").into_iter().map(|(_, r)| r).collect();
    seeds.extend(corpus("invalid").into_iter().map(|(_, r)| r));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for case in 0..20_000 {
        let seed = &seeds[case % seeds.len()];
        let input = mutate(&mut rng, seed);
        let _ = frame_len(&input);
        let _ = reply_to_malformed(&input, "x");
        match Message::parse(Bytes::from(input.clone())) {
            Ok(m) => {
                parsed += 1;
                touch_everything(&m);
                let out = serialize(&m, &Edits::default());
                let again = Message::parse(out.clone())
                    .unwrap_or_else(|e| panic!("case {case}: reparse failed: {e}\n{input:?}"));
                assert_eq!(again.body(), m.body(), "case {case}");
                assert_eq!(serialize(&again, &Edits::default()), out, "case {case}: not a fixpoint");
                let mut e = Edits::default();
                e.pop_first_value(HeaderName::Route);
                e.pop_first_value(HeaderName::Via);
                e.prepend("Via", "SIP/2.0/UDP p;branch=z9hG4bK1");
                e.set(HeaderName::MaxForwards, "1");
                let _ = response(&m, 404, "Not Found", Some("t"), &[], None);
                Message::parse(serialize(&m, &e))
                    .unwrap_or_else(|err| panic!("case {case}: edited reparse: {err}\n{input:?}"));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    assert!(parsed > 2_000, "mutations too destructive to be useful: {parsed} parsed");
}
