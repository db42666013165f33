//! [`Message`]: one received SIP message as its raw bytes plus a validated index of
//! ranges (start line, one entry per header line, body). Accessors slice the bytes;
//! the top Via, From, To and CSeq are parsed once (they are validated anyway) and
//! rebuilt from ranges; the other typed views are parsed on each call.

use bytes::Bytes;

use super::header::{self, NAME_COUNT};
use super::parsed::{NameAddrSpans, Parsed, ViaSpans, span_of};
use super::scan::{self, RawHeader};
use super::typed::{self, CSeq, Contacts, NameAddr, Via};
use super::{Header, HeaderName, MAX_MESSAGE_SIZE, Method, ParseError};

/// A byte range into [`Message::raw`]; `u32` keeps the index small (messages are ≤ 64 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new((start, end): (usize, usize)) -> Span {
        // Offsets are bounded by MAX_MESSAGE_SIZE (checked before scanning).
        Span { start: u32::try_from(start).unwrap_or(u32::MAX), end: u32::try_from(end).unwrap_or(u32::MAX) }
    }
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header line in the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    pub(crate) raw_name: Span,
    /// The trimmed value (spans folded continuation lines).
    pub(crate) value: Span,
    /// The whole line, continuation lines and line terminator included.
    pub(crate) line: Span,
}

#[derive(Debug, Clone)]
enum Kind {
    Request { method: Method, uri: Span },
    Response { status: u16, reason: Span },
}

/// A parsed SIP message: the received bytes plus an index into them. Cheap to clone
/// (the bytes are reference-counted).
#[derive(Clone, Debug)]
pub struct Message {
    raw: Bytes,
    kind: Kind,
    /// The start line's content (no terminator).
    start_line: Span,
    /// From the empty line ending the headers to the body start (its CRLF).
    blank: Span,
    body: Span,
    headers: Vec<Entry>,
    /// Index into `headers` of the first line of each known header name.
    first: [Option<u16>; NAME_COUNT],
    /// The Content-Length header's value, if present.
    content_length: Option<usize>,
    /// The top Via, From, To and CSeq, parsed by `validate`.
    parsed: Parsed,
}

/// Headers that may appear at most once (a second Content-Length could smuggle a message).
const SINGLE: &[HeaderName] = &[
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
];

impl Message {
    /// Parses one whole message: a UDP datagram or a TCP message cut by [`frame_len`](super::frame_len).
    /// Leading CRLFs are ignored (RFC 3261 section 7.5). Bytes beyond Content-Length are
    /// ignored (RFC 3261 section 18.3); a Content-Length beyond the received bytes is an error.
    /// Without Content-Length the body is the rest of the input.
    ///
    /// # Errors
    /// A [`ParseError`] naming the first problem found: size, start line, header syntax,
    /// a missing or duplicated mandatory header, a malformed CSeq/From/To/top Via/
    /// Max-Forwards/Content-Length, or a CSeq method differing from the request method.
    pub fn parse(raw: Bytes) -> Result<Message, ParseError> {
        if raw.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::TooLarge(raw.len()));
        }
        let mut headers: Vec<Entry> = Vec::with_capacity(16);
        let head = scan::scan_head(&raw, scan::Mode::Strict, |h: RawHeader| {
            let name = raw.get(h.name.0..h.name.1).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("");
            headers.push(Entry {
                name: HeaderName::from_name(name),
                raw_name: Span::new(h.name),
                value: Span::new(h.value),
                line: Span::new(h.line),
            });
            Ok(())
        })?;
        let Some(head) = head else {
            return Err(if super::skip_keepalive(&raw) == raw.len() {
                ParseError::Empty
            } else {
                ParseError::Unterminated
            });
        };
        let text = raw.get(head.start..head.blank).ok_or(ParseError::Unterminated)?;
        std::str::from_utf8(text).map_err(|_| ParseError::NotUtf8)?;

        let kind = parse_start_line(&raw, head.start, head.start_line_end)?;
        let mut first = [None; NAME_COUNT];
        for (i, e) in headers.iter().enumerate() {
            let slot = &mut first[e.name.index()];
            if slot.is_some() && SINGLE.contains(&e.name) {
                return Err(ParseError::Duplicate(e.name.as_str()));
            }
            if slot.is_none() {
                *slot = Some(u16::try_from(i).map_err(|_| ParseError::TooLarge(raw.len()))?);
            }
        }
        let mut msg = Message {
            kind,
            start_line: Span::new((head.start, head.start_line_end)),
            blank: Span::new((head.blank, head.body)),
            body: Span::new((head.body, raw.len())),
            headers,
            first,
            content_length: None,
            parsed: Parsed::default(),
            raw,
        };
        msg.parsed = msg.validate()?;
        if let Some(declared) = msg.content_length()? {
            let available = msg.raw.len() - head.body;
            if declared > available {
                return Err(ParseError::BodyTruncated { declared, available });
            }
            msg.body = Span::new((head.body, head.body + declared));
            msg.content_length = Some(declared);
        }
        Ok(msg)
    }

    /// The checks a proxy relies on before it touches the message; returns
    /// the headers it parsed on the way.
    fn validate(&self) -> Result<Parsed, ParseError> {
        for (name, label) in [
            (HeaderName::Via, "Via"),
            (HeaderName::From, "From"),
            (HeaderName::To, "To"),
            (HeaderName::CallId, "Call-ID"),
            (HeaderName::CSeq, "CSeq"),
        ] {
            if self.first[name.index()].is_none() {
                return Err(ParseError::Missing(label));
            }
        }
        let value = |name| self.header(name).unwrap_or("");
        let cseq_value = value(HeaderName::CSeq);
        let cseq = CSeq::parse(cseq_value)?;
        if let Kind::Request { method, .. } = &self.kind
            && cseq.method_str != method.as_str()
        {
            return Err(ParseError::CSeqMismatch {
                cseq: cseq.method_str.to_string(),
                method: method.as_str().to_string(),
            });
        }
        self.call_id()?;
        let from_value = value(HeaderName::From);
        let from = NameAddr::parse_header(from_value, "From")?;
        let to_value = value(HeaderName::To);
        let to = NameAddr::parse_header(to_value, "To")?;
        let via_value = value(HeaderName::Via);
        let top = header::list_values(via_value).next().ok_or(ParseError::bad("Via", "empty value"))?;
        let top_via = Via::parse(top)?;
        self.max_forwards()?;
        self.content_length()?;
        Ok(Parsed {
            top_via: ViaSpans::of(via_value, &top_via),
            from: NameAddrSpans::of(from_value, &from),
            to: NameAddrSpans::of(to_value, &to),
            cseq_seq: cseq.seq,
            cseq_method: span_of(cseq_value, cseq.method_str),
        })
    }

    fn text(&self, span: Span) -> &str {
        // Spans cover the UTF-8-validated head and start/end at ASCII bytes, so this never
        // falls back in practice.
        self.raw.get(span.range()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// The received bytes (including any leading CRLF and trailing bytes beyond Content-Length).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }

    /// The method of a request; `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.kind {
            Kind::Request { method, .. } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    /// The Request-URI of a request as received.
    pub fn request_uri(&self) -> Option<&str> {
        match self.kind {
            Kind::Request { uri, .. } => Some(self.text(uri)),
            Kind::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            Kind::Response { status, .. } => Some(status),
            Kind::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (possibly empty).
    pub fn reason(&self) -> Option<&str> {
        match self.kind {
            Kind::Response { reason, .. } => Some(self.text(reason)),
            Kind::Request { .. } => None,
        }
    }

    /// Every header line, in message order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> {
        self.headers.iter().map(|e| Header { name: e.name, raw_name: self.text(e.raw_name), value: self.text(e.value) })
    }

    /// The whole value of the first line of a known header.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        if name == HeaderName::Other {
            return None;
        }
        let i = self.first[name.index()]?;
        self.headers.get(usize::from(i)).map(|e| self.text(e.value))
    }

    /// The whole value of the first line of a header given by name (any case, compact forms ok).
    pub fn header_by_name(&self, name: &str) -> Option<&str> {
        match HeaderName::from_name(name) {
            HeaderName::Other => self.headers().find(|h| header::same_name(h.raw_name, name)).map(|h| h.value),
            known => self.header(known),
        }
    }

    /// All values of a known header in message order; list headers (Via, Contact, Route,
    /// Record-Route) are split at top-level commas (not inside `<...>` or quotes).
    /// For [`HeaderName::Other`] this returns nothing: use [`Message::values_by_name`].
    pub fn values(&self, name: HeaderName) -> Vec<&str> {
        if name == HeaderName::Other {
            return Vec::new();
        }
        self.collect_values(|e| e.name == name, name.is_list())
    }

    /// All values of a header given by name. Known list headers (Via, Contact, Route, Allow,
    /// Supported, ...) are split at top-level commas; unknown headers give one value per line.
    pub fn values_by_name(&self, name: &str) -> Vec<&str> {
        match HeaderName::from_name(name) {
            HeaderName::Other => {
                self.collect_values(|e| header::same_name(self.text(e.raw_name), name), header::is_list_name(name))
            }
            known => self.values(known),
        }
    }

    /// Number of header lines with this name (any case, compact forms ok).
    pub fn count_by_name(&self, name: &str) -> usize {
        self.headers.iter().filter(|e| header::same_name(self.text(e.raw_name), name)).count()
    }

    fn collect_values(&self, pred: impl Fn(&Entry) -> bool, split: bool) -> Vec<&str> {
        let mut out = Vec::new();
        for e in self.headers.iter().filter(|e| pred(e)) {
            let v = self.text(e.value);
            if split {
                out.extend(header::list_values(v));
            } else {
                out.push(v);
            }
        }
        out
    }

    /// The body (exactly Content-Length bytes when the header is present).
    pub fn body(&self) -> &[u8] {
        self.raw.get(self.body.range()).unwrap_or(&[])
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        let v = self.header(HeaderName::Via).ok_or(ParseError::Missing("Via"))?;
        Ok(self.parsed.top_via.view(v))
    }

    /// This message with its top Via stamped by the server that received it (RFC 3261
    /// 18.2.1, RFC 3581): a bare `rport` given the value `rport`, and `;received=IP`
    /// appended to the parameters. `None` when neither applies (no `rport` value, or no
    /// bare `rport` to give it to; no `received`) or the stamped message does not parse.
    pub fn with_top_via_stamp(&self, rport: Option<u16>, received: Option<std::net::IpAddr>) -> Option<Message> {
        let entry = self.headers.get(usize::from(self.first[HeaderName::Via.index()]?))?;
        let value = self.text(entry.value);
        let via = self.parsed.top_via.view(value);
        // Offsets in `raw` of places in the top Via's value.
        let at = |part: &str| entry.value.start as usize + span_of(value, part).end as usize;
        let mut inserts: Vec<(usize, String)> = Vec::with_capacity(2);
        if let Some(port) = rport
            && let Some((name, _)) =
                header::iter_params(via.params).find(|(n, v)| v.is_none() && n.eq_ignore_ascii_case("rport"))
        {
            inserts.push((at(name), format!("={port}")));
        }
        if let Some(ip) = received {
            inserts.push((at(via.params), format!(";received={ip}")));
        }
        if inserts.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(self.raw.len() + 48);
        let mut from = 0;
        for (offset, text) in &inserts {
            out.extend_from_slice(self.raw.get(from..*offset)?);
            out.extend_from_slice(text.as_bytes());
            from = *offset;
        }
        out.extend_from_slice(self.raw.get(from..)?);
        Message::parse(Bytes::from(out)).ok()
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> Result<Vec<Via<'_>>, ParseError> {
        self.values(HeaderName::Via).into_iter().map(Via::parse).collect()
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        let v = self.header(HeaderName::From).ok_or(ParseError::Missing("From"))?;
        Ok(self.parsed.from.view(v))
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        let v = self.header(HeaderName::To).ok_or(ParseError::Missing("To"))?;
        Ok(self.parsed.to.view(v))
    }

    /// The Call-ID (non-empty, no whitespace).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.header(HeaderName::CallId).ok_or(ParseError::Missing("Call-ID"))?;
        if v.is_empty() || v.contains(header::is_lws) {
            return Err(ParseError::bad("Call-ID", "empty or contains whitespace"));
        }
        Ok(v)
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        let v = self.header(HeaderName::CSeq).ok_or(ParseError::Missing("CSeq"))?;
        Ok(self.parsed.cseq(v))
    }

    /// The Contact header(s): `*`, or every contact in order (empty list when absent).
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        let values = self.values(HeaderName::Contact);
        if values.contains(&"*") {
            return if values.len() == 1 {
                Ok(Contacts::Star)
            } else {
                Err(ParseError::bad("Contact", "'*' mixed with other contacts"))
            };
        }
        values.into_iter().map(|v| NameAddr::parse_header(v, "Contact")).collect::<Result<_, _>>().map(Contacts::List)
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.values(HeaderName::Route).into_iter().map(|v| NameAddr::parse_header(v, "Route")).collect()
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.values(HeaderName::RecordRoute).into_iter().map(|v| NameAddr::parse_header(v, "Record-Route")).collect()
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.header(HeaderName::MaxForwards)
            .map(|v| typed::parse_u32(v).ok_or(ParseError::bad("Max-Forwards", "not a 32-bit decimal number")))
            .transpose()
    }

    /// Expires, if present. Values above 2^32-1 saturate (RFC 3261 section 20.19).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.header(HeaderName::Expires)
            .map(|v| typed::parse_u32_saturating(v).ok_or(ParseError::bad("Expires", "not a decimal number")))
            .transpose()
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        if let Some(cl) = self.content_length {
            return Ok(Some(cl));
        }
        self.header(HeaderName::ContentLength)
            .map(|v| {
                typed::parse_u32(v)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(ParseError::bad("Content-Length", "not a decimal number"))
            })
            .transpose()
    }

    // ----- crate-internal access for serialisation -----

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.headers
    }

    pub(crate) fn entry_text(&self, span: Span) -> &str {
        self.text(span)
    }

    pub(crate) fn bytes(&self, span: Span) -> &[u8] {
        self.raw.get(span.range()).unwrap_or(&[])
    }

    /// Start line content, the Request-URI span (requests), the empty line and the body.
    pub(crate) fn layout(&self) -> (Span, Option<Span>, Span, Span) {
        let uri = match self.kind {
            Kind::Request { uri, .. } => Some(uri),
            Kind::Response { .. } => None,
        };
        (self.start_line, uri, self.blank, self.body)
    }

    /// Whether the message carried a Content-Length header.
    pub(crate) fn has_content_length(&self) -> bool {
        self.content_length.is_some()
    }
}

/// Parses the Request-Line or Status-Line in `raw[start..end]`.
fn parse_start_line(raw: &[u8], start: usize, end: usize) -> Result<Kind, ParseError> {
    let line = raw.get(start..end).and_then(|b| std::str::from_utf8(b).ok()).ok_or(ParseError::NotUtf8)?;
    let is_version = |s: &str| s.eq_ignore_ascii_case("SIP/2.0");
    if line.len() >= 4 && line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase ("SIP/2.0 100" is tolerated).
        let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
        if !is_version(version) {
            return Err(ParseError::Version);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Status);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::Status)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::Status);
        }
        let reason_start = start + (line.len() - reason.len());
        return Ok(Kind::Response { status, reason: Span::new((reason_start, end)) });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (single spaces, RFC 3261 section 7.1).
    let (method, rest) = line.split_once(' ').ok_or(ParseError::StartLine("no space after the method"))?;
    if !header::is_token(method) {
        return Err(ParseError::Method);
    }
    let (uri, version) = rest.rsplit_once(' ').ok_or(ParseError::StartLine("no SIP version"))?;
    if !is_version(version) {
        return Err(if version.is_empty() || version.starts_with("SIP/") || version.starts_with("sip/") {
            ParseError::Version
        } else {
            ParseError::StartLine("trailing text after the SIP version")
        });
    }
    typed::check_request_uri(uri)?;
    let uri_start = start + method.len() + 1;
    Ok(Kind::Request { method: Method::from_token(method), uri: Span::new((uri_start, uri_start + uri.len())) })
}
