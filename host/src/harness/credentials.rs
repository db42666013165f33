//! A caller answering a digest challenge (`credentials = "user:password"` on
//! a step): the 401/407 is answered by the same request again, with a new
//! branch, the next CSeq and `Authorization` / `Proxy-Authorization`
//! computed as RFC 7616 says (the first challenge of an algorithm the caller
//! knows: SHA-512-256, SHA-256 or MD5; `qop=auth`).

use crate::auth::digest::{Algorithm, Credentials, digest_params};
use crate::sip::{self, Bytes};

/// `req` again, answering the challenge in `resp`, as attempt `attempt`.
pub(crate) fn answer(
    req: &sip::Message,
    resp: &sip::Message,
    user: &str,
    password: &str,
    attempt: u32,
) -> Result<sip::Message, String> {
    let (challenge_header, credentials_header) = match resp.status() {
        Some(401) => ("WWW-Authenticate", "Authorization"),
        Some(407) => ("Proxy-Authenticate", "Proxy-Authorization"),
        other => return Err(format!("{other:?} is no challenge")),
    };
    let (algorithm, params) = resp
        .values_by_name(challenge_header)
        .into_iter()
        .filter_map(|value| digest_params(value).ok())
        .find_map(|params| {
            let algorithm = params.iter().find(|(n, _)| n.eq_ignore_ascii_case("algorithm")).map_or("MD5", |(_, v)| v);
            algorithm.parse::<Algorithm>().ok().map(|a| (a, params))
        })
        .ok_or_else(|| {
            format!("the {} has no {challenge_header} with a known algorithm", resp.status().unwrap_or(0))
        })?;
    let param = |name: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v);
    let uri = req.request_uri().ok_or("the challenged message is no request")?;
    let method = req.method().map_or("", sip::Method::as_str);
    let cnonce = format!("harness{attempt}");
    let c = Credentials {
        username: user,
        realm: param("realm"),
        nonce: param("nonce"),
        uri,
        response: "",
        algorithm: Some(algorithm.token()),
        cnonce: &cnonce,
        nc: "00000001",
        qop: "auth",
        opaque: None,
    };
    let ha1 = algorithm.ha1(user, c.realm, password);
    let response = algorithm.response(&ha1, method, &c);
    let opaque = match param("opaque") {
        "" => String::new(),
        o => format!(", opaque=\"{o}\""),
    };
    let value = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", \
         algorithm={algorithm}, cnonce=\"{cnonce}\", qop=auth, nc=00000001{opaque}",
        c.realm, c.nonce
    );
    resend(req, credentials_header, &value, attempt)
}

/// The request's text with a fresh branch, CSeq + 1 and the credentials
/// header after the request line (an older one of that name dropped).
fn resend(req: &sip::Message, name: &str, value: &str, attempt: u32) -> Result<sip::Message, String> {
    let text = std::str::from_utf8(req.raw()).map_err(|_| "the request is not UTF-8")?;
    let branch = req.top_via().ok().and_then(|v| v.param("branch").flatten()).ok_or("the request has no branch")?;
    let cseq = req.cseq().map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len() + value.len() + 64);
    let mut lines = text.split("\r\n");
    out.push_str(lines.next().unwrap_or_default());
    out.push_str(&format!("\r\n{name}: {value}"));
    let mut in_body = false;
    for line in lines {
        out.push_str("\r\n");
        if in_body {
            out.push_str(line);
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if line.is_empty() {
            in_body = true;
        } else if lower.starts_with(&format!("{}:", name.to_ascii_lowercase())) {
            out.truncate(out.len() - 2);
            continue;
        } else if lower.starts_with("cseq:") {
            out.push_str(&format!("CSeq: {} {}", cseq.seq + 1, cseq.method.as_str()));
            continue;
        } else if lower.starts_with("via:") || lower.starts_with("v:") {
            out.push_str(&line.replacen(branch, &format!("{branch}-auth{attempt}"), 1));
            continue;
        }
        out.push_str(line);
    }
    sip::Message::parse(Bytes::from(out)).map_err(|e| format!("the answered request does not parse: {e}"))
}
