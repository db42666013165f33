//! Patterns in expectations: `*` matches any run of characters (none
//! included), every other character only itself. Nothing else is special,
//! so JSON bodies, URIs and header values need no escaping.

/// Does `text` match `pattern` as a whole?
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    // No '*': equality. Otherwise the first part is a prefix, the last a
    // suffix, and the ones between appear in order, leftmost first.
    let Some(first) = parts.next() else { return text.is_empty() };
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let middle: Vec<&str> = parts.collect();
    let Some((last, between)) = middle.split_last() else { return rest.is_empty() };
    for part in between {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_runs() {
        assert!(matches("sip:bob@*", "sip:bob@192.0.2.1:5060"));
        assert!(matches("*\"to\":\"bob\"*", r#"{"to":"bob","n":1}"#));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*b*c", "a-c"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("*", ""));
        assert!(!matches("ab*ba", "aba"));
    }
}
