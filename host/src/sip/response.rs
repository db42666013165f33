//! Messages the proxy originates: [`response`] to a parsed request (RFC 3261 section 8.2.6),
//! [`reply_to_malformed`] for a request that failed to parse, and [`reason_phrase`].

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{self, HeaderName};
use super::message::Message;

/// Writes a status line; `reason` is stripped of CR/LF/controls so it cannot end the line.
fn put_status_line(out: &mut BytesMut, code: u16, reason: &str) {
    let _ = write!(out, "SIP/2.0 {code} ");
    for c in reason.chars().filter(|c| !c.is_control()) {
        let mut buf = [0u8; 4];
        out.put_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Builds a response to `req` (RFC 3261 section 8.2.6.2): the status line, every Via line in
/// order, From, To (with `;tag=to_tag` added when given, the To has no tag and `code > 100`),
/// Call-ID, CSeq, then `extra` headers, Content-Type (with a body) and Content-Length.
/// Copied lines are the request's lines verbatim (same name spelling and folding).
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let raw = req.raw();
    let copied =
        |n: HeaderName| matches!(n, HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq);
    let extra_len: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let body_len = body.map_or(0, |(ct, b)| ct.len() + b.len() + 16);
    let mut out = BytesMut::with_capacity(
        req.entries().iter().map(|e| e.line.range().len()).sum::<usize>() + extra_len + body_len + 128,
    );
    put_status_line(&mut out, code, reason);
    let add_tag = match (to_tag, req.to()) {
        (Some(tag), Ok(to)) if code > 100 && to.tag().is_none() => Some(tag),
        _ => None,
    };
    // Via lines in order first, then From, To, Call-ID, CSeq in request order.
    for e in req.entries().iter().filter(|e| e.name == HeaderName::Via) {
        out.put_slice(req.bytes(e.line));
    }
    let mut to_done = false;
    for e in req.entries() {
        if e.name == HeaderName::To && !to_done {
            to_done = true;
            match add_tag {
                Some(tag) => {
                    out.put_slice(raw.get(e.line.start as usize..e.value.end as usize).unwrap_or(&[]));
                    out.put_slice(b";tag=");
                    out.put_slice(tag.as_bytes());
                    out.put_slice(b"\r\n");
                }
                None => out.put_slice(req.bytes(e.line)),
            }
        } else if copied(e.name) && e.name != HeaderName::Via {
            out.put_slice(req.bytes(e.line));
        }
    }
    for (n, v) in extra {
        out.put_slice(n.as_bytes());
        out.put_slice(b": ");
        out.put_slice(v.as_bytes());
        out.put_slice(b"\r\n");
    }
    let payload: &[u8] = match body {
        Some((ct, b)) => {
            let _ = write!(out, "Content-Type: {ct}\r\n");
            b
        }
        None => &[],
    };
    let _ = write!(out, "Content-Length: {}\r\n\r\n", payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A header line of a malformed request kept for the 400: name, line range, value range.
type CopiedLine = (HeaderName, (usize, usize), (usize, usize));

/// A best-effort `400` for a request that failed [`Message::parse`]: copies whatever Via,
/// From, To, Call-ID and CSeq lines can be found (adding a To tag when missing). The reason
/// phrase is `reason` (sanitised), or "Bad Request" when empty. Returns `None` when no reply
/// is possible or allowed: a response, an ACK (never answered), no Via, or no header section.
pub fn reply_to_malformed(raw: &[u8], reason: &str) -> Option<Bytes> {
    let raw = raw.get(..raw.len().min(super::MAX_MESSAGE_SIZE))?;
    let start = super::skip_keepalive(raw);
    let first_line_end = start + memchr::memchr(b'\n', raw.get(start..)?)?;
    let first = raw.get(start..first_line_end)?;
    if first.len() < 4 || first.get(..4)?.eq_ignore_ascii_case(b"SIP/") || first.starts_with(b"ACK ") {
        return None;
    }
    // Collect the lines we copy; malformed lines are simply skipped.
    // (name, whole line without terminator, value after the colon)
    let mut lines: Vec<CopiedLine> = Vec::new();
    let mut pos = first_line_end + 1;
    while let Some(rel) = raw.get(pos..).and_then(|r| memchr::memchr(b'\n', r)) {
        let next = pos + rel + 1;
        let content_end = if rel > 0 && raw.get(pos + rel - 1) == Some(&b'\r') { pos + rel - 1 } else { pos + rel };
        let line = raw.get(pos..content_end).unwrap_or(&[]);
        if line.is_empty() {
            break;
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = std::str::from_utf8(line.get(..colon).unwrap_or(&[])).unwrap_or("").trim();
            let h = HeaderName::from_name(name);
            let printable = line.iter().all(|&b| b >= 0x20 || b == b'\t');
            let wanted = matches!(
                h,
                HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
            );
            if wanted && printable && header::is_token(name) {
                lines.push((h, (pos, content_end), (pos + colon + 1, content_end)));
            }
        }
        pos = next;
    }
    if !lines.iter().any(|(h, _, _)| *h == HeaderName::Via) {
        return None;
    }
    let mut out = BytesMut::with_capacity(512);
    put_status_line(&mut out, 400, if reason.is_empty() { "Bad Request" } else { reason });
    for want in [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq] {
        for (h, line, value) in lines.iter().filter(|(h, _, _)| *h == want) {
            out.put_slice(raw.get(line.0..line.1).unwrap_or(&[]));
            let v = raw.get(value.0..value.1).unwrap_or(&[]);
            if *h == HeaderName::To && memchr::memmem::find(&v.to_ascii_lowercase(), b"tag=").is_none() {
                let _ = write!(out, ";tag={:016x}", rand::random::<u64>());
            }
            out.put_slice(b"\r\n");
            if *h != HeaderName::Via {
                break; // one of each single-instance header
            }
        }
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}

/// The RFC 3261 (and common extension) reason phrase for a status code; a generic phrase
/// for the class of an unknown code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        _ => class_phrase(code),
    }
}

fn class_phrase(code: u16) -> &'static str {
    match code {
        100..=199 => "Provisional",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        600..=699 => "Global Failure",
        _ => "Unknown",
    }
}
