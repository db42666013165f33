//! Small JSON bodies without serde (a push notification, a lookup request):
//! an escaper for string literals and a builder for flat objects. Pure
//! functions: usable (and tested) outside WebAssembly.
//!
//! ```
//! use sipbox_guest::json::{self, Object};
//!
//! let body = Object::new().str("aor", "alice").int("ttl", 30).bool("voip", true).finish();
//! assert_eq!(body, r#"{"aor":"alice","ttl":30,"voip":true}"#);
//! assert_eq!(json::string("say \"hi\"\n"), r#""say \"hi\"\n""#);
//! ```

use core::fmt::Write as _;

/// `s` as a JSON string literal, quotes included (RFC 8259 section 7:
/// `"` and `\` escaped, control characters as `\n`, `\t`, ... or `\u00XX`).
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                let _ignored = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object built member by member, in order; [`finish`](Self::finish)
/// gives its text. Keys are escaped like values; a key given twice appears
/// twice (keep them unique).
#[derive(Debug, Clone, Default)]
pub struct Object {
    text: String,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    fn key(mut self, key: &str) -> Object {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        push_string(&mut self.text, key);
        self.text.push(':');
        self
    }

    /// Adds a string member.
    pub fn str(self, key: &str, value: &str) -> Object {
        let mut this = self.key(key);
        push_string(&mut this.text, value);
        this
    }

    /// Adds an integer member.
    pub fn int(self, key: &str, value: i64) -> Object {
        let mut this = self.key(key);
        this.text.push_str(&value.to_string());
        this
    }

    /// Adds a `true` / `false` member.
    pub fn bool(self, key: &str, value: bool) -> Object {
        let mut this = self.key(key);
        this.text.push_str(if value { "true" } else { "false" });
        this
    }

    /// Adds a member whose value is JSON text already (a nested object from
    /// another [`Object`], an array): inserted as is, not checked.
    pub fn raw(self, key: &str, json: &str) -> Object {
        let mut this = self.key(key);
        this.text.push_str(json);
        this
    }

    /// The object's JSON text.
    pub fn finish(self) -> String {
        if self.text.is_empty() { "{}".to_owned() } else { self.text + "}" }
    }
}

/// A flat object of string members: `{"aor":"alice","call_id":"..."}`.
pub fn object(fields: &[(&str, &str)]) -> String {
    fields.iter().fold(Object::new(), |object, (key, value)| object.str(key, value)).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(string(""), "\"\"");
        assert_eq!(string("plain é ✓"), "\"plain é ✓\"");
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(string("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        // A Call-ID with the characters SIP allows in it.
        assert_eq!(string("a84b4c76e66710@pc33.atlanta.com"), "\"a84b4c76e66710@pc33.atlanta.com\"");
    }

    #[test]
    fn objects_keep_member_order_and_types() {
        assert_eq!(Object::new().finish(), "{}");
        let nested = Object::new().str("k", "v").finish();
        let text = Object::new().str("a\"", "x").int("n", -3).bool("f", false).raw("o", &nested).finish();
        assert_eq!(text, r#"{"a\"":"x","n":-3,"f":false,"o":{"k":"v"}}"#);
        assert_eq!(object(&[("aor", "alice"), ("call_id", "c\"1")]), r#"{"aor":"alice","call_id":"c\"1"}"#);
        assert_eq!(object(&[]), "{}");
    }
}
