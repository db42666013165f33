//! `tcp:host:port[/method]`, alias `stream:` (OpenSIPS event_stream): JSON-RPC
//! notifications written back to back on one persistent TCP connection (no
//! separator: the objects delimit themselves, exactly as OpenSIPS sends
//! them). With `/method` the JSON-RPC method is that instead of the event
//! name; `stream_event_param` adds the event name inside `params`.
//!
//! The connection is opened on first use and reopened after the peer closes
//! it or a write fails. A failed delivery is retried by the subscription
//! task with backoff (see [`Sink::retry_on_error`]), so events raised while
//! the listener is down wait in the subscriber's bounded queue and arrive
//! once it is back. Caveat shared with OpenSIPS' non-reliable mode: a write
//! into a connection the peer has just reset, before the reset is seen,
//! cannot be detected without application-level acknowledgements.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

use super::addr::HostPort;
use crate::events::{CloseFut, DeliverFut, Event, EventError, Sink, SinkContext, SinkError, payload};

pub(crate) fn parse(rest: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    let (addr, method) = match rest.split_once('/') {
        Some((addr, method)) => {
            if method.is_empty() || method.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(EventError::BadSocket(format!("tcp:{rest}: bad method after '/'")));
            }
            (addr, Some(method.to_owned()))
        }
        None => (rest, None),
    };
    let dst = HostPort::parse("tcp", addr)?;
    let socket = match &method {
        Some(m) => format!("tcp:{dst}/{m}"),
        None => format!("tcp:{dst}"),
    };
    let cfg = ctx.config();
    Ok(Arc::new(StreamSink {
        socket,
        dst,
        method,
        event_param: cfg.stream_event_param.clone(),
        timeout: Duration::from_millis(cfg.stream_timeout_ms),
        ctx: ctx.clone(),
        conn: Mutex::new(None),
    }))
}

struct StreamSink {
    socket: String,
    dst: HostPort,
    method: Option<String>,
    event_param: Option<String>,
    /// Per connect and per write.
    timeout: Duration,
    ctx: SinkContext,
    conn: Mutex<Option<TcpStream>>,
}

impl StreamSink {
    async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let method = self.method.as_deref().unwrap_or(&event.name);
        let extra = self.event_param.as_deref().map(|key| (key, &*event.name));
        let payload = payload::build(&event.params, method, extra);

        let mut conn = self.conn.lock().await;
        if conn.is_some() {
            // Let the runtime poll its I/O driver first, so a FIN that has
            // already arrived is reflected in the socket's readiness.
            tokio::task::yield_now().await;
        }
        if conn.as_ref().is_some_and(|s| !still_open(s)) {
            tracing::debug!(socket = %self.socket, "event stream closed by peer; reconnecting");
            *conn = None;
        }
        let stream = match &mut *conn {
            Some(stream) => stream,
            slot @ None => {
                let addr = self.dst.resolve_allowed(self.ctx.destinations()).await?;
                let stream =
                    timeout(self.timeout, TcpStream::connect(addr)).await.map_err(|_| SinkError::Timeout)??;
                let _ = stream.set_nodelay(true);
                slot.insert(stream)
            }
        };
        let result = match timeout(self.timeout, stream.write_all(payload.as_bytes())).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Err(SinkError::Io(e)),
            Err(_) => Err(SinkError::Timeout),
        };
        // A failed or partial write leaves the stream unusable mid-object.
        *conn = None;
        result
    }
}

/// Whether the peer has not closed the connection: reads (and discards)
/// whatever it sent — replies are of no interest without reliable mode —
/// until the socket would block (open) or reports EOF/error (closed).
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match stream.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

impl Sink for StreamSink {
    fn socket(&self) -> &str {
        &self.socket
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(self.send(event))
    }

    fn retry_on_error(&self) -> bool {
        true
    }

    fn check(&self) -> Result<(), EventError> {
        self.dst.check("tcp", self.ctx.destinations())
    }

    /// Ends the stream with a FIN after what was written.
    fn close(&self) -> CloseFut<'_> {
        Box::pin(async {
            if let Some(mut stream) = self.conn.lock().await.take() {
                let _ = stream.shutdown().await;
            }
        })
    }
}
