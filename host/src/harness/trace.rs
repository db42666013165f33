//! What happened during a scenario, each item stamped with its virtual
//! time: every SIP message on the in-memory wire (both ways), the HTTP
//! requests routes made, the events raised, the log lines, the MI results
//! and the steps that could not be carried out. The expectations are
//! checked against it once the scenario has run, and a failure quotes it.
//!
//! The recorders here are the harness's side of the seams the production
//! code offers: an [`HttpExchange`] for `rest`, a [`RaiseObserver`] on the
//! event bus, and a `tracing` layer for the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context as LayerContext;

use super::scenario::HttpStub;
use super::wildcard;
use crate::events::{Event, RaiseObserver};
use crate::runtime::{HttpError, HttpExchange, HttpFuture, HttpRequest, HttpResponse};
use crate::sip;

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To the proxy (a caller's request, a phone's response).
    In,
    /// From the proxy (a relayed request, a reply upstream).
    Out,
}

/// One SIP message on the wire.
#[derive(Clone, Debug)]
pub struct WireMessage {
    /// Virtual time.
    pub at: Duration,
    /// Which way.
    pub direction: Direction,
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// The message.
    pub msg: sip::Message,
}

/// One HTTP request a route made.
#[derive(Clone, Debug)]
pub struct HttpCall {
    /// Virtual time.
    pub at: Duration,
    /// Method.
    pub method: String,
    /// URL.
    pub url: String,
    /// Request header fields.
    pub headers: Vec<(String, String)>,
    /// Request body, as text (lossy).
    pub body: String,
    /// The status answered (0: the request failed).
    pub status: u16,
}

/// One event raised.
#[derive(Clone, Debug)]
pub struct RaisedEvent {
    /// Virtual time.
    pub at: Duration,
    /// The event.
    pub event: Event,
}

/// One log line.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// Virtual time.
    pub at: Duration,
    /// "ERROR", "WARN", "INFO", "DEBUG", "TRACE".
    pub level: tracing::Level,
    /// The event's target (`route` for a route's own log).
    pub target: String,
    /// The message, then its fields as `key=value`.
    pub text: String,
}

/// The result of an MI command a step ran.
#[derive(Clone, Debug)]
pub struct MiCall {
    /// Virtual time.
    pub at: Duration,
    /// The step's name, if it has one.
    pub name: Option<String>,
    /// Command.
    pub method: String,
    /// The whole JSON-RPC response.
    pub response: serde_json::Value,
}

/// Everything recorded.
#[derive(Debug, Default)]
pub struct Trace {
    /// SIP messages, in the order they were sent.
    pub wire: Vec<WireMessage>,
    /// HTTP requests.
    pub http: Vec<HttpCall>,
    /// Events raised.
    pub events: Vec<RaisedEvent>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// MI results.
    pub mi: Vec<MiCall>,
    /// Steps the harness could not carry out, and why.
    pub problems: Vec<(Duration, String)>,
}

/// The trace, shared by the recorders and the driver. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    trace: Arc<Mutex<Trace>>,
}

impl Recorder {
    /// A recorder whose time 0 is now.
    pub fn new() -> Recorder {
        Recorder { start: Instant::now(), trace: Arc::default() }
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The instant of virtual time `at`.
    pub fn instant(&self, at: Duration) -> Instant {
        self.start + at
    }

    /// The trace, locked.
    pub fn lock(&self) -> MutexGuard<'_, Trace> {
        self.trace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a step that could not be carried out.
    pub fn problem(&self, what: String) {
        let at = self.now();
        self.lock().problems.push((at, what));
    }

    /// Takes the trace once the scenario has ended.
    pub fn take(&self) -> Trace {
        std::mem::take(&mut *self.lock())
    }

    /// The bus observer that records every event raised.
    pub fn event_observer(&self) -> RaiseObserver {
        let recorder = self.clone();
        Arc::new(move |event: &Event| {
            let at = recorder.now();
            recorder.lock().events.push(RaisedEvent { at, event: event.clone() });
        })
    }

    /// The `rest` client: records each request and answers from `stubs`.
    pub fn http_client(&self, stubs: Vec<HttpStubAnswer>) -> Arc<dyn HttpExchange> {
        Arc::new(StubbedHttp { recorder: self.clone(), stubs: Arc::new(stubs) })
    }

    /// The `tracing` layer that records log lines.
    pub fn log_layer(&self) -> LogLayer {
        LogLayer { recorder: self.clone() }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// A stub as the HTTP recorder uses it.
#[derive(Clone, Debug)]
pub struct HttpStubAnswer {
    url: String,
    method: Option<String>,
    response: HttpResponse,
    delay: Duration,
}

impl From<&HttpStub> for HttpStubAnswer {
    fn from(s: &HttpStub) -> HttpStubAnswer {
        HttpStubAnswer {
            url: s.url.clone(),
            method: s.method.clone(),
            response: HttpResponse {
                status: s.status,
                headers: s.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                body: s.body.clone().into_bytes(),
            },
            delay: s.delay.unwrap_or_default(),
        }
    }
}

struct StubbedHttp {
    recorder: Recorder,
    stubs: Arc<Vec<HttpStubAnswer>>,
}

impl HttpExchange for StubbedHttp {
    fn exchange(&self, request: HttpRequest) -> HttpFuture {
        let url = request.url.to_string();
        let method = request.method.to_string();
        let stub = self
            .stubs
            .iter()
            .find(|s| {
                s.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&method)) && wildcard::matches(&s.url, &url)
            })
            .cloned();
        // Unstubbed services answer 200 with an empty body: a push gateway
        // that accepted the push.
        let (response, delay) = match stub {
            Some(s) => (s.response, s.delay),
            None => (HttpResponse { status: 200, headers: Vec::new(), body: Vec::new() }, Duration::ZERO),
        };
        let call = HttpCall {
            at: self.recorder.now(),
            method,
            url,
            headers: request.headers.clone(),
            body: String::from_utf8_lossy(request.body.as_deref().unwrap_or_default()).into_owned(),
            status: response.status,
        };
        self.recorder.lock().http.push(call);
        let timeout = request.timeout;
        Box::pin(async move {
            if delay >= timeout {
                tokio::time::sleep(timeout).await;
                return Err(HttpError::Timeout);
            }
            tokio::time::sleep(delay).await;
            Ok(response)
        })
    }
}

/// Records log lines with their virtual time.
pub struct LogLayer {
    recorder: Recorder,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let line = LogLine {
            at: self.recorder.now(),
            level: *meta.level(),
            target: meta.target().to_owned(),
            text: text.finish(),
        };
        self.recorder.lock().logs.push(line);
    }
}

#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
}

impl TextVisitor {
    fn finish(self) -> String {
        if self.fields.is_empty() { self.message } else { format!("{}{}", self.message, self.fields) }
    }
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push_str(&format!(" {}={value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?}"));
        } else {
            self.fields.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}
