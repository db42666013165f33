//! JSON-RPC over UDP, as OpenSIPS `mi_datagram` (what call-api and
//! opensips-cli's `datagram` mode use): each datagram is one request (or a
//! batch); the reply goes back to the sender's address in one datagram.
//!
//! Bounds: at most [`MAX_UDP_IN_FLIGHT`] requests are processed at once (the
//! receive loop takes a permit before reading, so excess datagrams wait in
//! the socket buffer and the kernel drops what does not fit). A reply larger
//! than a datagram can carry is replaced by an error saying so. On the
//! shutdown signal the loop ends and requests in progress are dropped
//! unanswered, so the socket closes with them.

use std::sync::Arc;

use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::guard::Guard;
use super::jsonrpc::{self, MiError};
use super::{MAX_UDP_IN_FLIGHT, MiContext};
use crate::shutdown::Shutdown;

/// Largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes).
pub(crate) const MAX_DATAGRAM: usize = 65_507;

/// The receive loop; ends on the shutdown signal.
pub(crate) async fn serve(socket: UdpSocket, ctx: Arc<MiContext>, guard: Arc<Guard>, shutdown: Shutdown) {
    let socket = Arc::new(socket);
    let permits = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    // A datagram cannot exceed 64 KiB, which is also the MI's request bound.
    let mut buf = vec![0u8; 65_536];
    loop {
        // A slot first: bounds the requests processed at once.
        let Some(Ok(permit)) = shutdown.unless_signalled(permits.clone().acquire_owned()).await else { return };
        let Some(received) = shutdown.unless_signalled(socket.recv_from(&mut buf)).await else { return };
        let (len, src) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(error = %err, "MI datagram receive failed");
                continue;
            }
        };
        match guard.admit(src.ip()) {
            Ok(()) => {}
            // Outside [mi] allow: no answer (it would go to whoever the
            // source claims to be).
            Err(refused) if refused.status == 403 => continue,
            Err(refused) => {
                let reply = jsonrpc::response(Value::Null, Err(MiError::new(429, refused.why)));
                let _ = socket.send_to(&encode_reply(&reply), src).await;
                continue;
            }
        }
        let payload = buf.get(..len).unwrap_or_default().to_vec();
        let (ctx, socket, task) = (ctx.clone(), socket.clone(), shutdown.clone());
        shutdown.spawn(async move {
            let _permit = permit;
            let answer = async {
                let Some(reply) = jsonrpc::handle_payload(&ctx, &payload).await else { return };
                if let Err(err) = socket.send_to(&encode_reply(&reply), src).await {
                    tracing::debug!(%src, error = %err, "MI datagram reply not sent");
                }
            };
            task.unless_signalled(answer).await;
        });
    }
}

/// The reply bytes, or an error in its place when they exceed a datagram.
pub(crate) fn encode_reply(reply: &Value) -> Vec<u8> {
    let bytes = serde_json::to_vec(reply).unwrap_or_default();
    if bytes.len() <= MAX_DATAGRAM {
        return bytes;
    }
    let id = reply.get("id").cloned().unwrap_or(Value::Null);
    let err = MiError::server_error(format!(
        "the reply ({} bytes) does not fit in a datagram; use the HTTP interface",
        bytes.len()
    ));
    serde_json::to_vec(&jsonrpc::response(id, Err(err))).unwrap_or_default()
}
