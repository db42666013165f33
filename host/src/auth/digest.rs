//! The digest computation of RFC 3261 section 22.4 with RFC 7616's
//! algorithms as RFC 8760 brings them to SIP (MD5, SHA-256, SHA-512-256),
//! and the parser of the `Digest` credentials a UA sends in `Authorization`
//! or `Proxy-Authorization`. Pure functions: no state, no I/O.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256, Sha512_256};

/// A digest algorithm (the `algorithm` parameter; RFC 8760 section 2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: what every SIP phone since RFC 2617 speaks; weak, kept for old phones.
    Md5,
    /// `SHA-256` (RFC 8760).
    Sha256,
    /// `SHA-512-256` (RFC 8760).
    Sha512_256,
}

impl Algorithm {
    /// Every algorithm, in the order of preference a challenge lists them.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5];

    /// The token of the `algorithm` parameter.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// The lowercase hex of `H(data)`.
    pub fn hex_hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 => hex(&Sha512_256::digest(data)),
        }
    }

    /// `HA1 = H(username ":" realm ":" password)`, what the subscriber store keeps.
    pub fn ha1(self, user: &str, realm: &str, password: &str) -> String {
        self.hex_hash(format!("{user}:{realm}:{password}").as_bytes())
    }

    /// The expected `response` for `qop=auth` (RFC 7616 section 3.4.1):
    /// `H(HA1:nonce:nc:cnonce:qop:H(method:uri))`.
    pub fn response(self, ha1: &str, method: &str, c: &Credentials<'_>) -> String {
        let ha2 = self.hex_hash(format!("{method}:{}", c.uri).as_bytes());
        let data = format!("{ha1}:{}:{}:{}:{}:{ha2}", c.nonce, c.nc, c.cnonce, c.qop);
        self.hex_hash(data.as_bytes())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    /// Tokens compare case-insensitively (RFC 7616 section 3.3).
    fn from_str(s: &str) -> Result<Algorithm, String> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.token().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown digest algorithm {s:?} (MD5, SHA-256, SHA-512-256)"))
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Algorithm, D::Error> {
        String::deserialize(de)?.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.token())
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The parameters of one `Digest` credentials header, borrowed from it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    /// `None`: the parameter was absent (RFC 7616: MD5).
    pub algorithm: Option<&'a str>,
    pub cnonce: &'a str,
    pub nc: &'a str,
    pub qop: &'a str,
    pub opaque: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// Parses `Digest name=value, ...`. Quoted values keep their escapes
    /// (`\"`): a username holding one does not match any subscriber, which is
    /// the right answer for it. Unknown parameters are ignored (RFC 7616).
    ///
    /// # Errors
    /// Not the `Digest` scheme, a parameter that does not parse, or one of
    /// username, realm, nonce, uri, response missing (the message says which).
    pub fn parse(value: &'a str) -> Result<Credentials<'a>, String> {
        let mut c = Credentials::default();
        let mut seen = [false; 5];
        for (name, val) in digest_params(value)? {
            let slot = |i: usize, seen: &mut [bool; 5]| seen[i] = true;
            match name.to_ascii_lowercase().as_str() {
                "username" => {
                    c.username = val;
                    slot(0, &mut seen);
                }
                "realm" => {
                    c.realm = val;
                    slot(1, &mut seen);
                }
                "nonce" => {
                    c.nonce = val;
                    slot(2, &mut seen);
                }
                "uri" => {
                    c.uri = val;
                    slot(3, &mut seen);
                }
                "response" => {
                    c.response = val;
                    slot(4, &mut seen);
                }
                "algorithm" => c.algorithm = Some(val),
                "cnonce" => c.cnonce = val,
                "nc" => c.nc = val,
                "qop" => c.qop = val,
                "opaque" => c.opaque = Some(val),
                _ => {}
            }
        }
        let names = ["username", "realm", "nonce", "uri", "response"];
        if let Some(missing) = names.iter().zip(seen).find(|(_, seen)| !seen).map(|(n, _)| n) {
            return Err(format!("digest credentials without {missing}"));
        }
        Ok(c)
    }
}

/// The `name=value` parameters of a `Digest` challenge or credentials
/// header, in order, quoted values without their quotes (escapes kept).
///
/// # Errors
/// Another scheme, a parameter without `=`, an unterminated quoted value,
/// or junk between a value and the next comma.
pub fn digest_params(value: &str) -> Result<Vec<(&str, &str)>, String> {
    let value = value.trim();
    let (scheme, mut rest) = value.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(format!("credentials scheme {scheme:?} is not Digest"));
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|ch: char| ch.is_ascii_whitespace() || ch == ',');
        if rest.is_empty() {
            return Ok(params);
        }
        let (name, after) = rest.split_once('=').ok_or("a digest parameter has no '='")?;
        let name = name.trim();
        let after = after.trim_start();
        let (val, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = closing_quote(quoted).ok_or_else(|| format!("unterminated quoted value of {name}"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim_end(), &after[end..])
        };
        if !next.trim_start().is_empty() && !next.trim_start().starts_with(',') {
            return Err(format!("junk after the value of {name}"));
        }
        params.push((name, val));
        rest = next;
    }
}

/// The index of the quote ending a quoted-string whose opening quote is
/// already consumed, skipping `\`-escaped characters.
fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Escapes a value for a quoted-string parameter of a challenge.
pub fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 section 3.5's worked example (with MD5), which every
    /// implementation checks itself against.
    #[test]
    fn rfc2617_example_response() {
        let c = Credentials {
            username: "Mufasa",
            realm: "testrealm@host.com",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            uri: "/dir/index.html",
            response: "",
            algorithm: None,
            cnonce: "0a4f113b",
            nc: "00000001",
            qop: "auth",
            opaque: None,
        };
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(Algorithm::Md5.response(&ha1, "GET", &c), "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 section 3.9.1's SHA-256 example.
    #[test]
    fn rfc7616_sha256_example_response() {
        let c = Credentials {
            username: "Mufasa",
            realm: "http-auth@example.org",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            uri: "/dir/index.html",
            response: "",
            algorithm: Some("SHA-256"),
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: "00000001",
            qop: "auth",
            opaque: None,
        };
        let ha1 = Algorithm::Sha256.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(
            Algorithm::Sha256.response(&ha1, "GET", &c),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn credentials_parse_quoted_tokens_and_spacing() {
        let v = r#"Digest username="alice",realm="sipbox" , nonce="n1", uri="sip:127.0.0.1",
            response="abc", algorithm=SHA-256, cnonce="c\"x", qop=auth, nc=00000002, opaque="", foo=bar"#;
        let c = Credentials::parse(v).unwrap();
        assert_eq!((c.username, c.realm, c.nonce, c.uri), ("alice", "sipbox", "n1", "sip:127.0.0.1"));
        assert_eq!((c.algorithm, c.qop, c.nc, c.cnonce), (Some("SHA-256"), "auth", "00000002", r#"c\"x"#));
        assert_eq!(c.opaque, Some(""));
    }

    #[test]
    fn bad_credentials_say_why() {
        for (v, why) in [
            ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "not Digest"),
            (r#"Digest username="a", realm="r", nonce="n", uri="u""#, "without response"),
            (r#"Digest username="a"#, "unterminated"),
            (r#"Digest username"#, "no '='"),
            (r#"Digest username="a"x, realm="r""#, "junk"),
        ] {
            let err = Credentials::parse(v).unwrap_err();
            assert!(err.contains(why), "{v}: {err}");
        }
    }

    #[test]
    fn algorithms_parse_case_insensitively() {
        assert_eq!("sha-512-256".parse::<Algorithm>().unwrap(), Algorithm::Sha512_256);
        assert!("SHA-1".parse::<Algorithm>().is_err());
    }
}
