//! JSON-RPC over HTTP/1.1, as OpenSIPS `mi_http`: `POST /mi` with one
//! request (or a batch) as the body; the reply is `200` with the JSON-RPC
//! response, JSON-RPC errors included (opensips-cli treats any other status
//! as a transport failure). `/json` (the old `mi_json` root) is accepted too.
//!
//! Bounds: [`MAX_HTTP_CONNECTIONS`] connections (the accept loop takes a
//! permit before accepting), [`MAX_REQUEST_BYTES`] per body (413), a body
//! must arrive within [`BODY_TIMEOUT`] (408), and a connection that sends no
//! request head for [`IDLE_TIMEOUT`] is closed. On the shutdown signal the
//! accept loop and every connection end. Who may ask is `guard.rs`'s: a
//! source outside `[mi] allow` is not served; a request without the token,
//! with a foreign `Host` or `Origin`, or not `application/json`, is refused
//! before its body is read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::guard::Guard;
use super::jsonrpc::{self, MiError};
use super::{MAX_HTTP_CONNECTIONS, MAX_REQUEST_BYTES, MiContext};
use crate::shutdown::Shutdown;

/// A connection idle (or dribbling its request head) this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole body must arrive within this.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A too-large body is still read (and discarded) up to this size before
/// the 413 goes out: closing a socket with unread data resets it, and the
/// client could lose the response.
const DRAIN_LIMIT: usize = 1024 * 1024;
/// Paths the MI answers on.
const PATHS: &[&str] = &["/mi", "/mi/", "/json", "/json/"];

/// The accept loop; ends on the shutdown signal, closing open connections too
/// (they are spawned under the same `shutdown`).
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<MiContext>, guard: Arc<Guard>, shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        // A slot first: bounds the connections served at once.
        let Some(Ok(permit)) = shutdown.unless_signalled(permits.clone().acquire_owned()).await else { return };
        let Some(accepted) = shutdown.unless_signalled(listener.accept()).await else { return };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "MI HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(refused) = guard.admit_source(peer.ip()) {
            tracing::debug!(%peer, why = refused.why, "MI HTTP connection refused");
            continue;
        }
        let (ctx, guard) = (ctx.clone(), guard.clone());
        let stop = shutdown.signalled();
        shutdown.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let (ctx, guard) = (ctx.clone(), guard.clone());
                async move { Ok::<_, Infallible>(handle(&ctx, &guard, req, peer).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES + 16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "MI HTTP connection closed with an error");
                    }
                }
                () = stop => {}
            }
        });
    }
}

/// One HTTP request → one response.
async fn handle(ctx: &MiContext, guard: &Guard, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    if !PATHS.contains(&req.uri().path()) {
        return plain(StatusCode::NOT_FOUND, "the MI answers JSON-RPC at POST /mi\n");
    }
    if req.method() != Method::POST {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "the MI takes JSON-RPC requests by POST\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let checked = guard
        .admit(peer.ip())
        .and_then(|()| guard.check_http(|name| req.headers().get(name).and_then(|v| v.to_str().ok())));
    if let Err(refused) = checked {
        tracing::debug!(%peer, why = refused.why, "MI HTTP request refused");
        let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::FORBIDDEN);
        let err = MiError::invalid_request(refused.why);
        let mut resp = json(status, &jsonrpc::response(Value::Null, Err(err)));
        if refused.status == 401 {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sipbox-mi\""));
        }
        return resp;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(req.into_body())).await {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => return too_large(),
        Ok(Err(BodyError::Read(err))) => {
            tracing::debug!(%peer, error = %err, "MI HTTP body could not be read");
            return plain(StatusCode::BAD_REQUEST, "the request body could not be read\n");
        }
        Err(_) => return plain(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time\n"),
    };
    match jsonrpc::handle_payload(ctx, &body).await {
        Some(reply) => json(StatusCode::OK, &reply),
        None => {
            // Only notifications: nothing to answer.
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
    }
}

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// The whole body, at most [`MAX_REQUEST_BYTES`]; beyond that the rest is
/// read and discarded up to [`DRAIN_LIMIT`] (see there), then `TooLarge`.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > DRAIN_LIMIT {
            return Err(BodyError::TooLarge);
        }
        if total > MAX_REQUEST_BYTES {
            buf = Vec::new();
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if total > MAX_REQUEST_BYTES { Err(BodyError::TooLarge) } else { Ok(buf) }
}

fn too_large() -> Response<Full<Bytes>> {
    let err = MiError::invalid_request(format!("the request exceeds {MAX_REQUEST_BYTES} bytes"));
    json(StatusCode::PAYLOAD_TOO_LARGE, &jsonrpc::response(Value::Null, Err(err)))
}

fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    // Serialising a `Value` cannot fail: its map keys are strings.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
