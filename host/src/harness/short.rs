//! Requests a step sends: full SIP text (line ends normalised to CRLF,
//! Content-Length filled in when missing), or a short form that expands to
//! a complete, valid request:
//!
//! ```text
//! INVITE sip:bob@local from alice
//! MESSAGE sip:bob@local from sip:alice@example.com
//! REGISTER sip:bob@local contact sip:bob@192.0.2.20:5060 expires 600
//! OPTIONS sip:local from monitor to sip:local
//! ```
//!
//! `from USER` makes `sip:USER@<domain of the Request-URI>`; the caller
//! sends from an address of its own (one per name, `198.51.100.N:5060`)
//! unless the step gives `source`. A REGISTER goes to its AOR's domain
//! (`REGISTER sip:local`), is sent from its Contact's address, and is from
//! and to the AOR.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, bail};

use crate::sip::{self, Uri};

/// What a step gives beside the request line.
pub struct Extras<'a> {
    /// Header fields added.
    pub headers: &'a BTreeMap<String, String>,
    /// The body.
    pub body: Option<&'a str>,
}

/// A request ready to hand to the proxy, and who sends it.
#[derive(Debug)]
pub struct Outgoing {
    /// The request.
    pub msg: sip::Message,
    /// The caller's name (the `from` user, or the AOR's for a REGISTER).
    pub caller: String,
    /// Where it comes from, unless the caller's own address is to be used.
    pub source: Option<SocketAddr>,
}

/// Builds the request of a `send` step; `address_of` gives a caller's address.
pub fn build(
    text: &str,
    extras: &Extras<'_>,
    seq: u64,
    address_of: &mut dyn FnMut(&str) -> SocketAddr,
) -> anyhow::Result<Outgoing> {
    let first = text.trim_start().lines().next().unwrap_or("");
    if first.trim_end().ends_with("SIP/2.0") {
        if !extras.headers.is_empty() || extras.body.is_some() {
            bail!("headers and body go into the SIP text of a full request");
        }
        return full(text);
    }
    short(text, extras, seq, address_of)
}

fn full(text: &str) -> anyhow::Result<Outgoing> {
    let text = text.trim_start();
    let (head, body) = match text.find("\n\n").or_else(|| text.find("\r\n\r\n")) {
        Some(i) => (&text[..i], text[i..].trim_start_matches(['\r', '\n'])),
        None => (text.trim_end(), ""),
    };
    let mut out = String::with_capacity(text.len() + 32);
    for line in head.lines() {
        out.push_str(line.trim_end_matches('\r'));
        out.push_str("\r\n");
    }
    let has_length = head.lines().any(|l| {
        let name = l.split(':').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("content-length") || name == "l"
    });
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let msg =
        sip::Message::parse(out.clone().into()).map_err(|e| anyhow::anyhow!("the SIP text does not parse: {e}"))?;
    anyhow::ensure!(msg.is_request(), "a step sends requests; this is a response");
    let via = msg.top_via().map_err(|e| anyhow::anyhow!("the request's Via: {e}"))?;
    let source = format!("{}:{}", via.host, via.port.unwrap_or(5060)).parse::<SocketAddr>().ok();
    let caller = msg
        .from()
        .ok()
        .and_then(|f| f.parsed_uri().ok().and_then(|u| u.user.map(str::to_owned)))
        .unwrap_or_else(|| "caller".to_owned());
    Ok(Outgoing { msg, caller, source })
}

fn short(
    text: &str,
    extras: &Extras<'_>,
    seq: u64,
    address_of: &mut dyn FnMut(&str) -> SocketAddr,
) -> anyhow::Result<Outgoing> {
    let mut words = text.split_whitespace();
    let method = words.next().context("an empty request")?;
    let method_is_token = method.bytes().all(|b| b.is_ascii_uppercase());
    anyhow::ensure!(method_is_token, "{method:?} is not a SIP method (INVITE, REGISTER, MESSAGE...)");
    let ruri = words.next().with_context(|| format!("{method} needs a Request-URI: {method} sip:bob@local"))?;
    let parsed = Uri::parse(ruri).map_err(|e| anyhow::anyhow!("Request-URI {ruri:?}: {e}"))?;
    let domain = match parsed.port {
        Some(port) => format!("{}:{port}", parsed.host),
        None => parsed.host.to_owned(),
    };
    let (mut from, mut to, mut contact, mut expires) = (None, None, None, None);
    while let Some(word) = words.next() {
        let mut value = || words.next().with_context(|| format!("{word:?} needs a value"));
        match word {
            "from" => from = Some(value()?.to_owned()),
            "to" => to = Some(value()?.to_owned()),
            "contact" => contact = Some(value()?.to_owned()),
            "expires" => {
                let v = value()?;
                expires = Some(v.parse::<u32>().with_context(|| format!("expires {v:?} is not a number"))?);
            }
            other => bail!("cannot read {other:?}: use from USER, to URI, contact URI, expires N"),
        }
    }
    let is_register = method == "REGISTER";
    let uri_of = |who: &str| if who.contains(':') { who.to_owned() } else { format!("sip:{who}@{domain}") };
    let (request_uri, from_uri, to_uri) = if is_register {
        // RFC 3261 10.2: the Request-URI names the domain, To the AOR.
        let aor = to.clone().unwrap_or_else(|| ruri.to_owned());
        let from_uri = from.as_deref().map_or_else(|| aor.clone(), uri_of);
        (format!("sip:{domain}"), from_uri, aor)
    } else {
        let from_uri = uri_of(from.as_deref().unwrap_or("caller"));
        (ruri.to_owned(), from_uri, to.clone().unwrap_or_else(|| ruri.to_owned()))
    };
    let caller = Uri::parse(&from_uri).ok().and_then(|u| u.user.map(str::to_owned)).unwrap_or_else(|| "caller".into());
    let source = match (&contact, is_register) {
        // A device registers from where it is reached.
        (Some(c), true) => {
            Uri::parse(c).ok().and_then(|u| format!("{}:{}", u.host, u.port.unwrap_or(5060)).parse::<SocketAddr>().ok())
        }
        _ => None,
    };
    let sender = source.unwrap_or_else(|| address_of(&caller));
    let contact = contact.unwrap_or_else(|| format!("sip:{caller}@{sender}"));
    let body = extras.body.unwrap_or("");
    let mut out = format!(
        "{method} {request_uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sender};branch=z9hG4bK-h{seq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from_uri}>;tag=h{seq}\r\n\
         To: <{to_uri}>\r\n\
         Call-ID: h{seq}-{caller}@harness\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <{contact}>\r\n"
    );
    if let Some(expires) = expires {
        out.push_str(&format!("Expires: {expires}\r\n"));
    }
    for (name, value) in extras.headers {
        anyhow::ensure!(
            !name.contains([':', '\r', '\n']) && !value.contains(['\r', '\n']),
            "header {name:?} must be a single name and a one-line value"
        );
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() && !extras.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let msg = sip::Message::parse(out.into()).map_err(|e| anyhow::anyhow!("the request does not parse: {e}"))?;
    Ok(Outgoing { msg, caller, source: Some(sender) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Method;

    fn expand(text: &str) -> Outgoing {
        let headers = BTreeMap::new();
        let mut next = 10u8;
        let mut address_of = |_: &str| {
            next += 1;
            SocketAddr::from(([198, 51, 100, next], 5060))
        };
        build(text, &Extras { headers: &headers, body: None }, 1, &mut address_of).unwrap()
    }

    #[test]
    fn an_invite_short_form_is_a_complete_request() {
        let out = expand("INVITE sip:bob@local from alice");
        assert_eq!(out.msg.method(), Some(&Method::Invite));
        assert_eq!(out.msg.request_uri(), Some("sip:bob@local"));
        assert_eq!(out.msg.from().unwrap().uri, "sip:alice@local");
        assert_eq!(out.caller, "alice");
        assert_eq!(out.source, Some("198.51.100.11:5060".parse().unwrap()));
        assert!(out.msg.top_via().unwrap().branch.unwrap().starts_with("z9hG4bK"));
    }

    #[test]
    fn a_register_goes_to_the_domain_from_its_contact() {
        let out = expand("REGISTER sip:bob@local contact sip:bob@192.0.2.20:5062 expires 600");
        assert_eq!(out.msg.request_uri(), Some("sip:local"));
        assert_eq!(out.msg.to().unwrap().uri, "sip:bob@local");
        assert_eq!(out.msg.expires().unwrap(), Some(600));
        assert_eq!(out.source, Some("192.0.2.20:5062".parse().unwrap()));
    }

    #[test]
    fn full_text_gets_crlf_and_a_length() {
        let text = "OPTIONS sip:local SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.9:5070;branch=z9hG4bK1\n\
                    From: <sip:mon@local>;tag=1\nTo: <sip:local>\nCall-ID: c1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n";
        let out = expand(text);
        assert_eq!(out.msg.content_length().unwrap(), Some(0));
        assert_eq!(out.source, Some("198.51.100.9:5070".parse().unwrap()));
        assert_eq!(out.caller, "mon");
    }

    #[test]
    fn bad_short_forms_say_why() {
        let headers = BTreeMap::new();
        let mut address_of = |_: &str| SocketAddr::from(([198, 51, 100, 1], 5060));
        let mut err = |t: &str| {
            let extras = Extras { headers: &headers, body: None };
            format!("{:#}", build(t, &extras, 1, &mut address_of).unwrap_err())
        };
        assert!(err("invite sip:bob@local").contains("not a SIP method"));
        assert!(err("INVITE").contains("needs a Request-URI"));
        assert!(err("INVITE sip:bob@local with love").contains("\"with\""));
        assert!(err("REGISTER sip:bob@local expires soon").contains("not a number"));
    }
}
