//! [`Edits`] and [`serialize`]: a forwarded message is the received bytes with an edit
//! list applied. Lines the edits do not touch are copied verbatim (order, case, compact
//! names, folding, whitespace), in runs, into one pre-sized buffer.
//!
//! # Semantics
//! - Edits apply in call order against the queue: `remove_all`/`set` of a header also drop
//!   lines of that header queued earlier by `prepend`/`append`; later additions stay.
//! - [`Edits::prepend`] puts its line above every header line, including lines prepended
//!   earlier: `prepend(Record-Route)` then `prepend(Via)` gives `Via` first, then `Record-Route`.
//! - [`Edits::set`] writes its value at the position of the first original line of that
//!   header and drops the others (or adds a line after the original headers if there is none).
//! - [`Edits::pop_first_value`] removes values from the top: the first value of the first
//!   line, then (called again) the next one, removing lines left empty.
//! - Content-Length belongs to the serialiser: it is always present and correct (added when the
//!   original had none, which stream transports need; rewritten when the body changes).

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{self, HeaderName, split_top_level};
use super::message::{Entry, Message};

/// Which header an edit applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Known(HeaderName),
    /// An [`HeaderName::Other`] header, by name (compared case-insensitively, compact forms expanded).
    Named(String),
}

impl Key {
    fn of(name: &str) -> Key {
        match HeaderName::from_name(name) {
            HeaderName::Other => Key::Named(name.to_string()),
            known => Key::Known(known),
        }
    }

    fn matches_entry(&self, e: &Entry, msg: &Message) -> bool {
        match self {
            Key::Known(h) => e.name == *h,
            Key::Named(n) => e.name == HeaderName::Other && header::same_name(msg.entry_text(e.raw_name), n),
        }
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            Key::Known(h) => HeaderName::from_name(name) == *h,
            Key::Named(n) => header::same_name(name, n),
        }
    }

    fn name(&self) -> &str {
        match self {
            Key::Known(h) => h.as_str(),
            Key::Named(n) => n,
        }
    }

    fn is_list(&self) -> bool {
        match self {
            Key::Known(h) => h.is_list(),
            Key::Named(n) => header::is_list_name(n),
        }
    }
}

/// The edit list: the only way a forwarded message differs from the received one.
/// Names and values are not validated here; callers (the route runtime) check them.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    request_uri: Option<String>,
    /// In call order; serialised in reverse so the latest prepend is topmost.
    prepends: Vec<(String, String)>,
    appends: Vec<(String, String)>,
    removed: Vec<Key>,
    sets: Vec<(Key, String)>,
    pops: Vec<(Key, usize)>,
    body: Option<(Bytes, Option<String>)>,
}

impl Edits {
    /// Whether no edit was recorded.
    pub fn is_empty(&self) -> bool {
        self.request_uri.is_none()
            && self.prepends.is_empty()
            && self.appends.is_empty()
            && self.removed.is_empty()
            && self.sets.is_empty()
            && self.pops.is_empty()
            && self.body.is_none()
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: impl Into<String>) {
        self.request_uri = Some(uri.into());
    }

    /// The effective Request-URI: the edited one, else the message's.
    pub fn request_uri<'a>(&'a self, msg: &'a Message) -> &'a str {
        self.request_uri.as_deref().or_else(|| msg.request_uri()).unwrap_or("")
    }

    /// Adds a header line above all others, including earlier prepends (Via, Record-Route).
    pub fn prepend(&mut self, name: &str, value: impl Into<String>) {
        self.prepends.push((name.to_string(), value.into()));
    }

    /// Adds a header line after all others (before the empty line).
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.appends.push((name.to_string(), value.into()));
    }

    /// Removes every line of a known header (no-op for [`HeaderName::Other`]: use
    /// [`Edits::remove_all_by_name`]). Content-Length is kept correct regardless.
    pub fn remove_all(&mut self, name: HeaderName) {
        if name != HeaderName::Other {
            self.remove_key(Key::Known(name));
        }
    }

    /// Removes every line of a header given by name (any case, compact forms ok), returning
    /// how many lines queued earlier by `prepend`/`append`/`set` were dropped. Lines of the
    /// message itself are counted by [`Message::count_by_name`].
    pub fn remove_all_by_name(&mut self, name: &str) -> usize {
        self.remove_key(Key::of(name))
    }

    fn remove_key(&mut self, key: Key) -> usize {
        let dropped = self.drop_queued(&key);
        self.pops.retain(|(k, _)| *k != key);
        if !self.removed.contains(&key) {
            self.removed.push(key);
        }
        dropped
    }

    fn drop_queued(&mut self, key: &Key) -> usize {
        let before = self.prepends.len() + self.appends.len() + self.sets.len();
        self.prepends.retain(|(n, _)| !key.matches_name(n));
        self.appends.retain(|(n, _)| !key.matches_name(n));
        self.sets.retain(|(k, _)| k != key);
        before - (self.prepends.len() + self.appends.len() + self.sets.len())
    }

    /// Replaces every line of a known header with one line holding `value` (Max-Forwards).
    /// No-op for [`HeaderName::Other`]: use [`Edits::set_by_name`].
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        if name != HeaderName::Other {
            self.set_key(Key::Known(name), value.into());
        }
    }

    /// [`Edits::set`] for a header given by name.
    pub fn set_by_name(&mut self, name: &str, value: impl Into<String>) {
        self.set_key(Key::of(name), value.into());
    }

    fn set_key(&mut self, key: Key, value: String) {
        self.drop_queued(&key);
        self.removed.retain(|k| *k != key);
        self.pops.retain(|(k, _)| *k != key);
        self.sets.push((key, value));
    }

    /// Drops the first remaining value of a header: the top Route, whether the Route set is
    /// on one line (`<a>, <b>`) or several. A line left without values is removed.
    pub fn pop_first_value(&mut self, name: HeaderName) {
        if name == HeaderName::Other {
            return;
        }
        let key = Key::Known(name);
        match self.pops.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.pops.push((key, 1)),
        }
    }

    /// Replaces the body. `content_type` replaces the Content-Type (`None` keeps the original,
    /// or removes it when the new body is empty). Content-Length follows the new body.
    pub fn set_body(&mut self, body: Bytes, content_type: Option<String>) {
        self.body = Some((body, content_type));
    }

    fn extra_len(&self) -> usize {
        let lines = |v: &[(String, String)]| v.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
        lines(&self.prepends)
            + lines(&self.appends)
            + self.sets.iter().map(|(k, v)| k.name().len() + v.len() + 4).sum::<usize>()
            + self.request_uri.as_ref().map_or(0, String::len)
            + self.body.as_ref().map_or(0, |(_, ct)| ct.as_ref().map_or(0, |c| c.len() + 16))
            + 24 // a Content-Length line we may add
    }
}

fn put_line(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes `e` with its value replaced, keeping the original name, separator and terminator.
fn put_replaced(out: &mut BytesMut, msg: &Message, e: &Entry, value: &[u8]) {
    let raw = msg.raw();
    out.put_slice(raw.get(e.line.start as usize..e.value.start as usize).unwrap_or(&[]));
    out.put_slice(value);
    out.put_slice(raw.get(e.value.end as usize..e.line.end as usize).unwrap_or(&[]));
}

/// Formats `n` in decimal into `buf` without allocating.
fn decimal(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

/// Offset (within `value`) of the element after the first `n` non-empty elements, or `None`
/// when `n` or more elements are all there is.
fn offset_after(value: &str, n: usize) -> Option<usize> {
    let mut seen = 0;
    let mut offset = 0;
    for piece in split_top_level(value, b',') {
        let trimmed = header::trim_lws(piece);
        if !trimmed.is_empty() {
            if seen == n {
                return Some(offset + (piece.len() - piece.trim_start_matches(header::is_lws).len()));
            }
            seen += 1;
        }
        offset += piece.len() + 1;
    }
    None
}

/// The received message with `edits` applied (see the module docs for the rules). With no
/// edits and a Content-Length present this is a zero-copy slice of the received bytes
/// (without leading keep-alive CRLFs or bytes beyond Content-Length).
pub fn serialize(msg: &Message, edits: &Edits) -> Bytes {
    let (start_line, uri_span, blank, body_span) = msg.layout();
    let raw = msg.raw();
    if edits.is_empty() && msg.has_content_length() {
        return raw.slice(start_line.start as usize..body_span.end as usize);
    }
    let body: &[u8] = edits.body.as_ref().map_or(msg.body(), |(b, _)| b);
    let new_body = edits.body.as_ref();
    let head_len = (blank.end - start_line.start) as usize;
    let mut out = BytesMut::with_capacity(head_len + body.len() + edits.extra_len());

    // Start line, with the Request-URI swapped if edited.
    match (uri_span, &edits.request_uri) {
        (Some(u), Some(new)) => {
            out.put_slice(raw.get(start_line.start as usize..u.start as usize).unwrap_or(&[]));
            out.put_slice(new.as_bytes());
            out.put_slice(raw.get(u.end as usize..start_line.end as usize).unwrap_or(&[]));
        }
        _ => out.put_slice(msg.bytes(start_line)),
    }
    let entries = msg.entries();
    let head_start = entries.first().map_or(blank.start, |e| e.line.start) as usize;
    out.put_slice(raw.get(start_line.end as usize..head_start).unwrap_or(b"\r\n"));

    for (n, v) in edits.prepends.iter().rev() {
        put_line(&mut out, n, v);
    }

    let mut pops: Vec<(&Key, usize)> = edits.pops.iter().map(|(k, n)| (k, *n)).collect();
    let mut set_done = vec![false; edits.sets.len()];
    let (mut cl_written, mut ct_written) = (false, false);
    let mut digits = [0u8; 20];
    // Start of the current run of verbatim lines, flushed when an edited line comes.
    let mut run: Option<usize> = None;
    let flush = |out: &mut BytesMut, run: &mut Option<usize>, upto: usize| {
        if let Some(s) = run.take() {
            out.put_slice(raw.get(s..upto).unwrap_or(&[]));
        }
    };
    for e in entries {
        let line_start = e.line.start as usize;
        match e.name {
            HeaderName::ContentLength => {
                cl_written = true;
                if new_body.is_some() {
                    flush(&mut out, &mut run, line_start);
                    put_replaced(&mut out, msg, e, decimal(&mut digits, body.len()));
                } else {
                    run.get_or_insert(line_start);
                }
                continue;
            }
            HeaderName::ContentType if new_body.is_some() => match new_body {
                Some((_, Some(ct))) => {
                    flush(&mut out, &mut run, line_start);
                    if !ct_written {
                        put_replaced(&mut out, msg, e, ct.as_bytes());
                        ct_written = true;
                    }
                    continue;
                }
                Some((b, None)) if b.is_empty() => {
                    flush(&mut out, &mut run, line_start);
                    continue;
                }
                _ => {}
            },
            _ => {}
        }
        if edits.removed.iter().any(|k| k.matches_entry(e, msg)) {
            flush(&mut out, &mut run, line_start);
            continue;
        }
        if let Some(i) = edits.sets.iter().position(|(k, _)| k.matches_entry(e, msg)) {
            flush(&mut out, &mut run, line_start);
            if let (Some(done), Some((_, v))) = (set_done.get_mut(i), edits.sets.get(i))
                && !*done
            {
                put_replaced(&mut out, msg, e, v.as_bytes());
                *done = true;
            }
            continue;
        }
        if let Some((key, left)) = pops.iter_mut().find(|(k, n)| *n > 0 && k.matches_entry(e, msg)) {
            flush(&mut out, &mut run, line_start);
            let value = msg.entry_text(e.value);
            let count = if key.is_list() { header::list_values(value).count() } else { 1 };
            if *left >= count {
                *left -= count; // every value of this line popped: drop the line
            } else {
                let off = offset_after(value, *left).unwrap_or(value.len());
                *left = 0;
                out.put_slice(raw.get(line_start..e.value.start as usize).unwrap_or(&[]));
                out.put_slice(raw.get(e.value.start as usize + off..e.line.end as usize).unwrap_or(&[]));
            }
            continue;
        }
        run.get_or_insert(line_start);
    }
    flush(&mut out, &mut run, blank.start as usize);

    for ((k, v), done) in edits.sets.iter().zip(&set_done) {
        if !done {
            put_line(&mut out, k.name(), v);
        }
    }
    for (n, v) in &edits.appends {
        put_line(&mut out, n, v);
    }
    if let Some((_, Some(ct))) = new_body
        && !ct_written
    {
        put_line(&mut out, "Content-Type", ct);
    }
    if !cl_written {
        let len = decimal(&mut digits, body.len());
        out.put_slice(b"Content-Length: ");
        out.put_slice(len);
        out.put_slice(b"\r\n");
    }
    out.put_slice(msg.bytes(blank));
    out.put_slice(body);
    out.freeze()
}
