//! EBR filters: `key=glob` strings compiled once per subscription and matched
//! against every raise of the event (OpenSIPS `pack_ebr_filters` /
//! `ebr_filter_match_evp`).
//!
//! Semantics: the key is compared with parameter names ASCII-case-insensitively;
//! the value is a shell wildcard (`*`, `?`, `[...]`, `[!...]`, `\` escapes,
//! fnmatch(3) with flags 0: `*` also matches `/`), matched case-sensitively
//! against the parameter's text (integers in decimal, NULL as the empty
//! string). All filters must match. Unlike OpenSIPS, which ignores a filter
//! whose key names no parameter, an event without the key does not match: a
//! typo in a key then fails closed instead of firing for every event.
//!
//! Matching allocates nothing: integers are formatted into a stack buffer and
//! globs run on the borrowed bytes.

use std::io::Write as _;

use globset::{Candidate, GlobBuilder, GlobMatcher};

use super::super::{Event, EventError, Value};

/// Most filters one subscription may carry; more is certainly a mistake and
/// each costs a match per raise.
pub const MAX_FILTERS: usize = 32;
/// Longest filter string accepted (key, `=` and value).
pub const MAX_FILTER_LEN: usize = 1024;

/// Compiled `key=glob` filters, AND-ed. No filters match every event.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    items: Vec<Filter>,
}

#[derive(Clone, Debug)]
struct Filter {
    /// Lower-cased (ASCII) key.
    key: Box<str>,
    pattern: Pattern,
}

#[derive(Clone, Debug)]
enum Pattern {
    /// No wildcard: compared as bytes (and usable as an index key).
    Exact(Box<str>),
    Glob(GlobMatcher),
}

impl Filters {
    /// Compiles OpenSIPS-style filters: each `key=value`, split at the first
    /// `=`, the value a shell wildcard pattern.
    ///
    /// # Errors
    /// [`EventError::BadFilter`] naming the offending filter: no `=`, an
    /// empty key or value, a bad pattern, too long, or more than
    /// [`MAX_FILTERS`].
    pub fn parse(filters: &[String]) -> Result<Filters, EventError> {
        if filters.len() > MAX_FILTERS {
            return Err(EventError::BadFilter(format!("{} filters (at most {MAX_FILTERS})", filters.len())));
        }
        let mut items = Vec::with_capacity(filters.len());
        for raw in filters {
            items.push(Filter::parse(raw)?);
        }
        Ok(Filters { items })
    }

    /// Whether `ev` satisfies every filter.
    pub fn matches(&self, ev: &Event) -> bool {
        self.items.iter().all(|f| f.matches(ev))
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are no filters (every event matches).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first filter without wildcards, as (lower-case key, value): the
    /// registry indexes subscriptions by it, so a raise finds `callid=abc`
    /// among thousands of waiters without scanning them.
    pub(crate) fn index_key(&self) -> Option<(&str, &str)> {
        self.items.iter().find_map(|f| match &f.pattern {
            Pattern::Exact(v) => Some((&*f.key, &**v)),
            Pattern::Glob(_) => None,
        })
    }
}

impl Filter {
    fn parse(raw: &str) -> Result<Filter, EventError> {
        let bad = |why: &str| EventError::BadFilter(format!("'{}': {why}", shorten(raw)));
        if raw.len() > MAX_FILTER_LEN {
            return Err(bad(&format!("longer than {MAX_FILTER_LEN} bytes")));
        }
        let Some((key, value)) = raw.split_once('=') else {
            return Err(bad("expected key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if value.is_empty() {
            return Err(bad("empty value"));
        }
        let pattern = if value.contains(['*', '?', '[', '\\']) {
            let glob = GlobBuilder::new(&fnmatch_to_globset(value))
                .literal_separator(false)
                .backslash_escape(true)
                .case_insensitive(false)
                .allow_unclosed_class(true)
                .build()
                .map_err(|e| bad(&e.kind().to_string()))?;
            Pattern::Glob(glob.compile_matcher())
        } else {
            Pattern::Exact(value.into())
        };
        Ok(Filter { key: key.to_ascii_lowercase().into_boxed_str(), pattern })
    }

    /// True when some parameter named `key` has a value matching the pattern.
    fn matches(&self, ev: &Event) -> bool {
        ev.params.0.iter().any(|(name, value)| {
            name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&self.key))
                && with_text(value, |text| self.pattern.matches(text))
        })
    }
}

impl Pattern {
    fn matches(&self, text: &[u8]) -> bool {
        match self {
            Pattern::Exact(v) => v.as_bytes() == text,
            Pattern::Glob(g) => g.is_match_candidate(&Candidate::from_bytes(text)),
        }
    }
}

/// Runs `f` on a value's text without allocating: integers in decimal,
/// NULL as the empty string.
pub(crate) fn with_text<R>(value: &Value, f: impl FnOnce(&[u8]) -> R) -> R {
    match value {
        Value::Str(s) => f(s.as_bytes()),
        Value::Null => f(b""),
        Value::Int(n) => {
            let mut buf = [0u8; 24];
            let mut cursor = &mut buf[..];
            // An i64 needs at most 20 bytes; the write cannot fail.
            let _ = write!(cursor, "{n}");
            let len = 24 - cursor.len();
            f(buf.get(..len).unwrap_or_default())
        }
    }
}

/// fnmatch has no `{a,b}` alternates but globset does: braces outside a
/// bracket expression are escaped so they match literally, as in OpenSIPS.
fn fnmatch_to_globset(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let mut rest = value;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                out.push('\\');
                if let Some(next) = rest.chars().next() {
                    out.push(next);
                    rest = &rest[next.len_utf8()..];
                }
            }
            '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '[' => match class_len(rest) {
                // Copy the bracket expression through its closing `]`.
                Some(len) => {
                    out.push('[');
                    out.push_str(&rest[..len]);
                    rest = &rest[len..];
                }
                // fnmatch: a `[` that is never closed is a literal.
                None => out.push_str("\\["),
            },
            c => out.push(c),
        }
    }
    out
}

/// Length of a bracket expression's body up to and including its closing
/// `]`, given the text after `[`; a `]` right after `[`, `[!` or `[^` is a
/// member, not the end. None when it is never closed.
fn class_len(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'!' | b'^')));
    if bytes.get(i) == Some(&b']') {
        i += 1;
    }
    bytes.get(i..)?.iter().position(|&b| b == b']').map(|p| i + p + 1)
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}
