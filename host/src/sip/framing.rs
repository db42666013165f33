//! Stream framing (RFC 3261 section 18.3): where one message ends in a TCP byte stream.
//! The header section ends at the first empty line; the body is exactly Content-Length bytes
//! (taken as 0 when absent, as a lenient reading of the mandatory header).

use super::header::HeaderName;
use super::{MAX_MESSAGE_SIZE, ParseError, scan};

/// Length of the complete message at the start of `buf`, `Ok(None)` if more bytes are needed.
/// Call [`skip_keepalive`] first: `buf` should start at the message (leading CRLFs are
/// tolerated and counted in the returned length).
///
/// # Errors
/// [`ParseError::TooLarge`] when the head or the whole message would exceed
/// [`MAX_MESSAGE_SIZE`]; a malformed or duplicated Content-Length (the stream cannot be
/// resynchronised after any of these, so the connection should be closed). Other malformed
/// lines do not stop framing: [`Message::parse`](super::Message::parse) reports them, so the
/// message can still be answered with a 400.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let window = buf.get(..buf.len().min(MAX_MESSAGE_SIZE)).unwrap_or(buf);
    let mut content_length: Option<usize> = None;
    let head = scan::scan_head(window, scan::Mode::Lenient, |h| {
        let name = window.get(h.name.0..h.name.1).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("");
        if HeaderName::from_name(name) != HeaderName::ContentLength {
            return Ok(());
        }
        if content_length.is_some() {
            return Err(ParseError::Duplicate("Content-Length"));
        }
        let value = window.get(h.value.0..h.value.1).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("");
        let n = super::typed::parse_u32(value).ok_or(ParseError::bad("Content-Length", "not a decimal number"))?;
        content_length = Some(usize::try_from(n).map_err(|_| ParseError::TooLarge(usize::MAX))?);
        Ok(())
    })?;
    let Some(head) = head else {
        return if buf.len() >= MAX_MESSAGE_SIZE { Err(ParseError::TooLarge(buf.len())) } else { Ok(None) };
    };
    let total = head.body.saturating_add(content_length.unwrap_or(0));
    if total > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge(total));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Number of leading CR and LF bytes (keep-alives, RFC 5626 section 4.4.1) to discard.
pub fn skip_keepalive(buf: &[u8]) -> usize {
    buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}
