//! The HTTP client behind the `rest` import: one [`HttpClient`] per runtime,
//! given in [`RouteServices`](super::RouteServices). The server uses
//! [`HttpClient::network`] (reqwest, one connection pool for every route);
//! the sample harness gives one that records each request and answers from
//! its scenario, so a route's pushes are tested without a push service.
//!
//! The checks a route's request must pass (URL scheme, timeout range, header
//! values) and the suspension accounting stay in `host/rest.rs`: every
//! client sees only requests that passed them.

use std::sync::Arc;
use std::time::Duration;

/// Largest response body handed to a guest (its memory is bounded too).
pub const MAX_BODY: usize = 1 << 20;

/// A checked HTTP request of a route.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: reqwest::Method,
    /// An `http` or `https` URL.
    pub url: reqwest::Url,
    /// Header fields, without CR or LF.
    pub headers: Vec<(String, String)>,
    /// The body (`POST`).
    pub body: Option<Vec<u8>>,
    /// The whole exchange's limit, body included.
    pub timeout: Duration,
}

/// A response, its body at most [`MAX_BODY`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why an exchange produced no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No complete response within the request's timeout.
    #[error("HTTP request timed out")]
    Timeout,
    /// The response body exceeds [`MAX_BODY`].
    #[error("HTTP response body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    /// Connecting, sending or reading failed.
    #[error("HTTP request failed: {0}")]
    Transport(String),
}

/// The future of one exchange.
pub type HttpFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send>>;

/// Performs HTTP exchanges for routes.
pub trait HttpExchange: Send + Sync + 'static {
    /// One request and its response.
    fn exchange(&self, request: HttpRequest) -> HttpFuture;
}

/// The client a runtime's routes use. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient(Arc<dyn HttpExchange>);

impl HttpClient {
    /// Requests go over the network (reqwest, one connection pool).
    pub fn network() -> anyhow::Result<HttpClient> {
        let client = reqwest::Client::builder().user_agent(concat!("sipbox/", env!("CARGO_PKG_VERSION"))).build()?;
        Ok(HttpClient(Arc::new(Network(client))))
    }

    /// Requests go to `exchange` (the harness's recorder).
    pub fn with(exchange: Arc<dyn HttpExchange>) -> HttpClient {
        HttpClient(exchange)
    }

    pub(crate) fn exchange(&self, request: HttpRequest) -> HttpFuture {
        self.0.exchange(request)
    }
}

struct Network(reqwest::Client);

impl HttpExchange for Network {
    fn exchange(&self, request: HttpRequest) -> HttpFuture {
        let HttpRequest { method, url, headers, body, timeout } = request;
        let mut builder = self.0.request(method, url).timeout(timeout);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = body {
            builder = builder.body(body);
        }
        Box::pin(async move {
            let transport = |e: reqwest::Error| {
                if e.is_timeout() { HttpError::Timeout } else { HttpError::Transport(e.to_string()) }
            };
            let mut response = builder.send().await.map_err(transport)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(HttpError::BodyTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse { status, headers, body })
        })
    }
}
