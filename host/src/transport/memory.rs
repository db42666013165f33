//! An in-memory wire in place of sockets, for the sample harness
//! (`crate::harness`): what the proxy sends is queued on a [`MemoryWire`]
//! the harness reads, and what the harness "receives" it hands to the
//! core's [`InboundHandler`](super::InboundHandler) itself. Nothing else
//! differs: the transaction layer, the proxy core and the runtime above it
//! are the production code, and see the same [`Transports`](super::Transports)
//! API (listeners, `sent_by`, `is_local`, errors).
//!
//! Bounded like the sockets it replaces: a full wire is
//! [`SendError::QueueFull`](super::SendError::QueueFull), never a wait.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Proto, SendError};

/// Messages the wire holds before sends fail (a harness that stops reading
/// is a bug in the harness, not a reason to grow without bound).
pub const WIRE_CAPACITY: usize = 16 * 1024;

/// One message the proxy sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Transport it was sent over.
    pub proto: Proto,
    /// The local listener it left from.
    pub src: SocketAddr,
    /// Where it was sent.
    pub dst: SocketAddr,
    /// The bytes on the wire.
    pub bytes: Bytes,
}

/// The receiving end of the wire: every message the proxy sends, in order.
pub struct MemoryWire {
    pub(super) rx: mpsc::Receiver<Sent>,
}

impl MemoryWire {
    /// The next message sent, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Sent> {
        self.rx.recv().await
    }

    /// The next message already sent, without waiting.
    pub fn try_recv(&mut self) -> Option<Sent> {
        self.rx.try_recv().ok()
    }
}

/// The sending end, held by [`Transports`](super::Transports).
pub(super) struct MemorySide {
    tx: mpsc::Sender<Sent>,
}

impl MemorySide {
    pub(super) fn new() -> (MemorySide, MemoryWire) {
        let (tx, rx) = mpsc::channel(WIRE_CAPACITY);
        (MemorySide { tx }, MemoryWire { rx })
    }

    pub(super) fn send(&self, proto: Proto, src: SocketAddr, dst: SocketAddr, bytes: Bytes) -> Result<(), SendError> {
        if proto == Proto::Udp && bytes.len() > crate::sip::MAX_MESSAGE_SIZE {
            return Err(SendError::TooLarge(bytes.len()));
        }
        self.tx.try_send(Sent { proto, src, dst, bytes }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull(dst),
            mpsc::error::TrySendError::Closed(_) => SendError::Stopped(proto),
        })
    }
}
