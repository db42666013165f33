//! Small helpers to pick SIP URIs apart, for routing decisions on the user
//! or host of a URI. Pure functions: usable (and tested) outside WebAssembly.
//!
//! They split on the delimiters of the RFC 3261 section 25.1 grammar and do
//! not validate or unescape: the host has already parsed the message.

/// The part after `sip:` / `sips:` (scheme matched case-insensitively).
fn after_scheme(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.trim().split_once(':')?;
    (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")).then_some(rest)
}

/// The user part of a SIP or SIPS URI: `alice` in
/// `sip:alice:secret@example.com;transport=tcp`. `None` for a URI without a
/// user (`sip:example.com`), with an empty one, or of another scheme.
pub fn user(uri: &str) -> Option<&str> {
    // '@' may not appear unescaped in host, parameters or headers, so the
    // first one ends the userinfo (which itself may hold ';' and '?').
    let (userinfo, _) = after_scheme(uri)?.split_once('@')?;
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _password)| user);
    (!user.is_empty()).then_some(user)
}

/// The host of a SIP or SIPS URI, without port: `example.com` in
/// `sip:alice@example.com:5060;transport=tcp`, `[2001:db8::1]` for an IPv6
/// reference. `None` for another scheme or an empty host.
pub fn host(uri: &str) -> Option<&str> {
    let rest = after_scheme(uri)?;
    let hostport = rest.split_once('@').map_or(rest, |(_, hostport)| hostport);
    let hostport = hostport.split([';', '?']).next().unwrap_or_default();
    let host = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport, |end| &hostport[..=end])
    } else {
        hostport.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some(host)
}

/// The URI of a header value in name-addr or addr-spec form:
/// `sip:bob@example.com` from `"Bob" <sip:bob@example.com>;tag=1` or from
/// `sip:bob@example.com;tag=1` (in the addr-spec form, `;` starts header
/// parameters, RFC 3261 section 20.10).
pub fn addr_spec(value: &str) -> &str {
    let value = value.trim();
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => {
                let inner = &value[i + 1..];
                return inner.split_once('>').map_or(inner, |(uri, _)| uri).trim();
            }
            _ => {}
        }
    }
    value.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_the_userinfo_without_password() {
        assert_eq!(user("sip:alice@example.com"), Some("alice"));
        assert_eq!(user("SIPS:alice:secret@example.com:5061;transport=tcp"), Some("alice"));
        assert_eq!(user("sip:+4930;phone-context=x@example.com"), Some("+4930;phone-context=x"));
        assert_eq!(user(" sip:trap@127.0.0.1:5060 "), Some("trap"));
    }

    #[test]
    fn user_is_none_without_a_user_or_for_other_schemes() {
        assert_eq!(user("sip:example.com"), None);
        assert_eq!(user("sip:example.com;lr"), None);
        assert_eq!(user("sip:@example.com"), None);
        assert_eq!(user("tel:+4930123"), None);
        assert_eq!(user("mailto:alice@example.com"), None);
        assert_eq!(user("alice@example.com"), None);
        assert_eq!(user(""), None);
    }

    #[test]
    fn host_drops_user_port_parameters_and_headers() {
        assert_eq!(host("sip:alice@example.com"), Some("example.com"));
        assert_eq!(host("sip:example.com:5060;lr"), Some("example.com"));
        assert_eq!(host("sip:bob@10.0.0.1:5080?subject=hi"), Some("10.0.0.1"));
        assert_eq!(host("sips:[2001:db8::1]:5061;transport=tcp"), Some("[2001:db8::1]"));
        assert_eq!(host("sip:alice@"), None);
        assert_eq!(host("tel:+4930123"), None);
    }

    #[test]
    fn addr_spec_takes_the_bracketed_uri_or_drops_header_parameters() {
        assert_eq!(addr_spec("\"Bob\" <sip:bob@example.com>;tag=1"), "sip:bob@example.com");
        assert_eq!(addr_spec("<sip:bob@example.com;transport=tcp>"), "sip:bob@example.com;transport=tcp");
        assert_eq!(addr_spec("  sip:bob@example.com;tag=1 "), "sip:bob@example.com");
        assert_eq!(addr_spec("\"a <b> \\\" c\" <sip:x@y>"), "sip:x@y");
        // An unterminated '<' yields the rest rather than failing.
        assert_eq!(addr_spec("<sip:x@y"), "sip:x@y");
        assert_eq!(addr_spec(""), "");
    }
}
