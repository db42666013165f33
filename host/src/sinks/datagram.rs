//! `udp:host:port` and `unix:/path` (OpenSIPS event_datagram): each event is
//! one datagram holding the JSON-RPC notification, no `id`. No retry: a
//! failed send is counted and the event is gone, as in OpenSIPS.
//!
//! Destinations obey the `[events]` policy (`events::destinations`): a
//! `udp:` address is checked when subscribing (literals) and after each
//! resolution (names); a `unix:` path must be under `unix_socket_dirs`,
//! checked when subscribing and again before each send.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::OnceCell;

use super::addr::HostPort;
use crate::events::{DeliverFut, Event, EventError, Sink, SinkContext, SinkError};

/// Largest event datagram (OpenSIPS `DGRAM_BUFFER_SIZE`-derived limit).
pub(crate) const MAX_DATAGRAM: usize = 65_457;

pub(crate) fn parse_udp(rest: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    let dst = HostPort::parse("udp", rest)?;
    Ok(Arc::new(UdpSink { socket: format!("udp:{dst}"), dst, ctx: ctx.clone(), sock: OnceCell::new() }))
}

pub(crate) fn parse_unix(rest: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
    if rest.is_empty() {
        return Err(EventError::BadSocket("unix: needs a socket path".into()));
    }
    if rest.bytes().any(|b| b == 0) {
        return Err(EventError::BadSocket(format!("unix:{rest}: NUL in path")));
    }
    Ok(Arc::new(UnixSink {
        socket: format!("unix:{rest}"),
        path: PathBuf::from(rest),
        ctx: ctx.clone(),
        sock: OnceCell::new(),
    }))
}

/// Checks the payload size for one datagram.
fn payload(event: &Event) -> Result<String, SinkError> {
    let p = event.to_jsonrpc_string();
    if p.len() > MAX_DATAGRAM { Err(SinkError::TooLarge(p.len())) } else { Ok(p) }
}

struct UdpSink {
    socket: String,
    dst: HostPort,
    ctx: SinkContext,
    /// Bound on first use to an ephemeral port of the destination's family.
    sock: OnceCell<UdpSocket>,
}

impl UdpSink {
    async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let payload = payload(event)?;
        let dst = self.dst.resolve_allowed(self.ctx.destinations()).await?;
        let sock = self
            .sock
            .get_or_try_init(|| async {
                let any = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                UdpSocket::bind(any).await
            })
            .await?;
        let sent = sock.send_to(payload.as_bytes(), dst).await?;
        if sent != payload.len() {
            return Err(SinkError::Other(format!("short datagram: {sent} of {} bytes", payload.len())));
        }
        Ok(())
    }
}

impl Sink for UdpSink {
    fn socket(&self) -> &str {
        &self.socket
    }
    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(self.send(event))
    }

    fn check(&self) -> Result<(), EventError> {
        self.dst.check("udp", self.ctx.destinations())
    }
}

struct UnixSink {
    socket: String,
    path: PathBuf,
    ctx: SinkContext,
    sock: OnceCell<UnixDatagram>,
}

impl UnixSink {
    async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let payload = payload(event)?;
        // Checked again at each send (a few syscalls, off the async
        // workers): the path may have been replaced by a symlink since.
        let (ctx, path) = (self.ctx.clone(), self.path.clone());
        let target = tokio::task::spawn_blocking(move || ctx.destinations().check_unix(&path))
            .await
            .map_err(|e| SinkError::Other(e.to_string()))?
            .map_err(SinkError::Other)?;
        let sock = self.sock.get_or_try_init(|| async { UnixDatagram::unbound() }).await?;
        sock.send_to(payload.as_bytes(), &target).await?;
        Ok(())
    }
}

impl Sink for UnixSink {
    fn socket(&self) -> &str {
        &self.socket
    }
    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(self.send(event))
    }

    fn check(&self) -> Result<(), EventError> {
        let checked = self.ctx.destinations().check_unix(&self.path);
        checked.map(|_| ()).map_err(|e| EventError::DestinationRefused(format!("{}: {e}", self.socket)))
    }
}
