//! Header names (full and compact forms), [`Method`], and the lexical helpers every
//! typed view shares: token characters, top-level comma splitting and `;name=value`
//! parameter iteration (both aware of quoted strings and `<...>`).

use std::fmt;

/// Headers the proxy core interprets. Everything else is [`HeaderName::Other`] and is
/// matched by its textual name (see [`Message::header_by_name`](super::Message::header_by_name)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// `Via` / `v`.
    Via,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Call-ID` / `i`.
    CallId,
    /// `CSeq`.
    CSeq,
    /// `Contact` / `m`.
    Contact,
    /// `Route`.
    Route,
    /// `Record-Route`.
    RecordRoute,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Expires`.
    Expires,
    /// `Content-Length` / `l`.
    ContentLength,
    /// `Content-Type` / `c`.
    ContentType,
    /// `Min-Expires`.
    MinExpires,
    /// Any other header.
    Other,
}

/// Number of [`HeaderName`] variants (for per-name lookup tables).
pub(crate) const NAME_COUNT: usize = 14;

/// Compact forms (RFC 3261 section 7.3.3 and the extensions that registered one).
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

const KNOWN: &[(HeaderName, &str)] = &[
    (HeaderName::Via, "Via"),
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::Contact, "Contact"),
    (HeaderName::Route, "Route"),
    (HeaderName::RecordRoute, "Record-Route"),
    (HeaderName::MaxForwards, "Max-Forwards"),
    (HeaderName::Expires, "Expires"),
    (HeaderName::ContentLength, "Content-Length"),
    (HeaderName::ContentType, "Content-Type"),
    (HeaderName::MinExpires, "Min-Expires"),
];

/// Headers whose grammar is a comma-separated list (`#element`), so that
/// [`Message::values`](super::Message::values) splits them. Headers not listed (including
/// unknown ones, and the auth headers whose parameters contain commas) are one value per line.
const LIST_HEADERS: &[&str] = &[
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "Path",
    "Service-Route",
    "Allow",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Call-Info",
    "Error-Info",
    "Content-Encoding",
    "Content-Language",
    "In-Reply-To",
    "Warning",
    "Allow-Events",
    "Accept-Contact",
    "Reject-Contact",
    "Request-Disposition",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "History-Info",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "Reason",
    "Diversion",
    "P-Associated-URI",
    "Accept-Resource-Priority",
    "Resource-Priority",
];

impl HeaderName {
    /// Classifies a header name: case-insensitive, compact forms accepted (`v`, `f`, `t`,
    /// `i`, `m`, `l`, `c`; other compact forms map to the header they abbreviate, which
    /// is [`HeaderName::Other`]).
    pub fn from_name(name: &str) -> HeaderName {
        let full = expand_compact(name);
        KNOWN.iter().find(|(_, n)| n.eq_ignore_ascii_case(full)).map_or(HeaderName::Other, |(h, _)| *h)
    }

    /// The canonical full name ("Call-ID"); `""` for [`HeaderName::Other`].
    pub fn as_str(self) -> &'static str {
        KNOWN.iter().find(|(h, _)| *h == self).map_or("", |(_, n)| n)
    }

    /// Whether the header's grammar is a comma-separated list.
    pub fn is_list(self) -> bool {
        matches!(self, HeaderName::Via | HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The full name for a one-letter compact form, otherwise `name` itself.
pub(crate) fn expand_compact(name: &str) -> &str {
    match name.as_bytes() {
        [c] => {
            let c = c.to_ascii_lowercase();
            COMPACT.iter().find(|(k, _)| *k == c).map_or(name, |(_, full)| full)
        }
        _ => name,
    }
}

/// Whether two header names denote the same header (case-insensitive, compact forms expanded).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Whether the header named `name` is a comma-separated list.
pub(crate) fn is_list_name(name: &str) -> bool {
    let full = expand_compact(name);
    LIST_HEADERS.iter().any(|n| n.eq_ignore_ascii_case(full))
}

/// One header line as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Classified name.
    pub name: HeaderName,
    /// The name as written (may be a compact form, any case).
    pub raw_name: &'a str,
    /// The whole value, trimmed; a folded value keeps its inner line breaks.
    pub value: &'a str,
}

/// A request method. Methods are case-sensitive (RFC 3261 section 7.1); unknown
/// methods are kept as [`Method::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(missing_docs, reason = "variants are the method names")]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Bye,
    Register,
    Options,
    Subscribe,
    Notify,
    Refer,
    Info,
    Update,
    Prack,
    Message,
    Publish,
    Other(String),
}

const METHODS: &[(&str, Method)] = &[
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("CANCEL", Method::Cancel),
    ("BYE", Method::Bye),
    ("REGISTER", Method::Register),
    ("OPTIONS", Method::Options),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("REFER", Method::Refer),
    ("INFO", Method::Info),
    ("UPDATE", Method::Update),
    ("PRACK", Method::Prack),
    ("MESSAGE", Method::Message),
    ("PUBLISH", Method::Publish),
];

impl Method {
    /// The method for a token (not validated: callers check [`is_token`] first).
    pub fn from_token(s: &str) -> Method {
        METHODS.iter().find(|(n, _)| *n == s).map_or_else(|| Method::Other(s.to_string()), |(_, m)| m.clone())
    }

    /// The method name as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => METHODS.iter().find(|(_, m)| m == known).map_or("", |(n, _)| n),
        }
    }
}

impl From<&str> for Method {
    fn from(s: &str) -> Method {
        Method::from_token(s)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whether `s` is a non-empty RFC 3261 `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Linear whitespace as it may appear inside a (possibly folded) value.
pub(crate) fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Trims linear whitespace (including the CRLF of folded lines).
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(is_lws)
}

/// Splits `s` at every `sep` byte that is outside double quotes and outside `<...>`.
/// Pieces are returned untrimmed; a quoted-pair (`\"`) does not end a quoted string.
pub(crate) fn split_top_level(s: &str, sep: u8) -> SplitTopLevel<'_> {
    SplitTopLevel { s, pos: 0, done: false, sep }
}

/// Iterator returned by [`split_top_level`].
pub(crate) struct SplitTopLevel<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
    sep: u8,
}

impl<'a> Iterator for SplitTopLevel<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let (mut quoted, mut angle, mut i) = (false, false, start);
        while let Some(&b) = bytes.get(i) {
            match b {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                _ if b == self.sep && !quoted && !angle => {
                    self.pos = i + 1;
                    return self.s.get(start..i);
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        self.s.get(start..)
    }
}

/// Splits a list header value into its trimmed elements, dropping empty ones
/// (RFC 3261 section 7.3.1 allows `a,,b`; the null elements carry nothing).
pub(crate) fn list_values(value: &str) -> impl Iterator<Item = &str> {
    split_top_level(value, b',').map(trim_lws).filter(|v| !v.is_empty())
}

/// Iterates the `;name[=value]` parameters of `params` (text starting at the first `;`,
/// or empty), trimmed, with quotes kept on quoted values. Empty pieces are skipped here;
/// [`check_params`] rejects them where the grammar forbids them.
pub(crate) fn iter_params(params: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    split_top_level(params, b';').filter_map(|piece| {
        let piece = trim_lws(piece);
        if piece.is_empty() {
            return None;
        }
        Some(match piece.split_once('=') {
            Some((n, v)) => (trim_lws(n), Some(trim_lws(v))),
            None => (piece, None),
        })
    })
}

/// Looks a parameter up by case-insensitive name: `Some(None)` for a bare `;lr`.
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    iter_params(params).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Validates `;name[=value]` parameters: every piece non-empty, the name a token,
/// the value (if any) a token, host/IPv6 literal or a terminated quoted string.
pub(crate) fn check_params(params: &str, header: &'static str) -> Result<(), super::ParseError> {
    let params = trim_lws(params);
    if params.is_empty() {
        return Ok(());
    }
    let Some(rest) = params.strip_prefix(';') else {
        return Err(super::ParseError::bad(header, "text after the value is not a parameter"));
    };
    for piece in split_top_level(rest, b';') {
        let piece = trim_lws(piece);
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (trim_lws(n), Some(trim_lws(v))),
            None => (piece, None),
        };
        if !is_token(name) {
            return Err(super::ParseError::bad(header, "empty or malformed parameter name"));
        }
        if let Some(v) = value {
            let ok = if v.starts_with('"') {
                quoted_end(v) == Some(v.len())
            } else {
                !v.is_empty() && v.bytes().all(|b| is_token_byte(b) || b"[]:".contains(&b))
            };
            if !ok {
                return Err(super::ParseError::bad(header, "malformed parameter value"));
            }
        }
    }
    Ok(())
}

/// Given `s` starting with `"`, the index just past the closing quote (quoted-pairs honoured),
/// or `None` if the string is unterminated.
pub(crate) fn quoted_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}
