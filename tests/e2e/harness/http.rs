//! HTTP peers of the server under test: [`HttpReceiver`], a tiny HTTP/1.1
//! server standing in for a push provider (it records each request and
//! answers a fixed status), and [`mi_call`], a JSON-RPC client for the
//! management interface (`POST /mi`), standing in for a media server or
//! opensips-cli.
//!
//! Plain blocking std sockets with read/write timeouts: every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::LOCALHOST;

/// A stalled peer is dropped after this long without progress.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head or body accepted (a push is a few hundred bytes).
const MAX_BYTES: usize = 1 << 20;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The request target, e.g. `/push`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// An HTTP server on an ephemeral loopback port that answers every request
/// with one status and hands the requests to the test, in arrival order.
pub struct HttpReceiver {
    addr: SocketAddr,
    requests: mpsc::Receiver<HttpRequest>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpReceiver {
    /// Starts answering `status` (e.g. 200, or 503 for a failing provider).
    pub fn start(status: u16) -> HttpReceiver {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind the HTTP receiver");
        let addr = listener.local_addr().expect("HTTP receiver address");
        let (tx, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                // One connection at a time: the server sends a push or two.
                match serve(conn, status) {
                    Ok(Some(req)) => {
                        if tx.send(req).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("HTTP receiver on {addr}: {e}"),
                }
            }
        });
        HttpReceiver { addr, requests, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request received within `within`, if any.
    pub fn next_within(&self, within: Duration) -> Option<HttpRequest> {
        self.requests.recv_timeout(within).ok()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept; the thread sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `conn` and answers `status`. `Ok(None)` for a
/// connection closed before a request (the wake-up connection of drop).
fn serve(conn: TcpStream, status: u16) -> std::io::Result<Option<HttpRequest>> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(None);
    };
    let mut conn = conn;
    let body = "{}";
    write!(
        conn,
        "HTTP/1.1 {status} E2E\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()?;
    Ok(Some(request))
}

fn bad(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// Parses an HTTP/1.1 request: head, then a Content-Length or chunked body.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    let mut head_len = line.len();
    loop {
        line.clear();
        head_len += reader.read_line(&mut line)?;
        if head_len > MAX_BYTES {
            return Err(bad("request head too large"));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').ok_or_else(|| bad(format!("bad header line {trimmed:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let body = if find("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader)?
    } else {
        let len: usize = find("Content-Length").map_or(Ok(0), |v| v.parse().map_err(|_| bad("bad Content-Length")))?;
        if len > MAX_BYTES {
            return Err(bad("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(HttpRequest { method, path, headers, body }))
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if body.len() + size > MAX_BYTES {
            return Err(bad("body too large"));
        }
        if size == 0 {
            // Trailers (none expected) up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?; // the CRLF after the chunk
    }
}

/// Calls MI command `method` with `params` over HTTP JSON-RPC at `addr` and
/// returns the JSON-RPC response object (`result` or `error`).
pub fn mi_call(addr: SocketAddr, method: &str, params: serde_json::Value) -> serde_json::Value {
    try_mi_call(addr, method, params).unwrap_or_else(|e| panic!("MI {method} at {addr} failed: {e}"))
}

fn try_mi_call(addr: SocketAddr, method: &str, params: serde_json::Value) -> std::io::Result<serde_json::Value> {
    let request = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    let mut conn = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        conn,
        "POST /mi HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{request}",
        request.len()
    )?;
    conn.flush()?;
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    if !status_line.starts_with("HTTP/1.1 200") {
        return Err(bad(format!("HTTP status {:?}", status_line.trim())));
    }
    let mut len = None;
    let mut chunked = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the response head"));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                len = value.trim().parse::<usize>().ok();
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    let body = match (chunked, len) {
        (true, _) => read_chunked(&mut reader)?,
        (false, Some(len)) if len <= MAX_BYTES => {
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            body
        }
        (false, Some(_)) => return Err(bad("response too large")),
        (false, None) => {
            let mut body = Vec::new();
            reader.take(MAX_BYTES as u64).read_to_end(&mut body)?;
            body
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| bad(format!("response is not JSON ({e}): {}", String::from_utf8_lossy(&body))))
}
