//! `http://` and `https://` webhooks: each event is POSTed as
//! `application/json`, the body being the OpenSIPS JSON-RPC notification
//! (`{"jsonrpc":"2.0","method":EVENT,"params":{..}}`, the payload the
//! datagram, stream and rabbitmq transports send).
//!
//! OpenSIPS has no HTTP event transport (the nearest is a script calling
//! `rest_client` from an `event_route`), so the socket is simply the URL,
//! kept intact: `http://hooks.example.com:8080/sip/events?token=abc`.
//! Credentials in the URL (`https://user:pass@host/`) become HTTP Basic
//! auth and are masked in the canonical socket shown by `subscribers_list`.
//!
//! Delivery: one shared client (one connection pool, keep-alive) for every
//! HTTP subscriber; a per-request timeout; bounded retries with exponential
//! backoff for connection errors, timeouts, 5xx, 408 and 429 (honouring a
//! `Retry-After` in seconds, capped); no retry for other statuses (a 4xx is
//! the receiver refusing the event, so sending it again cannot help);
//! redirects are not followed. Success is any 2xx. The sink does its own
//! retrying, so a failure it reports is final ([`Sink::retry_on_error`] is
//! false) and the subscription moves on to the next event. Subscriptions
//! expire as usual.
//!
//! Timeouts: `[events] http_timeout_ms` per attempt and
//! `http_connect_timeout_ms` per connection. Destinations obey the
//! `[events]` policy (`events::destinations`): an IP literal is checked when
//! subscribing, a host name by the client's resolver each time it connects,
//! so every address actually connected to was checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};

use crate::events::destinations::Destinations;
use crate::events::{DeliverFut, Event, EventError, Sink, SinkContext, SinkError};

/// Per-attempt limit on the whole exchange (connect, send, response, body).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit on establishing a connection (TCP, and TLS for https).
#[cfg(test)]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per event (the first plus retries).
pub(crate) const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled for each further one.
pub(crate) const BACKOFF: Duration = Duration::from_millis(250);
/// Upper bound on one wait between attempts, `Retry-After` included.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Response bodies are read (so the connection can be reused) up to this
/// size; a larger one is dropped with its connection.
const MAX_DRAIN: usize = 64 * 1024;
/// Idle keep-alive connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Timeout and retry settings of one HTTP sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Limit per attempt.
    pub timeout: Duration,
    /// Attempts per event, at least 1.
    pub attempts: u32,
    /// First wait between attempts (doubled each time, capped).
    pub backoff: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { timeout: REQUEST_TIMEOUT, attempts: ATTEMPTS, backoff: BACKOFF }
    }
}

/// The HTTP client of one bus, made on first use from its `[events]`
/// settings: one connection pool, and a resolver that applies the
/// destination policy. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Clients {
    client: Arc<OnceLock<Result<Client, String>>>,
}

impl Clients {
    /// Parses an `http://` / `https://` socket (the whole URL).
    pub(crate) fn parse(&self, socket: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
        let cfg = ctx.config();
        let client = self
            .client
            .get_or_init(|| build_client(Duration::from_millis(cfg.http_connect_timeout_ms), ctx.destinations_handle()))
            .clone()
            .map_err(|e| EventError::Refused(format!("{socket}: {e}")))?;
        let policy = Policy { timeout: Duration::from_millis(cfg.http_timeout_ms), ..Policy::default() };
        Ok(Arc::new(HttpSink::with_client(socket, policy, client, ctx.destinations_handle())?))
    }
}

/// Resolves host names for the HTTP client, keeping only the addresses the
/// destination policy allows (all refused: the connection fails saying why).
struct PolicyResolver(Arc<Destinations>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .filter(|a| match policy.check_resolved(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(why)) => Err(why.into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// A webhook subscriber.
pub(crate) struct HttpSink {
    url: Url,
    /// The URL as `subscribers_list` shows it (password masked).
    canonical: String,
    client: Client,
    policy: Policy,
    destinations: Arc<Destinations>,
}

impl HttpSink {
    /// A sink with its own client and the default destination policy (tests).
    #[cfg(test)]
    pub(crate) fn new(socket: &str, policy: Policy) -> Result<HttpSink, EventError> {
        let destinations = Arc::new(Destinations::from_config_or_refuse_all(&crate::events::EventsConfig::default()));
        let client = build_client(CONNECT_TIMEOUT, destinations.clone()).map_err(EventError::Refused)?;
        HttpSink::with_client(socket, policy, client, destinations)
    }

    /// Checks the URL; opens nothing.
    fn with_client(
        socket: &str,
        policy: Policy,
        client: Client,
        destinations: Arc<Destinations>,
    ) -> Result<HttpSink, EventError> {
        let bad = |why: &str| EventError::BadSocket(format!("{socket}: {why}"));
        let url = Url::parse(socket.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("missing host"));
        }
        if url.fragment().is_some() {
            return Err(bad("a URL fragment ('#...') is never sent; remove it"));
        }
        let mut shown = url.clone();
        if shown.password().is_some() {
            // Cannot fail: the URL has a host, so it can carry credentials.
            let _ = shown.set_password(Some("***"));
        }
        let policy = Policy { attempts: policy.attempts.max(1), ..policy };
        Ok(HttpSink { canonical: shown.to_string(), url, client, policy, destinations })
    }

    async fn post(&self, body: Bytes) -> Result<(), SinkError> {
        let mut wait = self.policy.backoff;
        let mut attempt = 1;
        loop {
            let (err, retry_after) = match self.attempt(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retryable(e, after)) => (e, after),
            };
            if attempt >= self.policy.attempts {
                return Err(err);
            }
            tracing::debug!(socket = %self.canonical, attempt, error = %err, "event POST failed; retrying");
            let pause = retry_after.map_or(wait, |a| a.max(wait)).min(MAX_BACKOFF);
            tokio::time::sleep(pause).await;
            wait = (wait * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<(), Failure> {
        let sent = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.policy.timeout)
            .body(body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(Failure::Retryable(SinkError::Timeout, None)),
            Err(e) if e.is_builder() => return Err(Failure::Final(self.error(&e))),
            Err(e) => return Err(Failure::Retryable(self.error(&e), None)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read a small body so the keep-alive connection goes back to the
        // pool; an error here only costs that connection.
        let mut drained = 0;
        while drained <= MAX_DRAIN {
            match resp.chunk().await {
                Ok(Some(chunk)) => drained += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            return Ok(());
        }
        let err = SinkError::Other(format!("{} answered HTTP {status}", self.canonical));
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Retryable(err, retry_after))
        } else {
            Err(Failure::Final(err))
        }
    }

    /// The error with its causes ("error sending request" alone says little).
    fn error(&self, e: &reqwest::Error) -> SinkError {
        let mut text = format!("POST {}: {e}", self.canonical);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        SinkError::Other(text)
    }
}

enum Failure {
    /// Try again (after the backoff, or the server's `Retry-After`).
    Retryable(SinkError, Option<Duration>),
    /// Sending it again cannot help.
    Final(SinkError),
}

impl Sink for HttpSink {
    fn socket(&self) -> &str {
        &self.canonical
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(async move {
            let body = Bytes::from(event.to_jsonrpc_string());
            self.post(body).await
        })
    }

    /// An IP-literal host must be allowed (names are checked by the resolver).
    fn check(&self) -> Result<(), EventError> {
        let host = self.url.host_str().unwrap_or_default();
        let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            return Ok(());
        };
        self.destinations.check_ip(ip).map_err(|e| EventError::DestinationRefused(format!("{}: {e}", self.canonical)))
    }
}

/// A client for HTTP sinks: one connection pool, host names resolved through
/// the destination policy. TLS uses rustls with its aws-lc-rs provider
/// (reqwest picks it when no process-wide provider is installed) and the
/// platform's trust store.
fn build_client(connect_timeout: Duration, destinations: Arc<Destinations>) -> Result<Client, String> {
    Client::builder()
        .user_agent(concat!("sipbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(POOL_IDLE)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .dns_resolver(PolicyResolver(destinations))
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {e}"))
}

#[cfg(test)]
mod tests;
