//! The `rabbitmq:` socket grammar (OpenSIPS event_rabbitmq), parsed into a [`Target`]:
//!
//! ```text
//! rabbitmq:[user[:password]@]host[:port][/vhost]/[params?]routing_key
//! params = key[=value] *(";" key[=value])     exchange=NAME | persistent | vhost=NAME | tls
//! ```
//!
//! The virtual host (OpenSIPS's socket form only knows `/`) is a path segment
//! before the last one, as in an `amqp://` URI, or the `vhost=` parameter;
//! `%2F` inside it stands for `/`. So a routing key with a raw `/` must now
//! be written `%2F`.
//!
//! Accepted as well: `/exchange=NAME;routing_key` (params ended by the last `;`
//! when there is no `?`, the form in sipbox's issue text) and the OpenSIPS ≤ 3.x
//! `/exchange?routing_key` (a bare token before `?` names the exchange).
//! Defaults as OpenSIPS: `guest:guest`, port 5672, exchange `""`, vhost `/`.
//! `%XX` escapes are decoded in user, password, exchange and routing key (OpenSIPS
//! `un_escape`), so a password may hold `@`, `/`, `:` or `?` escaped.
//! `tls` connects over TLS (default port 5671, the server certificate checked
//! for the host name, against `[events] amqp_tls_ca_file` or the platform's
//! roots). OpenSIPS's `tls_domain=D` names a tls_mgm domain, which sipbox does
//! not have: it is refused, pointing at `tls`.

use std::fmt::Write as _;

/// The default AMQP port.
pub(crate) const DEFAULT_PORT: u16 = 5672;
/// The default AMQPS (AMQP over TLS) port.
pub(crate) const DEFAULT_TLS_PORT: u16 = 5671;
/// AMQP short strings (exchange, routing key) are at most 255 bytes.
const MAX_SHORTSTR: usize = 255;

/// Where and how to publish: one parsed `rabbitmq:` socket.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host name or address; an IPv6 literal keeps its brackets (`[::1]`).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// AMQP user.
    pub user: String,
    /// AMQP password (never printed: see [`Target::canonical`]).
    pub password: String,
    /// Exchange to publish to; `""` is the default (direct-to-queue) exchange.
    pub exchange: String,
    /// Routing key (with the default exchange: the queue name).
    pub routing_key: String,
    /// Publish with `delivery_mode=2`.
    pub persistent: bool,
    /// AMQP virtual host; `/` by default.
    pub vhost: String,
    /// Connect over TLS.
    pub tls: bool,
}

// Hand-written so that the password never reaches a log line.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl Target {
    /// The canonical socket: always user and port, no password (it ends up in
    /// `subscribers_list`), components %-escaped so that it parses back to the
    /// same target. Two subscriptions are the same subscriber when these are
    /// equal, which is OpenSIPS `rmq_match` (host, port, user, exchange, key).
    pub(crate) fn canonical(&self) -> String {
        let mut s = String::with_capacity(32 + self.host.len() + self.routing_key.len());
        s.push_str("rabbitmq:");
        escape_into(&mut s, &self.user);
        let _ = write!(s, "@{}:{}/", self.host, self.port);
        if self.vhost != "/" {
            escape_into(&mut s, &self.vhost);
            s.push('/');
        }
        let mut params = Vec::new();
        if !self.exchange.is_empty() {
            let mut p = String::from("exchange=");
            escape_into(&mut p, &self.exchange);
            params.push(p);
        }
        if self.persistent {
            params.push("persistent".to_owned());
        }
        if self.tls {
            params.push("tls".to_owned());
        }
        if !params.is_empty() {
            s.push_str(&params.join(";"));
            s.push('?');
        }
        escape_into(&mut s, &self.routing_key);
        s
    }
}

/// Parses a whole `rabbitmq:...` socket. The error says what is wrong.
pub(crate) fn parse_target(socket: &str) -> Result<Target, String> {
    let rest =
        socket.strip_prefix("rabbitmq:").ok_or_else(|| "a RabbitMQ socket starts with 'rabbitmq:'".to_owned())?;
    let (authority, tail) = rest
        .split_once('/')
        .ok_or_else(|| "missing '/' before the routing key (rabbitmq:host[:port]/routing_key)".to_owned())?;
    // The password may hold ':' but not a raw '@' or '/' (escape them as %40, %2F).
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => ("guest".to_owned(), "guest".to_owned()),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            if user.is_empty() {
                return Err("empty user before '@'".to_owned());
            }
            (unescape(user, "user")?, unescape(pass, "password")?)
        }
    };
    let (host, port) = split_host_port(hostport)?;
    let mut vhost = "/".to_owned();
    let tail = match tail.split_once('/') {
        Some((v, rest)) => {
            vhost = unescape(v, "vhost")?;
            if vhost.is_empty() {
                return Err("empty vhost between '/'s (omit it for the default vhost '/')".to_owned());
            }
            rest
        }
        None => tail,
    };

    let (params, key) = match tail.split_once('?') {
        Some((p, k)) => (Some(p), k),
        None => match tail.rsplit_once(';') {
            Some((p, k)) => (Some(p), k),
            None => (None, tail),
        },
    };
    let mut exchange = String::new();
    let mut persistent = false;
    let mut tls = false;
    for param in params.into_iter().flat_map(|p| p.split(';')).filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("exchange", v)) => exchange = unescape(v, "exchange")?,
            Some(("vhost", v)) if !v.is_empty() => vhost = unescape(v, "vhost")?,
            Some(("tls_domain", _)) => {
                return Err("TLS via tls_domain (an OpenSIPS tls_mgm domain) is not supported: use the 'tls' \
                            parameter, with events.amqp_tls_ca_file for a private CA"
                    .to_owned());
            }
            None if param == "persistent" => persistent = true,
            None if param == "tls" => tls = true,
            Some(("persistent", v)) => {
                persistent = match v {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("bad value for persistent: '{v}'")),
                }
            }
            Some((k, _)) => return Err(format!("unknown parameter '{k}' (expected exchange=, vhost=, persistent)")),
            // OpenSIPS <= 3.x: `/exchange?routing_key`.
            None if tail.contains('?') => exchange = unescape(param, "exchange")?,
            None => return Err(format!("unknown parameter '{param}' (expected exchange=, persistent)")),
        }
    }
    let routing_key = unescape(key, "routing key")?;
    if routing_key.is_empty() && exchange.is_empty() {
        return Err("missing routing key (the queue name when no exchange= is given)".to_owned());
    }
    for (what, v) in [("exchange", &exchange), ("routing key", &routing_key)] {
        if v.len() > MAX_SHORTSTR {
            return Err(format!("{what} longer than {MAX_SHORTSTR} bytes"));
        }
    }
    if vhost.len() > MAX_SHORTSTR {
        return Err(format!("vhost longer than {MAX_SHORTSTR} bytes"));
    }
    let port = port.unwrap_or(if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT });
    Ok(Target { host, port, user, password, exchange, routing_key, persistent, vhost, tls })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unterminated '[' in host")?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(format!("bad IPv6 address '[{addr}]'"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ']' in host")?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if h.is_empty() {
            return Err("missing host".to_owned());
        }
        if !h.chars().all(ok) {
            return Err(format!("bad host '{h}'"));
        }
        (h.to_owned(), p)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("bad port '{p}'")),
        },
    };
    Ok((host, port))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn unescape(s: &str, what: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => out.push(v),
                None => return Err(format!("bad %-escape in {what}")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{what} is not UTF-8 after %-decoding"))
}

/// %-escapes the characters the grammar gives a meaning to.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | '@' | ':' | '/' | '?' | ';' | '=' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_control() || c == ' ' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        parse_target(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn defaults_like_opensips() {
        let x = t("rabbitmq:127.0.0.1/pike");
        assert_eq!((x.host.as_str(), x.port), ("127.0.0.1", 5672));
        assert_eq!((x.user.as_str(), x.password.as_str()), ("guest", "guest"));
        assert_eq!((x.exchange.as_str(), x.routing_key.as_str(), x.persistent), ("", "pike", false));
        assert_eq!(x, t("rabbitmq:guest:guest@127.0.0.1:5672/pike"));
        assert_eq!(x.canonical(), "rabbitmq:guest@127.0.0.1:5672/pike");
    }

    #[test]
    fn params_forms() {
        let x = t("rabbitmq:u:p@mq.example.com:5673/exchange=events;persistent?E_UL");
        assert_eq!((x.user.as_str(), x.password.as_str()), ("u", "p"));
        assert_eq!((x.host.as_str(), x.port), ("mq.example.com", 5673));
        assert_eq!((x.exchange.as_str(), x.routing_key.as_str(), x.persistent), ("events", "E_UL", true));
        // The issue's form: params ended by ';'.
        assert_eq!(x, t("rabbitmq:u:p@mq.example.com:5673/exchange=events;persistent;E_UL"));
        // OpenSIPS <= 3.x: bare exchange before '?'.
        let old = t("rabbitmq:h/events?key");
        assert_eq!((old.exchange.as_str(), old.routing_key.as_str()), ("events", "key"));
        // A fanout exchange needs no key.
        assert_eq!(t("rabbitmq:h/exchange=fan?").routing_key, "");
        // user without password.
        let u = t("rabbitmq:bob@h/q");
        assert_eq!((u.user.as_str(), u.password.as_str()), ("bob", ""));
    }

    #[test]
    fn escapes_and_ipv6() {
        let x = t("rabbitmq:us%40er:p%2F%3Fw:d@[::1]:1234/exchange=a%3Bb?k%20ey");
        assert_eq!((x.user.as_str(), x.password.as_str()), ("us@er", "p/?w:d"));
        assert_eq!((x.host.as_str(), x.port), ("[::1]", 1234));
        assert_eq!((x.exchange.as_str(), x.routing_key.as_str()), ("a;b", "k ey"));
        // Canonical drops the password and parses back to the same target.
        let c = x.canonical();
        assert!(!c.contains("p%2F"), "{c}");
        let back = t(&c);
        assert_eq!(
            (back.user, back.host, back.port, back.exchange, back.routing_key),
            (x.user.clone(), x.host.clone(), x.port, x.exchange.clone(), x.routing_key.clone())
        );
        assert!(!format!("{x:?}").contains("p/?w"));
    }

    #[test]
    fn tls_parameter() {
        let x = t("rabbitmq:u:p@mq.example.com/tls;exchange=e?k");
        assert!(x.tls);
        assert_eq!(x.port, DEFAULT_TLS_PORT, "amqps default port");
        assert_eq!(x.canonical(), "rabbitmq:u@mq.example.com:5671/exchange=e;tls?k");
        // The canonical form has no password; everything else parses back.
        assert_eq!(Target { password: x.password.clone(), ..t(&x.canonical()) }, x);
        assert_eq!(t("rabbitmq:h:5000/tls;k").port, 5000);
        assert!(!t("rabbitmq:h/k").tls);
    }

    #[test]
    fn vhosts() {
        let x = t("rabbitmq:u:p@h/prod/exchange=ev;persistent?key");
        assert_eq!((x.vhost.as_str(), x.exchange.as_str(), x.routing_key.as_str()), ("prod", "ev", "key"));
        assert_eq!(x.canonical(), "rabbitmq:u@h:5672/prod/exchange=ev;persistent?key");
        assert_eq!(t(&x.canonical()).vhost, "prod");
        assert_eq!(t("rabbitmq:h/vhost=prod;q").vhost, "prod");
        let slash = t("rabbitmq:h/a%2Fb/q");
        assert_eq!((slash.vhost.as_str(), slash.routing_key.as_str()), ("a/b", "q"));
        assert_eq!(Target { password: slash.password.clone(), ..t(&slash.canonical()) }, slash);
        assert_eq!(t("rabbitmq:h/q").vhost, "/");
        assert!(parse_target("rabbitmq:h//q").expect_err("empty").contains("empty vhost"));
    }

    #[test]
    fn malformed_sockets_say_why() {
        for (s, want) in [
            ("udp:1.2.3.4:5", "starts with 'rabbitmq:'"),
            ("rabbitmq:host", "missing '/'"),
            ("rabbitmq:/q", "missing host"),
            ("rabbitmq:h:0/q", "bad port"),
            ("rabbitmq:h:70000/q", "bad port"),
            ("rabbitmq:h:+5/q", "bad port"),
            ("rabbitmq:h:x/q", "bad port"),
            ("rabbitmq:h h/q", "bad host"),
            ("rabbitmq:[zz]/q", "bad IPv6"),
            ("rabbitmq:[::1/q", "unterminated"),
            ("rabbitmq:@h/q", "empty user"),
            ("rabbitmq:h/", "missing routing key"),
            ("rabbitmq:h/tls_domain=x?q", "TLS"),
            ("rabbitmq:h/colour=red?q", "unknown parameter 'colour'"),
            ("rabbitmq:h/bogus;q", "unknown parameter 'bogus'"),
            ("rabbitmq:h/persistentx;q", "unknown parameter 'persistentx'"),
            ("rabbitmq:h/persistent=maybe?q", "bad value for persistent"),
            ("rabbitmq:h/q%zz", "bad %-escape in routing key"),
            ("rabbitmq:h/q%ff", "not UTF-8"),
            ("rabbitmq:h/q%", "bad %-escape"),
        ] {
            let e = parse_target(s).expect_err(s);
            assert!(e.contains(want), "{s}: {e}");
        }
        let long = format!("rabbitmq:h/{}", "k".repeat(256));
        assert!(parse_target(&long).expect_err("long").contains("longer than 255"));
        assert!(parse_target(&format!("rabbitmq:h/{}", "k".repeat(255))).is_ok());
    }
}
