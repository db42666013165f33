//! `xmlrpc:host:port[/path]:method` (OpenSIPS event_xmlrpc): each event is an
//! XML-RPC `methodCall` POSTed over a new TCP connection (`Connection: close`),
//! to `/RPC2` unless the socket names a path.
//!
//! The payload is OpenSIPS's byte for byte (`xmlrpc_build_buffer`), except
//! that text is XML-escaped (OpenSIPS copies it raw, so a `<` in a value
//! breaks the document): the method, then the event name as the first
//! `<string>` param, then one `<param>` per event parameter, an `<int>` or a
//! `<string>`; a named parameter's name goes in a `<name>` before its value,
//! or, with `xmlrpc_use_struct_param` (OpenSIPS `use_struct_param`), the
//! value is a one-member `<struct>` carrying the name.
//!
//! OpenSIPS does not wait for the answer; here the sink reads the HTTP status
//! line (everything bounded by `xmlrpc_timeout_ms`), so a refusing server
//! (not 200) or a dead one counts as a failed delivery. No retry. The address
//! obeys the `[events]` destination policy like `tcp:` (`events::destinations`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::addr::HostPort;
use crate::events::{DeliverFut, Event, EventError, Sink, SinkContext, SinkError, Value};

/// The path OpenSIPS posts to when the socket names none.
const DEFAULT_PATH: &str = "/RPC2";
/// Most bytes of the answer read while looking for its status line.
const MAX_STATUS_LINE: usize = 1024;

pub(crate) fn parse(rest: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    let bad = |why: &str| EventError::BadSocket(format!("xmlrpc:{rest}: {why} (xmlrpc:host:port[/path]:method)"));
    // host: up to the first ':' (or a bracketed IPv6 literal).
    let host_end = if rest.starts_with('[') { rest.find(']').map(|i| i + 1) } else { rest.find(':') };
    let host_end = host_end.ok_or_else(|| bad("missing port"))?;
    let (host, after) = rest.split_at(host_end);
    let after = after.strip_prefix(':').ok_or_else(|| bad("missing port"))?;
    let (port_path, method) = after.split_once(':').ok_or_else(|| bad("missing method"))?;
    if method.is_empty() || method.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("bad method name"));
    }
    let (port, path) = match port_path.find('/') {
        Some(i) => port_path.split_at(i),
        None => (port_path, DEFAULT_PATH),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("bad path"));
    }
    let dst = HostPort::parse("xmlrpc", &format!("{host}:{port}"))?;
    let socket =
        if path == DEFAULT_PATH { format!("xmlrpc:{dst}:{method}") } else { format!("xmlrpc:{dst}{path}:{method}") };
    let cfg = ctx.config();
    Ok(Arc::new(XmlRpcSink {
        socket,
        dst,
        path: path.to_owned(),
        method: method.to_owned(),
        use_struct: cfg.xmlrpc_use_struct_param,
        timeout: Duration::from_millis(cfg.xmlrpc_timeout_ms),
        ctx: ctx.clone(),
    }))
}

struct XmlRpcSink {
    socket: String,
    dst: HostPort,
    path: String,
    method: String,
    use_struct: bool,
    timeout: Duration,
    ctx: SinkContext,
}

/// Appends `s` XML-escaped; characters XML 1.0 cannot carry become U+FFFD.
fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// The XML-RPC document for `event` (see the module docs).
pub(crate) fn body(method: &str, event: &Event, use_struct: bool) -> String {
    let mut b = String::with_capacity(256);
    b.push_str("<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>");
    push_text(&mut b, method);
    b.push_str("</methodName>\n<params>\n<param>\n<value><string>");
    push_text(&mut b, &event.name);
    b.push_str("</string></value>\n</param>\n");
    for (name, value) in &event.params.0 {
        b.push_str("<param>\n");
        let name = name.as_deref().filter(|n| !n.is_empty());
        if let Some(name) = name {
            if use_struct {
                b.push_str("<value><struct><member>\n");
            }
            b.push_str("<name>");
            push_text(&mut b, name);
            b.push_str("</name>\n");
        }
        b.push_str("<value>");
        match value {
            Value::Int(n) => {
                let _ = write!(b, "<int>{n}</int>");
            }
            Value::Str(s) => {
                b.push_str("<string>");
                push_text(&mut b, s);
                b.push_str("</string>");
            }
            Value::Null => b.push_str("<string></string>"),
        }
        b.push_str("</value>\n");
        if name.is_some() && use_struct {
            b.push_str("</member></struct></value>\n");
        }
        b.push_str("</param>\n");
    }
    b.push_str("</params>\n</methodCall>");
    b
}

impl XmlRpcSink {
    fn request(&self, event: &Event) -> Vec<u8> {
        let body = body(&self.method, event, self.use_struct);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: sipbox/{} XMLRPC Notifier\r\n\
             Content-type: text/xml\r\nContent-length: {}\r\n\r\n",
            self.path,
            self.dst,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }

    async fn call(&self, event: &Event) -> Result<(), SinkError> {
        let request = self.request(event);
        let addr = self.dst.resolve_allowed(self.ctx.destinations()).await?;
        let mut stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        stream.write_all(&request).await?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(buf.split(|&b| b == b'\n').next().unwrap_or_default());
        let status = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        if line.starts_with("HTTP/1.") && status == "200" {
            Ok(())
        } else if buf.is_empty() {
            Err(SinkError::Other(format!("{}: closed without an answer", self.socket)))
        } else {
            Err(SinkError::Other(format!("{} answered {:?}", self.socket, line.trim_end())))
        }
    }
}

impl Sink for XmlRpcSink {
    fn socket(&self) -> &str {
        &self.socket
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(async move { timeout(self.timeout, self.call(event)).await.map_err(|_| SinkError::Timeout)? })
    }

    fn check(&self) -> Result<(), EventError> {
        self.dst.check("xmlrpc", self.ctx.destinations())
    }
}

#[cfg(test)]
mod tests;
