//! `udp:host:port` and `unix:/path` (OpenSIPS event_datagram): each event is
//! one datagram holding the JSON-RPC notification, no `id`. No retry: a
//! failed send is counted and the event is gone, as in OpenSIPS.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::OnceCell;

use super::addr::HostPort;
use crate::events::{DeliverFut, Event, EventError, Sink, SinkError};

/// Largest event datagram (OpenSIPS `DGRAM_BUFFER_SIZE`-derived limit).
pub(crate) const MAX_DATAGRAM: usize = 65_457;

pub(crate) fn parse_udp(rest: &str) -> Result<Arc<dyn Sink>, EventError> {
    let dst = HostPort::parse("udp", rest)?;
    Ok(Arc::new(UdpSink { socket: format!("udp:{dst}"), dst, sock: OnceCell::new() }))
}

pub(crate) fn parse_unix(rest: &str) -> Result<Arc<dyn Sink>, EventError> {
    if rest.is_empty() {
        return Err(EventError::BadSocket("unix: needs a socket path".into()));
    }
    if rest.bytes().any(|b| b == 0) {
        return Err(EventError::BadSocket(format!("unix:{rest}: NUL in path")));
    }
    Ok(Arc::new(UnixSink { socket: format!("unix:{rest}"), path: PathBuf::from(rest), sock: OnceCell::new() }))
}

/// Checks the payload size for one datagram.
fn payload(event: &Event) -> Result<String, SinkError> {
    let p = event.to_jsonrpc_string();
    if p.len() > MAX_DATAGRAM { Err(SinkError::TooLarge(p.len())) } else { Ok(p) }
}

struct UdpSink {
    socket: String,
    dst: HostPort,
    /// Bound on first use to an ephemeral port of the destination's family.
    sock: OnceCell<UdpSocket>,
}

impl UdpSink {
    async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let payload = payload(event)?;
        let dst = self.dst.resolve().await?;
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
}

struct UnixSink {
    socket: String,
    path: PathBuf,
    sock: OnceCell<UnixDatagram>,
}

impl UnixSink {
    async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let payload = payload(event)?;
        let sock = self.sock.get_or_try_init(|| async { UnixDatagram::unbound() }).await?;
        sock.send_to(payload.as_bytes(), &self.path).await?;
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
}
