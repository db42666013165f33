//! Who may use the management interface, checked before a request is read
//! any further: the source against `[mi] allow` (both listeners), and for
//! HTTP the bearer token, the `Host` (DNS rebinding: a page on evil.example
//! resolving to 127.0.0.1 sends `Host: evil.example`), the `Origin` (a
//! browser's cross-site POST) and the `Content-Type` (an HTML form or a
//! `fetch` without CORS preflight can only send `text/plain`,
//! `application/x-www-form-urlencoded` or `multipart/form-data`). Plus one
//! request-rate bound over both listeners.

use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::IpNet;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::MiConfig;

/// Why a request is refused, with the HTTP status it gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) why: &'static str,
}

const fn refuse(status: u16, why: &'static str) -> Refusal {
    Refusal { status, why }
}

pub(crate) struct Guard {
    allow: Vec<IpNet>,
    token: Option<String>,
    hosts: Vec<String>,
    rate: Option<Mutex<Bucket>>,
}

/// A token bucket: `per_s` tokens a second, holding at most `per_s`.
struct Bucket {
    per_s: f64,
    tokens: f64,
    at: Instant,
}

impl Guard {
    /// # Errors
    /// An `allow` entry that is not an address or CIDR network.
    pub(crate) fn new(cfg: &MiConfig) -> anyhow::Result<Guard> {
        let allow = crate::config::parse_nets("mi.allow", &cfg.allow)?;
        let rate = (cfg.max_requests_per_s > 0).then(|| {
            let per_s = f64::from(cfg.max_requests_per_s);
            Mutex::new(Bucket { per_s, tokens: per_s, at: Instant::now() })
        });
        Ok(Guard {
            allow,
            token: (!cfg.token.is_empty()).then(|| cfg.token.clone()),
            hosts: cfg.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            rate,
        })
    }

    /// The source check alone (an HTTP connection, before it is served).
    pub(crate) fn admit_source(&self, src: IpAddr) -> Result<(), Refusal> {
        // An IPv4-mapped IPv6 source (a dual-stack socket) is the IPv4 it is.
        let src = src.to_canonical();
        if !self.allow.iter().any(|net| net.contains(&src)) {
            return Err(refuse(403, "this source is not in [mi] allow"));
        }
        Ok(())
    }

    /// The source check and the rate bound, for each request.
    pub(crate) fn admit(&self, src: IpAddr) -> Result<(), Refusal> {
        self.admit_source(src)?;
        if let Some(bucket) = &self.rate {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.per_s).min(b.per_s);
            b.at = now;
            if b.tokens < 1.0 {
                return Err(refuse(429, "too many MI requests ([mi] max_requests_per_s)"));
            }
            b.tokens -= 1.0;
        }
        Ok(())
    }

    /// The HTTP checks, given the request's headers (by lowercase name).
    pub(crate) fn check_http<'a>(&self, header: impl Fn(&str) -> Option<&'a str>) -> Result<(), Refusal> {
        if let Some(token) = &self.token {
            let given = header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
            if !bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())) {
                return Err(refuse(401, "a bearer token is required ([mi] token)"));
            }
        }
        match header("host") {
            Some(host) if self.host_allowed(strip_port(host)) => {}
            _ => return Err(refuse(403, "the Host header names no address or [mi] hosts entry of this server")),
        }
        if let Some(origin) = header("origin") {
            // "null" (a sandboxed frame, a file: page) has no host: refused.
            let host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
            if !host.is_some_and(|h| self.host_allowed(strip_port(h))) {
                return Err(refuse(403, "cross-origin requests are refused (Origin)"));
            }
        }
        let media = header("content-type").map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if media.as_deref() != Some("application/json") {
            return Err(refuse(415, "the MI takes Content-Type: application/json"));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok() || host == "localhost" || self.hosts.contains(&host)
    }
}

/// `host:port`, `[v6]:port` → the host part.
fn strip_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.find(']').map_or(hostport, |end| &hostport[..end + 2]);
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => hostport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(f: impl FnOnce(&mut MiConfig)) -> Guard {
        let mut cfg = MiConfig::default();
        f(&mut cfg);
        Guard::new(&cfg).unwrap()
    }

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn only_allowed_sources_are_admitted() {
        let g = guard(|_| {});
        assert!(g.admit("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.admit("::1".parse().unwrap()).is_ok());
        assert!(g.admit("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(g.admit("192.0.2.1".parse().unwrap()).unwrap_err().status, 403);
        let wide = guard(|c| c.allow = vec!["192.0.2.0/24".into()]);
        assert!(wide.admit("192.0.2.1".parse().unwrap()).is_ok());
        assert!(Guard::new(&MiConfig { allow: vec!["nonsense".into()], ..MiConfig::default() }).is_err());
    }

    #[test]
    fn browsers_are_kept_out() {
        let g = guard(|_| {});
        assert!(g.check_http(headers(&[("host", "127.0.0.1:8888"), JSON])).is_ok());
        assert!(
            g.check_http(headers(&[("host", "localhost:8888"), ("origin", "http://localhost:8888"), JSON])).is_ok()
        );
        assert!(g.check_http(headers(&[("host", "[::1]:8888"), JSON])).is_ok());
        let status = |h: &[(&str, &str)]| g.check_http(headers(h)).unwrap_err().status;
        assert_eq!(status(&[("host", "127.0.0.1:8888"), ("content-type", "text/plain")]), 415, "a simple CORS request");
        assert_eq!(status(&[("host", "127.0.0.1:8888")]), 415);
        assert_eq!(status(&[("host", "evil.example:8888"), JSON]), 403, "DNS rebinding");
        assert_eq!(status(&[JSON]), 403, "no Host");
        assert_eq!(status(&[("host", "127.0.0.1:8888"), ("origin", "https://evil.example"), JSON]), 403, "CSRF");
        assert_eq!(status(&[("host", "127.0.0.1:8888"), ("origin", "null"), JSON]), 403);
        let named = guard(|c| c.hosts = vec!["mi.internal".into()]);
        assert!(named.check_http(headers(&[("host", "MI.internal:8888"), JSON])).is_ok());
    }

    #[test]
    fn a_token_when_configured_is_required() {
        let g = guard(|c| c.token = "s3cret".into());
        let host = ("host", "127.0.0.1");
        assert_eq!(g.check_http(headers(&[host, JSON])).unwrap_err().status, 401);
        assert_eq!(g.check_http(headers(&[host, JSON, ("authorization", "Bearer nope")])).unwrap_err().status, 401);
        assert!(g.check_http(headers(&[host, JSON, ("authorization", "Bearer s3cret")])).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_rate_is_bounded() {
        let g = guard(|c| c.max_requests_per_s = 5);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert!(g.admit(lo).is_ok());
        }
        assert_eq!(g.admit(lo).unwrap_err().status, 429);
        tokio::time::advance(std::time::Duration::from_millis(400)).await;
        assert!(g.admit(lo).is_ok(), "refilled");
    }
}
