//! Typed views of header values, parsed on demand and borrowing the message:
//! [`Via`], [`NameAddr`] (From, To, Contact, Route, Record-Route), [`Uri`], [`CSeq`],
//! [`Contacts`]. Whitespace inside values may include the CRLF of folded lines.

use super::header::{self, check_params, find_param, is_lws, is_token, quoted_end, trim_lws};
use super::{Method, ParseError};

/// A decimal number that fits `u32` (leading zeros allowed, nothing else).
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, b| acc.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

/// Like [`parse_u32`] but saturating at `u32::MAX` for longer numbers.
pub(crate) fn parse_u32_saturating(s: &str) -> Option<u32> {
    let t = trim_lws(s);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(parse_u32(t).unwrap_or(u32::MAX))
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// Splits `host[:port]` off the front of `s`: returns host, port and the rest.
/// An IPv6 reference keeps its brackets. `lws` allows whitespace around the colon (Via sent-by).
fn host_port<'a>(s: &'a str, lws: bool, what: &'static str) -> Result<(&'a str, Option<u16>, &'a str), ParseError> {
    let bad = |reason| if what == "URI" { ParseError::Uri(reason) } else { ParseError::bad(what, reason) };
    let host_len = if s.starts_with('[') {
        let close = s.find(']').ok_or(bad("unterminated IPv6 reference"))?;
        let inner = s.get(1..close).unwrap_or("");
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(bad("malformed IPv6 reference"));
        }
        close + 1
    } else {
        s.bytes().take_while(|&b| is_host_byte(b)).count()
    };
    let (host, mut rest) = s.split_at(host_len);
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if lws {
        rest = rest.trim_start_matches(is_lws);
    }
    let mut port = None;
    if let Some(after) = rest.strip_prefix(':') {
        let after = if lws { after.trim_start_matches(is_lws) } else { after };
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (num, r) = after.split_at(digits);
        port = Some(num.parse::<u16>().map_err(|_| bad("malformed port"))?);
        rest = r;
    }
    Ok((host, port, rest))
}

/// One Via value (RFC 3261 section 20.42): `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport as written ("UDP", "tcp", or an unknown token).
    pub transport: &'a str,
    /// sent-by host (IPv6 references keep their brackets).
    pub host: &'a str,
    /// sent-by port, if present.
    pub port: Option<u16>,
    /// The `branch` parameter.
    pub branch: Option<&'a str>,
    /// The `received` parameter.
    pub received: Option<&'a str>,
    /// `rport`: `None` absent, `Some(None)` bare `;rport`, `Some(Some(p))` with a value.
    pub rport: Option<Option<u16>>,
    /// All parameters, starting at the first `;` (empty if none).
    pub params: &'a str,
}

impl<'a> Via<'a> {
    /// Parses one Via value (already split from a comma list).
    ///
    /// # Errors
    /// [`ParseError::BadHeader`] for a protocol other than SIP/2.0, a missing transport
    /// or host, a bad port or malformed parameters.
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        let bad = |reason| ParseError::bad("Via", reason);
        let s = trim_lws(s);
        let (name, rest) = s.split_once('/').ok_or(bad("missing protocol"))?;
        let (version, rest) = rest.split_once('/').ok_or(bad("missing protocol version"))?;
        if !trim_lws(name).eq_ignore_ascii_case("SIP") || trim_lws(version) != "2.0" {
            return Err(bad("protocol is not SIP/2.0"));
        }
        let rest = rest.trim_start_matches(is_lws);
        let tlen = rest.bytes().take_while(|&b| header::is_token_byte(b)).count();
        let (transport, rest) = rest.split_at(tlen);
        if transport.is_empty() {
            return Err(bad("missing transport"));
        }
        let rest = rest.trim_start_matches(is_lws);
        let (host, port, rest) = host_port(rest, true, "Via")?;
        let params = trim_lws(rest);
        check_params(params, "Via")?;
        let rport = match find_param(params, "rport") {
            None => None,
            Some(None) => Some(None),
            Some(Some(v)) => Some(Some(v.parse::<u16>().map_err(|_| bad("malformed rport"))?)),
        };
        Ok(Via {
            transport,
            host,
            port,
            branch: find_param(params, "branch").flatten(),
            received: find_param(params, "received").flatten(),
            rport,
            params,
        })
    }

    /// A parameter by case-insensitive name: `Some(None)` for a parameter without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name: the text inside the quotes (escapes kept), or the unquoted tokens.
    pub display: Option<&'a str>,
    /// The URI (without angle brackets).
    pub uri: &'a str,
    /// Header parameters, starting at the first `;` (empty if none).
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses `["display"] <uri> *(;param)` or `uri *(;param)`.
    ///
    /// # Errors
    /// [`ParseError::BadHeader`] (reported against "name-addr"): unterminated quotes,
    /// a display name that is not tokens, whitespace inside `<...>`, no scheme, or
    /// malformed parameters.
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ParseError> {
        NameAddr::parse_header(s, "name-addr")
    }

    pub(crate) fn parse_header(s: &'a str, header: &'static str) -> Result<NameAddr<'a>, ParseError> {
        let bad = |reason| ParseError::bad(header, reason);
        let s = trim_lws(s);
        let (display, rest) = if s.starts_with('"') {
            let end = quoted_end(s).ok_or(bad("unterminated quoted string"))?;
            let rest = s.get(end..).unwrap_or("").trim_start_matches(is_lws);
            if !rest.starts_with('<') {
                return Err(bad("display name not followed by <URI>"));
            }
            (s.get(1..end - 1), rest)
        } else if let Some(lt) = s.find('<') {
            let (d, rest) = s.split_at(lt);
            let d = trim_lws(d);
            if !d.split(is_lws).all(|w| w.is_empty() || is_token(w)) {
                return Err(bad("display name is neither a quoted string nor tokens"));
            }
            ((!d.is_empty()).then_some(d), rest)
        } else {
            // addr-spec: parameters after the first ';' belong to the header (RFC 3261 section 20).
            let (uri, params) = match s.find(';') {
                Some(i) => s.split_at(i),
                None => (s, ""),
            };
            let uri = trim_lws(uri);
            if uri.contains(|c: char| is_lws(c) || c == '?' || c == ',' || c == '>' || c == '"') {
                return Err(bad("URI with reserved characters must be enclosed in <>"));
            }
            check_scheme(uri).map_err(|_| bad("URI has no scheme"))?;
            check_params(params, header)?;
            return Ok(NameAddr { display: None, uri, params: trim_lws(params) });
        };
        let inner = rest.strip_prefix('<').ok_or(bad("missing <"))?;
        let gt = inner.find('>').ok_or(bad("missing >"))?;
        let (uri, after) = inner.split_at(gt);
        if uri.is_empty() || uri.contains(|c: char| is_lws(c) || c == '<' || c == '"') {
            return Err(bad("empty URI or whitespace inside <>"));
        }
        check_scheme(uri).map_err(|_| bad("URI has no scheme"))?;
        let params = trim_lws(after.get(1..).unwrap_or(""));
        check_params(params, header)?;
        Ok(NameAddr { display, uri, params })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        find_param(self.params, "tag").flatten()
    }

    /// A header parameter by case-insensitive name: `Some(None)` for one without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// The URI, parsed.
    pub fn parsed_uri(&self) -> Result<Uri<'a>, ParseError> {
        Uri::parse(self.uri)
    }
}

/// The Contact header(s) of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// `Contact: *` (REGISTER removing every binding).
    Star,
    /// Every contact, in message order (empty if there is no Contact header).
    List(Vec<NameAddr<'a>>),
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number (RFC 3261: less than 2^31 when generated; any u32 accepted).
    pub seq: u32,
    /// The method.
    pub method: Method,
    /// The method as written.
    pub method_str: &'a str,
}

impl<'a> CSeq<'a> {
    /// Parses `number LWS method`.
    ///
    /// # Errors
    /// [`ParseError::BadHeader`] unless the value is a 32-bit number and a method token.
    pub fn parse(s: &'a str) -> Result<CSeq<'a>, ParseError> {
        let mut parts = trim_lws(s).split(is_lws).filter(|p| !p.is_empty());
        let (Some(num), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::bad("CSeq", "expected a number and a method"));
        };
        let seq = parse_u32(num).ok_or(ParseError::bad("CSeq", "sequence number is not a 32-bit number"))?;
        if !is_token(method) {
            return Err(ParseError::bad("CSeq", "method is not a token"));
        }
        Ok(CSeq { seq, method: Method::from_token(method), method_str: method })
    }
}

/// A URI split into its parts. `sip:`/`sips:` URIs are parsed per RFC 3261 section 19.1;
/// other schemes keep their opaque part in `host` (and `;params`/`?headers` if present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    /// Scheme as written ("sip", "SIPS", "tel", ...).
    pub scheme: &'a str,
    /// User part (escapes kept, password dropped).
    pub user: Option<&'a str>,
    /// Host (IPv6 references keep brackets).
    pub host: &'a str,
    /// Port, if present.
    pub port: Option<u16>,
    /// URI parameters, starting at the first `;` (empty if none).
    pub params: &'a str,
    /// URI headers after `?`, without the `?` (empty if none).
    pub headers: &'a str,
}

fn check_scheme(uri: &str) -> Result<(&str, &str), ParseError> {
    let (scheme, rest) = uri.split_once(':').ok_or(ParseError::Uri("no scheme"))?;
    let mut bytes = scheme.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !ok {
        return Err(ParseError::Uri("malformed scheme"));
    }
    Ok((scheme, rest))
}

impl<'a> Uri<'a> {
    /// Parses a URI.
    ///
    /// # Errors
    /// [`ParseError::Uri`]: no or malformed scheme, whitespace or `<>"` characters,
    /// an empty user or host, or a malformed port.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ParseError> {
        let (scheme, rest) = check_scheme(s)?;
        if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f || b"<>\"".contains(&b)) {
            return Err(ParseError::Uri("empty, or contains whitespace, controls or <>\""));
        }
        let sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
        let (user, hostpart) = match rest.find('@') {
            Some(at) if sip => {
                let userinfo = rest.get(..at).unwrap_or("");
                let user = userinfo.split(':').next().unwrap_or("");
                if user.is_empty() {
                    return Err(ParseError::Uri("empty user part"));
                }
                (Some(user), rest.get(at + 1..).unwrap_or(""))
            }
            _ => (None, rest),
        };
        let (host, port, tail) = if sip {
            host_port(hostpart, false, "URI")?
        } else {
            let end = hostpart.find([';', '?']).unwrap_or(hostpart.len());
            let (h, t) = hostpart.split_at(end);
            (h, None, t)
        };
        let (params, headers) = match tail.split_once('?') {
            Some((p, h)) => (p, h),
            None => (tail, ""),
        };
        if !params.is_empty() && !params.starts_with(';') {
            return Err(ParseError::Uri("unexpected characters after host"));
        }
        if host.is_empty() {
            return Err(ParseError::Uri("missing host"));
        }
        Ok(Uri { scheme, user, host, port, params, headers })
    }

    /// A URI parameter by case-insensitive name: `Some(None)` for one without value (`;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Whether the scheme is `sip` or `sips`.
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }
}

/// The Request-URI rules of [`Message::parse`](super::Message::parse): an absolute URI with no
/// whitespace or `<>`; a SIP URI must parse and carry no `?headers` (RFC 3261 section 19.1.5).
pub(crate) fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    if uri.is_empty() {
        return Err(ParseError::RequestUri("empty"));
    }
    if uri.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>') {
        return Err(ParseError::RequestUri("contains whitespace, controls or <>"));
    }
    check_scheme(uri).map_err(|_| ParseError::RequestUri("no valid scheme"))?;
    let parsed = Uri::parse(uri).map_err(|_| ParseError::RequestUri("malformed URI"))?;
    if parsed.is_sip() && !parsed.headers.is_empty() {
        return Err(ParseError::RequestUri("SIP Request-URI with headers"));
    }
    Ok(())
}
