//! Fuzzes `Uri::parse` and every accessor, and checks: each part is a slice of the input;
//! a URI rebuilt from its parts parses to the same parts; a URI that parses is a valid
//! `<uri>` in a name-addr; the Request-URI rules agree with `Message::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbox_fuzz::sip::{Bytes, Message, NameAddr, Uri};

fn within(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fn request(uri: &str) -> Bytes {
    Bytes::from(format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ))
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let parsed = Uri::parse(s);
    // A Request-URI the start line accepts is a URI, kept as written.
    if !s.contains(['\r', '\n'])
        && let Ok(m) = Message::parse(request(s))
    {
        assert_eq!(m.request_uri(), Some(s));
        assert!(parsed.is_ok(), "Message accepted a Request-URI that Uri::parse rejects");
    }
    let Ok(u) = parsed else { return };
    for part in [u.scheme, u.host, u.params, u.headers].into_iter().chain(u.user) {
        assert!(part.is_empty() || within(s, part), "{part:?} is not part of the input");
    }
    assert!(!u.host.is_empty() && !u.scheme.is_empty());
    assert!(u.params.is_empty() || u.params.starts_with(';'));
    let _ = (u.is_sip(), u.param("transport"), u.param("lr"), u.param("maddr"), u.param(""));
    for (name, value) in u.params.split(';').filter_map(|p| p.split_once('=')) {
        if !name.is_empty() && !name.contains([' ', '\t']) {
            let _ = (u.param(name), value);
        }
    }

    // Rebuilt from its parts, the URI parses to the same parts.
    let mut rebuilt = format!("{}:", u.scheme);
    if let Some(user) = u.user {
        rebuilt.push_str(user);
        rebuilt.push('@');
    }
    rebuilt.push_str(u.host);
    if let Some(p) = u.port {
        rebuilt.push_str(&format!(":{p}"));
    }
    rebuilt.push_str(u.params);
    if !u.headers.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(u.headers);
    }
    let again = Uri::parse(&rebuilt).unwrap_or_else(|e| panic!("rebuilt {rebuilt:?} does not parse: {e}"));
    assert_eq!(
        (again.scheme, again.user, again.host, again.port, again.params, again.headers),
        (u.scheme, u.user, u.host, u.port, u.params, u.headers),
        "rebuilt {rebuilt:?}"
    );

    // Any URI that parses can be written as <uri> in From/To/Contact/Route.
    let bracketed = format!("<{s}>");
    let na = NameAddr::parse(&bracketed).unwrap_or_else(|e| panic!("<{s}> is not a name-addr: {e}"));
    assert_eq!(na.uri, s);
    assert_eq!(na.parsed_uri().ok(), Some(u));
});
