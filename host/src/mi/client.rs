//! The `sipbox mi CMD [ARGS...]` client: builds params the way opensips-cli
//! does and posts one JSON-RPC request over HTTP/1.1 (a plain
//! `TcpStream`, no HTTP client dependency). It also talks to a real
//! OpenSIPS `mi_http`.
//!
//! Params, as opensips-cli's `mi` module builds them:
//! - if every argument is `name=value`, params are named (an object);
//!   otherwise positional (an array);
//! - values stay strings (the server converts numeric strings where it
//!   expects integers, as OpenSIPS does);
//! - for commands whose trailing params form an array (`get_statistics`,
//!   `raise_event`, ...) the arguments from that position on are grouped
//!   into one array. sipbox addition: `raise_event EVENT '{"k":"v"}'` (one
//!   argument that is a JSON object) sends it as the JSON-object string
//!   OpenSIPS expects for named event params.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where `sipbox mi` sends requests unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8888/mi";
/// Whole exchange (connect, send, read the reply) must end within this.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply read (a big `ul_dump`).
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// opensips-cli's `MI_ARRAY_PARAMS_COMMANDS`: (command, index, name) of the
/// param that collects the remaining arguments into an array.
const ARRAY_PARAMS: &[(&str, usize, &str)] = &[
    ("fs_subscribe", 1, "events"),
    ("fs_unsubscribe", 1, "events"),
    ("b2b_trigger_scenario", 1, "scenario_params"),
    ("dlg_push_var", 2, "DID"),
    ("get_statistics", 0, "statistics"),
    ("core:get_statistics", 0, "statistics"),
    ("list_statistics", 0, "statistics"),
    ("reset_statistics", 0, "statistics"),
    ("trace_start", 0, "filter"),
    ("raise_event", 1, "params"),
    ("evi:raise", 1, "params"),
];

/// A JSON-RPC error returned by the server (`code: message (data)`, as
/// opensips-cli prints it). Reachable with `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub code: i64,
    pub message: String,
    pub data: Option<String>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, " ({data})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// Runs one MI command against `url` (e.g. [`DEFAULT_URL`]) with CLI-style
/// arguments and returns its `result`.
///
/// # Errors
/// A bad URL, a connection or HTTP failure, a reply that is not JSON-RPC,
/// or the command's JSON-RPC error (as a [`RemoteError`]).
pub async fn run_cli(url: &str, cmd: &str, args: &[String]) -> anyhow::Result<Value> {
    call(url, cmd, cli_params(cmd, args)).await
}

/// The params opensips-cli would send for `cmd args...` (`None`: no args).
pub fn cli_params(cmd: &str, args: &[String]) -> Option<Value> {
    if args.is_empty() {
        return None;
    }
    let array_param = ARRAY_PARAMS.iter().find(|(c, _, _)| *c == cmd).map(|&(_, idx, name)| (idx, name));
    if args.iter().all(|a| param_name(a).is_some()) {
        let mut named = Map::new();
        for arg in args {
            let (name, value) = arg.split_once('=').unwrap_or((arg, ""));
            let value = match array_param {
                Some((_, array)) if array == name => array_value(value.split_whitespace().map(str::to_owned).collect()),
                _ => Value::String(value.to_owned()),
            };
            named.insert(name.to_owned(), value);
        }
        return Some(Value::Object(named));
    }
    let mut positional: Vec<Value> = Vec::new();
    match array_param {
        Some((idx, _)) if args.len() > idx => {
            positional.extend(args.iter().take(idx).map(|a| Value::String(a.clone())));
            positional.push(array_value(args.iter().skip(idx).cloned().collect()));
        }
        _ => positional.extend(args.iter().map(|a| Value::String(a.clone()))),
    }
    Some(Value::Array(positional))
}

/// `name` of a `name=value` argument (opensips-cli: `[a-zA-Z.\-_]+=` at the start).
fn param_name(arg: &str) -> Option<&str> {
    let (name, _) = arg.split_once('=')?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic() || b"._-".contains(&b));
    valid.then_some(name)
}

/// The array of an array param; one JSON-object argument stays a string
/// (named `raise_event` params).
fn array_value(items: Vec<String>) -> Value {
    if let [only] = items.as_slice()
        && only.trim_start().starts_with('{')
        && serde_json::from_str::<Map<String, Value>>(only).is_ok()
    {
        return Value::String(only.clone());
    }
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// Sends one JSON-RPC request and returns its `result`.
///
/// # Errors
/// As [`run_cli`].
pub async fn call(url: &str, method: &str, params: Option<Value>) -> anyhow::Result<Value> {
    let target = HttpUrl::parse(url)?;
    let mut request = json!({"jsonrpc": "2.0", "id": std::process::id(), "method": method});
    if let (Some(params), Value::Object(obj)) = (params, &mut request) {
        obj.insert("params".into(), params);
    }
    let body = serde_json::to_vec(&request)?;
    let (status, reply) = tokio::time::timeout(TIMEOUT, target.post(&body))
        .await
        .map_err(|_| anyhow::anyhow!("no reply from {url} within {} s", TIMEOUT.as_secs()))??;
    let reply: Value = match serde_json::from_slice(&reply) {
        Ok(reply) => reply,
        Err(_) => {
            let text = String::from_utf8_lossy(&reply);
            let snippet: String = text.trim().chars().take(200).collect();
            bail!("HTTP {status} from {url}: {snippet}");
        }
    };
    if let Some(err) = reply.get("error") {
        return Err(RemoteError {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(500),
            message: err.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
            data: err.get("data").map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned)),
        }
        .into());
    }
    if !(200..300).contains(&status) {
        bail!("HTTP {status} from {url}");
    }
    reply.get("result").cloned().ok_or_else(|| {
        RemoteError { code: -32603, message: "Internal error".into(), data: Some("the reply has no result".into()) }
            .into()
    })
}

/// An `http://host[:port][/path]` URL.
#[derive(Debug, PartialEq, Eq)]
struct HttpUrl {
    /// The authority as written, for the `Host` header.
    authority: String,
    /// Host to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    path: String,
}

impl HttpUrl {
    fn parse(url: &str) -> anyhow::Result<HttpUrl> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("MI URL {url:?}: only http:// URLs are supported (e.g. {DEFAULT_URL})");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
        if authority.contains('@') {
            bail!("MI URL {url:?}: credentials in the URL are not supported");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').with_context(|| format!("MI URL {url:?}: unclosed '['"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => bail!("MI URL {url:?}: junk after the IPv6 address"),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("MI URL {url:?}: no host");
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().map_err(|_| anyhow::anyhow!("MI URL {url:?}: bad port {p:?}"))?,
        };
        Ok(HttpUrl { authority: authority.to_owned(), host: host.to_owned(), port, path })
    }

    /// POSTs `body`; returns the status and the (de-chunked) response body.
    async fn post(&self, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to the MI at {}:{} (is sipbox running?)", self.host, self.port))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sipbox-mi/{}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if raw.len() > MAX_REPLY_BYTES {
                bail!("the MI reply exceeds {MAX_REPLY_BYTES} bytes");
            }
            // Stop as soon as a complete response is in (some servers keep the socket open).
            if let Ok(Some(done)) = parse_response(&raw) {
                return Ok(done);
            }
        }
        parse_response_at_eof(&raw)?.context("the MI closed the connection before a complete HTTP response")
    }
}

/// A complete HTTP/1.x response → (status, body); `Ok(None)` = need more
/// bytes (a body without a length is complete only at EOF: the caller
/// handles that through [`parse_response_at_eof`]).
fn parse_response(raw: &[u8]) -> anyhow::Result<Option<(u16, Vec<u8>)>> {
    let Some(head_len) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head =
        std::str::from_utf8(raw.get(..head_len).unwrap_or_default()).context("HTTP response head is not UTF-8")?;
    let rest = raw.get(head_len + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().with_context(|| format!("bad Content-Length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        return Ok(dechunk(rest)?.map(|body| (status, body)));
    }
    match length {
        Some(len) if rest.len() >= len => Ok(Some((status, rest.get(..len).unwrap_or_default().to_vec()))),
        Some(_) => Ok(None),
        None if status == 204 || status == 304 => Ok(Some((status, Vec::new()))),
        None => Ok(None),
    }
}

/// At EOF a response without a length ends where the bytes end.
pub(crate) fn parse_response_at_eof(raw: &[u8]) -> anyhow::Result<Option<(u16, Vec<u8>)>> {
    if let Some(done) = parse_response(raw)? {
        return Ok(Some(done));
    }
    let Some(head_len) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = String::from_utf8_lossy(raw.get(..head_len).unwrap_or_default()).to_ascii_lowercase();
    if head.contains("content-length:") || head.contains("chunked") {
        return Ok(None); // declared more than arrived: truncated
    }
    let status = parse_response_head_status(&head)?;
    Ok(Some((status, raw.get(head_len + 4..).unwrap_or_default().to_vec())))
}

fn parse_response_head_status(head: &str) -> anyhow::Result<u16> {
    head.get(9..12).and_then(|s| s.parse().ok()).context("bad HTTP status line")
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_len) = rest.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(rest.get(..line_len).unwrap_or_default()).context("bad chunk size line")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {size_hex:?}"))?;
        rest = rest.get(line_len + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(Some(body)); // trailers, if any, are ignored
        }
        let Some(data) = rest.get(..size) else { return Ok(None) };
        body.extend_from_slice(data);
        rest = match rest.get(size..) {
            Some(after) if after.len() >= 2 => after.get(2..).unwrap_or_default(),
            _ => return Ok(None),
        };
        if body.len() > MAX_REPLY_BYTES {
            bail!("the MI reply exceeds {MAX_REPLY_BYTES} bytes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn params_are_built_like_opensips_cli() {
        assert_eq!(cli_params("ps", &[]), None);
        assert_eq!(
            cli_params("event_subscribe", &args(&["E_X", "udp:127.0.0.1:9999", "60"])),
            Some(json!(["E_X", "udp:127.0.0.1:9999", "60"]))
        );
        assert_eq!(
            cli_params("event_subscribe", &args(&["event=E_X", "socket=udp:1.2.3.4:5"])),
            Some(json!({"event": "E_X", "socket": "udp:1.2.3.4:5"}))
        );
        assert_eq!(cli_params("get_statistics", &args(&["tm:", "core:"])), Some(json!([["tm:", "core:"]])));
        assert_eq!(
            cli_params("get_statistics", &args(&["statistics=tm: all"])),
            Some(json!({"statistics": ["tm:", "all"]}))
        );
        assert_eq!(cli_params("raise_event", &args(&["E", "a", "b"])), Some(json!(["E", ["a", "b"]])));
        assert_eq!(cli_params("raise_event", &args(&["E"])), Some(json!(["E"])));
        assert_eq!(
            cli_params("raise_event", &args(&["E", r#"{"digit":"5"}"#])),
            Some(json!(["E", r#"{"digit":"5"}"#]))
        );
        // One `name=value` among positional args keeps everything positional.
        assert_eq!(cli_params("ul_show_contact", &args(&["location", "a=b"])), Some(json!(["location", "a=b"])));
    }

    #[test]
    fn urls_parse_or_say_why_not() {
        let u = HttpUrl::parse("http://127.0.0.1:8888/mi").expect("plain");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8888, "/mi"));
        let u = HttpUrl::parse("http://[::1]:9/x/y").expect("v6");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str(), u.authority.as_str()), ("::1", 9, "/x/y", "[::1]:9"));
        let u = HttpUrl::parse("http://localhost").expect("defaults");
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        for bad in ["https://x/mi", "ftp://x", "http://:80/mi", "http://h:99999/", "http://[::1/", "http://u@h/"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_parse_with_length_chunks_or_eof() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(r).expect("ok"), Some((200, b"{}".to_vec())));
        assert_eq!(parse_response(&r[..r.len() - 1]).expect("partial"), None);
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).expect("chunked"), Some((200, b"{\"a\":1}".to_vec())));
        let r = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[1]";
        assert_eq!(parse_response(r).expect("no length"), None);
        assert_eq!(parse_response_at_eof(r).expect("eof"), Some((200, b"[1]".to_vec())));
        assert!(parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
