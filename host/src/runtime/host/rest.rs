//! `sipbox:route/rest`: outbound HTTP for routes (push notifications, lookups
//! in external services). The guest's fiber is suspended while the request
//! is in flight. Bounded: a timeout of at most [`MAX_TIMEOUT_MS`] and a
//! response body of at most [`http::MAX_BODY`] bytes. The exchange itself is
//! the runtime's [`http::HttpClient`]'s (the network, or the harness).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use crate::runtime::bindings::rest::{self, Header, Response, RestError};
use crate::runtime::budget::Budget;
use crate::runtime::replay::{Import, Journal, Journaled, fingerprint};
use crate::runtime::state::{HostState, suspended};
use crate::runtime::{Services, http};

/// Longest a route may wait for one HTTP exchange.
pub(crate) const MAX_TIMEOUT_MS: u32 = 60_000;

fn check_url(url: &str) -> Result<reqwest::Url, RestError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| RestError::BadUrl(format!("invalid URL {url:?}: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(RestError::BadUrl(format!("unsupported URL scheme {other:?} (http or https expected)"))),
    }
}

/// What `rest` reaches for one call ([`HostState::rest`]).
pub(crate) struct RestView<'a> {
    pub(crate) journal: Option<&'a mut Journal>,
    pub(crate) suspended_ms: &'a Arc<AtomicU64>,
    /// `[limits] max_http_requests`.
    pub(crate) budget: &'a mut Budget,
    /// For the HTTP connection pool.
    pub(crate) services: &'a Services,
}

impl Journaled for RestView<'_> {
    fn journal(&mut self) -> Option<&mut Journal> {
        self.journal.as_deref_mut()
    }
}

struct HasRest;

impl HasData for HasRest {
    type Data<'a> = RestView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    rest::add_to_linker::<HostState, HasRest>(linker, HostState::rest)
}

/// A route's HTTP request, as its import call gave it.
struct HttpRequest {
    method: reqwest::Method,
    url: String,
    headers: Vec<Header>,
    body: Option<Vec<u8>>,
    timeout_ms: u32,
}

impl RestView<'_> {
    /// One HTTP exchange, once per invocation: a replayed guest gets the
    /// response of its first run (`replay.rs`), and the request is not sent
    /// again.
    async fn http(&mut self, request: HttpRequest) -> wasmtime::Result<Result<Response, RestError>> {
        // As `once`: without a journal nothing is hashed or kept.
        if self.journal.is_none() {
            return Ok(self.exchange(request).await);
        }
        let import = if request.method == reqwest::Method::GET { Import::RestGet } else { Import::RestPost };
        let args = fingerprint(&request.url);
        if let Some(recorded) = self.replayed(import, args) {
            return recorded;
        }
        let result = self.exchange(request).await;
        self.record(import, args, result.clone());
        Ok(result)
    }

    async fn exchange(
        &mut self,
        HttpRequest { method, url, headers, body, timeout_ms }: HttpRequest,
    ) -> Result<Response, RestError> {
        if !self.budget.http_request(&self.services.limit_stats) {
            return Err(RestError::Transport(
                "this invocation made as many HTTP requests as [limits] max_http_requests allows".into(),
            ));
        }
        let url = check_url(&url)?;
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(RestError::BadTimeout(timeout_ms));
        }
        if let Some(h) = headers.iter().find(|h| h.name.contains(['\r', '\n']) || h.value.contains(['\r', '\n'])) {
            return Err(RestError::BadHeader(h.name.clone()));
        }
        let timeout = Duration::from_millis(timeout_ms.into());
        let headers = headers.into_iter().map(|h| (h.name, h.value)).collect();
        let exchange = self.services.http.exchange(http::HttpRequest { method, url, headers, body, timeout });
        // The client's timeout covers the whole exchange, body included; this
        // one bounds a client that would not keep to it.
        let fetch = async move {
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(http::HttpError::Timeout),
            }
        };
        let http::HttpResponse { status, headers, body } =
            suspended(self.suspended_ms, timeout, fetch).await.map_err(|e| match e {
                http::HttpError::Timeout => RestError::Timeout,
                http::HttpError::BodyTooLarge => RestError::BodyTooLarge,
                http::HttpError::Transport(message) => RestError::Transport(message),
            })?;
        let headers = headers.into_iter().map(|(name, value)| Header { name, value }).collect();
        Ok(Response { status, headers, body })
    }
}

impl rest::Host for RestView<'_> {
    async fn get(
        &mut self,
        url: String,
        headers: Vec<Header>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Response, RestError>> {
        self.http(HttpRequest { method: reqwest::Method::GET, url, headers, body: None, timeout_ms }).await
    }

    async fn post(
        &mut self,
        url: String,
        headers: Vec<Header>,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Response, RestError>> {
        self.http(HttpRequest { method: reqwest::Method::POST, url, headers, body: Some(body), timeout_ms }).await
    }
}
