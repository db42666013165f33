//! The byte-level scanner shared by [`Message::parse`](super::Message::parse) and
//! [`frame_len`](super::frame_len): it splits the head of a message into the start line
//! and header lines (joining folded continuation lines, RFC 3261 section 7.3.1) and finds
//! the empty line that ends the header section. Lines may end in CRLF or, leniently, LF.

use super::ParseError;

/// Byte ranges of one header line (all offsets into the scanned buffer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader {
    pub(crate) name: (usize, usize),
    /// Trimmed value; spans continuation lines when folded.
    pub(crate) value: (usize, usize),
    /// The whole line including continuation lines and the final line terminator.
    pub(crate) line: (usize, usize),
}

/// Where the parts of a message head are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    /// First byte of the start line (after leading CRLF keep-alives).
    pub(crate) start: usize,
    /// End of the start line's content (before its terminator).
    pub(crate) start_line_end: usize,
    /// First byte of the empty line ending the header section.
    pub(crate) blank: usize,
    /// First byte of the body (after the empty line).
    pub(crate) body: usize,
}

/// One line: content range and the offset of the next line.
fn next_line(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = buf.get(pos..)?;
    let nl = pos + memchr::memchr(b'\n', rest)?;
    let content_end = if nl > pos && buf.get(nl - 1) == Some(&b'\r') { nl - 1 } else { nl };
    Some((content_end, nl + 1))
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Rejects NUL (except as a quoted-pair `\<NUL>`, RFC 4475 section 3.1.1.2) and a CR
/// that does not end the line: either could smuggle a line break past a downstream parser.
fn check_controls(buf: &[u8], from: usize, to: usize) -> Result<(), ParseError> {
    let Some(line) = buf.get(from..to) else { return Ok(()) };
    for i in memchr::memchr2_iter(0, b'\r', line) {
        let escaped = i > 0 && line.get(i - 1) == Some(&b'\\');
        if line.get(i) == Some(&b'\r') || !escaped {
            return Err(ParseError::ControlChar);
        }
    }
    Ok(())
}

/// How strictly [`scan_head`] treats malformed lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Any malformed line or forbidden control character is an error ([`Message::parse`](super::Message::parse)).
    Strict,
    /// Malformed lines are skipped: only the end of the head matters ([`frame_len`](super::frame_len)),
    /// so a stream can still be cut and the message answered with a precise 400.
    Lenient,
}

/// Scans the head of the message in `buf`. Calls `on_header` once per complete header
/// line, in order. Returns `Ok(None)` when the empty line has not been received yet.
pub(crate) fn scan_head(
    buf: &[u8],
    mode: Mode,
    mut on_header: impl FnMut(RawHeader) -> Result<(), ParseError>,
) -> Result<Option<Head>, ParseError> {
    let strict = mode == Mode::Strict;
    let start = super::skip_keepalive(buf);
    let Some((start_line_end, mut pos)) = next_line(buf, start) else { return Ok(None) };
    if strict {
        check_controls(buf, start, start_line_end)?;
    }
    let mut current: Option<RawHeader> = None;
    loop {
        let Some((content_end, next)) = next_line(buf, pos) else { return Ok(None) };
        if strict {
            check_controls(buf, pos, content_end)?;
        }
        let content = buf.get(pos..content_end).unwrap_or(&[]);
        match content.first() {
            None => {
                if let Some(h) = current.take() {
                    on_header(h)?;
                }
                return Ok(Some(Head { start, start_line_end, blank: pos, body: next }));
            }
            Some(&b) if is_ws(b) => {
                let Some(h) = current.as_mut() else {
                    if strict {
                        return Err(ParseError::HeaderLine("continuation line before any header"));
                    }
                    pos = next;
                    continue;
                };
                let lead = content.iter().take_while(|&&b| is_ws(b)).count();
                let trail = content.iter().rev().take_while(|&&b| is_ws(b)).count();
                if lead < content.len() {
                    if h.value.0 == h.value.1 {
                        h.value.0 = pos + lead;
                    }
                    h.value.1 = content_end - trail;
                }
                h.line.1 = next;
            }
            Some(_) => {
                if let Some(h) = current.take() {
                    on_header(h)?;
                }
                current = match header_line(content, pos, content_end, next) {
                    Ok(h) => Some(h),
                    Err(e) if strict => return Err(e),
                    Err(_) => None,
                };
            }
        }
        pos = next;
    }
}

/// Parses `name *WS ":" *WS value` of one (unfolded) line starting at `pos`.
fn header_line(content: &[u8], pos: usize, content_end: usize, next: usize) -> Result<RawHeader, ParseError> {
    let name_len = content.iter().take_while(|&&b| super::header::is_token_byte(b)).count();
    if name_len == 0 {
        return Err(ParseError::HeaderLine("header name is not a token"));
    }
    let mut i = name_len;
    while content.get(i).is_some_and(|&b| is_ws(b)) {
        i += 1;
    }
    if content.get(i) != Some(&b':') {
        return Err(ParseError::HeaderLine("header name is not a token followed by ':'"));
    }
    i += 1;
    while content.get(i).is_some_and(|&b| is_ws(b)) {
        i += 1;
    }
    let trail = content.iter().rev().take_while(|&&b| is_ws(b)).count();
    let value_end = (content_end - trail).max(pos + i);
    Ok(RawHeader { name: (pos, pos + name_len), value: (pos + i, value_end), line: (pos, next) })
}
