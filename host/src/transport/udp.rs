//! UDP: one socket per listen address, a receive loop per socket, non-blocking sends.
//!
//! The receive loop and the senders share the socket until the loop ends on the shutdown
//! signal; then it closes the socket for both, so the port is free once the loop is gone
//! even while clones of [`Transports`](super::Transports) live on (later sends get
//! [`SendError::Stopped`]).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{Counters, Inbound, InboundHandler, Proto, SendError};
use crate::shutdown::Shutdown;
use crate::sip;

/// One bound UDP socket.
pub(super) struct UdpListener {
    /// `None` once the receive loop has stopped and closed it.
    sock: ArcSwapOption<UdpSocket>,
    pub(super) local: SocketAddr,
}

impl UdpListener {
    pub(super) async fn bind(addr: SocketAddr) -> std::io::Result<UdpListener> {
        let sock = UdpSocket::bind(addr).await?;
        let local = sock.local_addr()?;
        Ok(UdpListener { sock: ArcSwapOption::from_pointee(sock), local })
    }

    /// Sends without waiting. A full socket buffer (WouldBlock) drops the datagram and
    /// counts it: UDP may drop, retransmission timers recover, and the caller never blocks.
    pub(super) fn send(&self, dst: SocketAddr, bytes: &[u8], counters: &Counters) -> Result<(), SendError> {
        if bytes.len() > sip::MAX_MESSAGE_SIZE {
            return Err(SendError::TooLarge(bytes.len()));
        }
        let sock = self.sock.load();
        let Some(sock) = sock.as_deref() else { return Err(SendError::Stopped(Proto::Udp)) };
        match sock.try_send_to(bytes, dst) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                counters.udp_send_drops.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%dst, "UDP send buffer full: datagram dropped");
                Ok(())
            }
            Err(e) => Err(SendError::Io { addr: dst, reason: e.to_string() }),
        }
    }
}

/// The receive loop of one socket, until the shutdown signal; then it closes the socket.
/// One reused buffer per socket; each datagram is copied into its own [`Bytes`] of exactly
/// its length, which the parsed message then owns.
pub(super) async fn receive(
    listener: Arc<UdpListener>,
    handler: Arc<dyn InboundHandler>,
    counters: Arc<Counters>,
    shutdown: Shutdown,
) {
    let local = listener.local;
    let Some(sock) = listener.sock.load_full() else { return };
    let stop = shutdown.signalled();
    tokio::pin!(stop);
    // One byte more than the limit, so an oversized datagram is detected, not truncated silently.
    let mut buf = vec![0u8; sip::MAX_MESSAGE_SIZE + 1];
    loop {
        let received = tokio::select! {
            biased;
            () = &mut stop => break,
            received = sock.recv_from(&mut buf) => received,
        };
        let (n, src) = match received {
            Ok(r) => r,
            // ICMP port-unreachable from an earlier send surfaces here on Linux; harmless.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset) => continue,
            Err(e) => {
                tracing::warn!(%local, error = %e, "UDP receive failed");
                // Avoid spinning on a persistent error.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let data = &buf[..n];
        // RFC 5626 keep-alives (CRLF) and empty datagrams carry nothing.
        if sip::skip_keepalive(data) == n {
            continue;
        }
        let raw = Bytes::copy_from_slice(data);
        match sip::Message::parse(raw.clone()) {
            Ok(msg) => handler.on_message(Inbound { msg, src, proto: Proto::Udp, local }),
            Err(err) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, error = %err, "malformed UDP message");
                handler.on_malformed(raw, err, src, Proto::Udp);
            }
        }
    }
    // The senders' reference goes too: the socket closes with this loop's.
    listener.sock.store(None);
    tracing::debug!(%local, "shutting down: UDP socket closed");
}

/// The socket to send to `dst` from: the first UDP listener of the same address family,
/// else the first one.
pub(super) fn pick(socks: &[Arc<UdpListener>], dst: SocketAddr) -> Option<&UdpListener> {
    socks.iter().find(|s| s.local.is_ipv4() == dst.is_ipv4()).or_else(|| socks.first()).map(|s| &**s)
}
