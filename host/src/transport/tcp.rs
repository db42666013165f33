//! TCP: accept loops, the connection table and one task per connection.
//!
//! A connection is keyed by its remote address. Whoever opened it, every message towards
//! that address goes over it (RFC 3261 section 18.2.2: responses return on the connection the
//! request came in on; requests to a peer reuse an existing connection). Each connection
//! task reads, frames (`sip::frame_len`) and writes from a bounded queue, so a slow peer
//! fills its own queue and [`TcpSide::send`] fails fast instead of blocking anyone.
//!
//! The two halves: [`TcpSide`] sends (it is part of [`Transports`](super::Transports));
//! [`TcpReceiver`] holds the listening sockets until [`start`](TcpReceiver::start) hands it the
//! [`InboundHandler`] and the [`Shutdown`], then runs the accept loops and the connector. Every
//! task that reads a connection needs the handler, so a connection `send` opens is not started
//! by `send`: it is queued to the connector, which opens it and reads it with the handler.
//!
//! Limits against a peer that holds connections ([`TcpConfig`], `[tcp]`, after Kamailio's
//! `tcp_accept_iplimit`, `tcp_msg_read_timeout` and `tcp_connection_lifetime`): connections
//! accepted from one IP, the time a started message may take to arrive (slowloris), the
//! time without traffic, and the time CRLF keep-alives alone keep a connection open.
//!
//! On the shutdown signal the accept loops and the connector end (closing the listening
//! sockets), connects in progress are abandoned (their senders hear of it), and each
//! connection writes what is queued on it (for at most [`CLOSE_TIMEOUT`]) and closes.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::tcp_limits::{IpSlot, Lifetime};
use super::{Counters, Inbound, InboundHandler, Proto, SendError, TcpConfig};
use crate::shutdown::Shutdown;
use crate::sip;

/// Most TCP connections open at once, inbound and outbound together. Each costs a task,
/// a read buffer (up to [`sip::MAX_MESSAGE_SIZE`]) and a queue; 4096 bounds that to a few
/// hundred MB in the worst case while serving thousands of registered TCP phones. When all
/// are in use the acceptor waits for one to close and outbound connects fail.
pub(crate) const MAX_TCP_CONNECTIONS: usize = 4096;

/// Messages queued per connection before `send` reports [`SendError::QueueFull`].
pub(crate) const SEND_QUEUE_LEN: usize = 128;

/// How long an outbound connect may take; queued messages are dropped after that.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a closing connection may take to write what is still queued on it (a 400 for
/// a message that broke the framing, responses at shutdown). A peer that stopped reading
/// does not keep the connection's task, its permit or a shutdown waiting longer.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The sending half of TCP: the connection table and its shared state.
pub(super) struct TcpSide {
    shared: Arc<Shared>,
}

/// The receiving half of TCP, not started yet: the listening sockets and the queue of
/// connections to open.
pub(super) struct TcpReceiver {
    shared: Arc<Shared>,
    listeners: Vec<(TcpListener, SocketAddr)>,
    connects: mpsc::UnboundedReceiver<Conn>,
}

struct Shared {
    conns: Mutex<HashMap<SocketAddr, ConnEntry>>,
    cfg: TcpConfig,
    /// Accepted connections per source IP (`max_connections_per_ip`).
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
    /// To the connector: connections `send` wants opened. Unbounded, but each holds one of
    /// the [`MAX_TCP_CONNECTIONS`] permits.
    connects: mpsc::UnboundedSender<Conn>,
}

/// A connection entered in the table: what its task needs besides the stream. `send` queues
/// the outbound ones to the connector like this.
struct Conn {
    peer: SocketAddr,
    /// Its entry's id in the table.
    id: u64,
    /// Its send queue (for an outbound connection, already holding the first message).
    rx: mpsc::Receiver<Bytes>,
    /// Held for the connection's lifetime.
    permit: OwnedSemaphorePermit,
    /// An accepted connection's place in its source IP's count, held as long.
    _ip_slot: Option<IpSlot>,
}

/// What every task that reads needs: where messages go, and when to stop.
#[derive(Clone)]
struct Reading {
    handler: Arc<dyn InboundHandler>,
    shutdown: Shutdown,
}

struct ConnEntry {
    /// Distinguishes a connection from a later one to the same address, so a closing task
    /// never removes its successor's entry.
    id: u64,
    tx: mpsc::Sender<Bytes>,
    /// While an outbound connect is in progress: who to tell if it fails (the messages
    /// they queued are then lost). `None` once connected, and for accepted connections.
    connecting: Option<Vec<ConnectFailed>>,
}

/// Called when the connect a message was queued behind fails or times out.
pub type ConnectFailed = Box<dyn FnOnce() + Send>;

impl TcpSide {
    /// Both halves over `listeners` (bound, not accepting yet).
    pub(super) fn new(
        listeners: Vec<(TcpListener, SocketAddr)>,
        counters: Arc<Counters>,
        cfg: TcpConfig,
    ) -> (TcpSide, TcpReceiver) {
        let (connects_tx, connects) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            conns: Mutex::new(HashMap::new()),
            cfg,
            per_ip: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
            counters,
            next_id: AtomicU64::new(1),
            connects: connects_tx,
        });
        (TcpSide { shared: shared.clone() }, TcpReceiver { shared, listeners, connects })
    }

    pub(super) fn connection_count(&self) -> usize {
        self.shared.conns.lock().map_or(0, |c| c.len())
    }

    /// Queues `bytes` on the connection to `dst`, opening one if there is none. When the
    /// connection is still being opened, `on_failure` runs if that fails.
    pub(super) fn send(
        &self,
        dst: SocketAddr,
        bytes: Bytes,
        on_failure: Option<ConnectFailed>,
    ) -> Result<(), SendError> {
        let shared = &self.shared;
        let mut conns =
            shared.conns.lock().map_err(|_| SendError::Io { addr: dst, reason: "connection table poisoned".into() })?;
        let bytes = match conns.get_mut(&dst) {
            Some(entry) => match entry.tx.try_send(bytes) {
                Ok(()) => {
                    if let (Some(waiting), Some(f)) = (entry.connecting.as_mut(), on_failure) {
                        waiting.push(f);
                    }
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(_)) => return Err(SendError::QueueFull(dst)),
                // The connection is closing; open a new one below.
                Err(mpsc::error::TrySendError::Closed(b)) => {
                    conns.remove(&dst);
                    b
                }
            },
            None => bytes,
        };
        let permit = shared.permits.clone().try_acquire_owned().map_err(|_| SendError::TooManyConnections(dst))?;
        let (tx, rx) = mpsc::channel(SEND_QUEUE_LEN);
        // Cannot fail: the channel is new and empty.
        let _ = tx.try_send(bytes);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Conn { peer: dst, id, rx, permit, _ip_slot: None };
        shared.connects.send(conn).map_err(|_| SendError::Stopped(Proto::Tcp))?;
        conns.insert(dst, ConnEntry { id, tx, connecting: Some(on_failure.into_iter().collect()) });
        Ok(())
    }
}

impl TcpReceiver {
    /// Starts the accept loops and the connector, spawned under `shutdown`; what they read goes
    /// to `handler`.
    pub(super) fn start(self, handler: Arc<dyn InboundHandler>, shutdown: &Shutdown) {
        let TcpReceiver { shared, listeners, connects } = self;
        let reading = Reading { handler, shutdown: shutdown.clone() };
        for (listener, local) in listeners {
            shutdown.spawn(accept_loop(shared.clone(), listener, local, reading.clone()));
        }
        shutdown.spawn(connector(shared, connects, reading));
    }
}

/// Accept loop: takes a connection permit before accepting, so at most
/// [`MAX_TCP_CONNECTIONS`] are open; accept errors back off (1 ms doubling to 1 s). Ends on
/// the shutdown signal, closing the listening socket.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, local: SocketAddr, reading: Reading) {
    let shutdown = reading.shutdown.clone();
    let mut backoff = Duration::from_millis(1);
    loop {
        let Some(Ok(permit)) = shutdown.unless_signalled(shared.permits.clone().acquire_owned()).await else { return };
        let Some(accepted) = shutdown.unless_signalled(listener.accept()).await else { return };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                let Some(slot) = IpSlot::take(&shared.per_ip, peer.ip(), shared.cfg.max_connections_per_ip) else {
                    // Dropping the stream closes it: one source cannot take every connection.
                    shared.counters.tcp_refused_per_ip.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TCP connection refused: too many from this IP");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (tx, rx) = mpsc::channel(SEND_QUEUE_LEN);
                let id = shared.insert(peer, tx);
                tracing::debug!(%peer, %local, "TCP connection accepted");
                let conn = Conn { peer, id, rx, permit, _ip_slot: Some(slot) };
                shutdown.spawn(run_connection(shared.clone(), reading.clone(), stream, conn));
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(%local, error = %e, "TCP accept failed");
                if shutdown.unless_signalled(tokio::time::sleep(backoff)).await.is_none() {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Opens the connections `send` queued, each in its own task that then reads and writes it.
/// On the shutdown signal it stops; connections queued but not opened fail (their senders
/// hear of it) and later sends that need a new connection get [`SendError::Stopped`].
async fn connector(shared: Arc<Shared>, mut connects: mpsc::UnboundedReceiver<Conn>, reading: Reading) {
    let shutdown = reading.shutdown.clone();
    while let Some(Some(conn)) = shutdown.unless_signalled(connects.recv()).await {
        shutdown.spawn(open(shared.clone(), reading.clone(), conn));
    }
    connects.close();
    while let Ok(conn) = connects.try_recv() {
        shared.connect_failed(conn.peer, conn.id);
    }
}

/// Connects (bounded by [`CONNECT_TIMEOUT`], abandoned on the shutdown signal), then runs the
/// connection; a failure drops the queued messages and tells whoever asked to hear of it.
async fn open(shared: Arc<Shared>, reading: Reading, conn: Conn) {
    let (dst, id) = (conn.peer, conn.id);
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dst));
    match reading.shutdown.unless_signalled(connecting).await {
        Some(Ok(Ok(stream))) => {
            let _ = stream.set_nodelay(true);
            tracing::debug!(peer = %dst, "TCP connection opened");
            shared.connected(dst, id);
            run_connection(shared, reading, stream, conn).await;
        }
        Some(Ok(Err(e))) => {
            tracing::debug!(peer = %dst, error = %e, "TCP connect failed: queued messages dropped");
            shared.connect_failed(dst, id);
        }
        Some(Err(_)) => {
            tracing::debug!(peer = %dst, "TCP connect timed out: queued messages dropped");
            shared.connect_failed(dst, id);
        }
        None => {
            tracing::debug!(peer = %dst, "shutting down: TCP connect abandoned, queued messages dropped");
            shared.connect_failed(dst, id);
        }
    }
}

impl Shared {
    fn insert(&self, peer: SocketAddr, tx: mpsc::Sender<Bytes>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(peer, ConnEntry { id, tx, connecting: None });
        }
        id
    }

    /// The connect succeeded: nobody needs to hear of a failure any more.
    fn connected(&self, peer: SocketAddr, id: u64) {
        let waiting = match self.conns.lock() {
            Ok(mut conns) => conns.get_mut(&peer).filter(|e| e.id == id).and_then(|e| e.connecting.take()),
            Err(_) => None,
        };
        drop(waiting);
    }

    /// The connect failed: the entry goes and whoever queued behind it hears of it (outside
    /// the lock, as they may send again).
    fn connect_failed(&self, peer: SocketAddr, id: u64) {
        let waiting = match self.conns.lock() {
            Ok(mut conns) if conns.get(&peer).is_some_and(|e| e.id == id) => {
                conns.remove(&peer).and_then(|e| e.connecting)
            }
            _ => None,
        };
        for on_failure in waiting.into_iter().flatten() {
            on_failure();
        }
    }

    fn remove(&self, peer: SocketAddr, id: u64) {
        if let Ok(mut conns) = self.conns.lock()
            && conns.get(&peer).is_some_and(|e| e.id == id)
        {
            conns.remove(&peer);
        }
    }
}

/// What the framer wants the connection task to do after draining the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// Keep reading.
    More,
    /// Keep reading and answer a CRLFCRLF keep-alive ping with a CRLF pong (RFC 5626 4.4.1).
    Pong,
    /// The stream cannot be framed any more (bad framing or too large): close it.
    Close,
}

/// Reads, frames and dispatches; writes queued messages; closes when idle or on the
/// shutdown signal. The permit is held for the connection's lifetime.
async fn run_connection(shared: Arc<Shared>, reading: Reading, stream: TcpStream, conn: Conn) {
    let Conn { peer, id, mut rx, permit: _permit, _ip_slot } = conn;
    let local = stream.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);
    let mut life = Lifetime::new(&shared.cfg, Instant::now());
    let timer = tokio::time::sleep_until(life.next());
    tokio::pin!(timer);
    let stop = reading.shutdown.signalled();
    tokio::pin!(stop);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        timer.as_mut().reset(life.next());
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => {
                    // Clean close; leftover bytes mean the peer closed mid-message.
                    if sip::skip_keepalive(&buf) < buf.len() {
                        tracing::debug!(%peer, pending = buf.len(), "TCP peer closed mid-message");
                    }
                    break;
                }
                Ok(_) => {
                    let (drained, framed) = drain(&mut buf, &*reading.handler, &shared.counters, peer, local);
                    life.read(Instant::now(), framed, !buf.is_empty());
                    match drained {
                        Drained::More => {}
                        Drained::Pong => {
                            if wr.write_all(b"\r\n").await.is_err() {
                                break;
                            }
                        }
                        Drained::Close => break,
                    }
                }
                Err(e) => {
                    if !matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted) {
                        tracing::debug!(%peer, error = %e, "TCP read failed");
                    }
                    break;
                }
            },
            m = rx.recv() => {
                let Some(bytes) = m else { break };
                life.wrote(Instant::now());
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(%peer, error = %e, "TCP write failed");
                    break;
                }
            }
            () = &mut timer => {
                if let Some(why) = life.expired(Instant::now()) {
                    shared.counters.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TCP connection closed: {why}");
                    break;
                }
            }
            () = &mut stop => {
                tracing::debug!(%peer, "shutting down: TCP connection closed");
                break;
            }
        }
    }
    shared.remove(peer, id);
    rx.close();
    let flush = async {
        while let Ok(bytes) = rx.try_recv() {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, flush).await.is_err() {
        tracing::debug!(%peer, "TCP peer does not read: closed with messages still queued");
    }
}

/// Frames every complete message in `buf` and hands it to the handler (zero-copy: each
/// message's `Bytes` is split off the read buffer). Also says whether a message was framed.
fn drain(
    buf: &mut BytesMut,
    handler: &dyn InboundHandler,
    counters: &Counters,
    peer: SocketAddr,
    local: SocketAddr,
) -> (Drained, bool) {
    let mut framed = false;
    let out = drain_framed(buf, handler, counters, peer, local, &mut framed);
    (out, framed)
}

fn drain_framed(
    buf: &mut BytesMut,
    handler: &dyn InboundHandler,
    counters: &Counters,
    peer: SocketAddr,
    local: SocketAddr,
    framed: &mut bool,
) -> Drained {
    let mut out = Drained::More;
    loop {
        let k = sip::skip_keepalive(buf);
        if k > 0 {
            if k >= 4 && &buf[..4] == b"\r\n\r\n" {
                out = Drained::Pong;
            }
            buf.advance(k);
        }
        if buf.is_empty() {
            return out;
        }
        match sip::frame_len(buf) {
            Ok(Some(n)) if n > 0 && n <= buf.len() => {
                let raw = buf.split_to(n).freeze();
                *framed = true;
                match sip::Message::parse(raw.clone()) {
                    Ok(msg) => handler.on_message(Inbound { msg, src: peer, proto: Proto::Tcp, local }),
                    Err(err) => {
                        // The frame is delimited, so the stream stays usable.
                        counters.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %err, "malformed TCP message");
                        handler.on_malformed(raw, err, peer, Proto::Tcp);
                    }
                }
            }
            Ok(Some(_)) | Ok(None) => {
                if buf.len() > sip::MAX_MESSAGE_SIZE {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TCP message exceeds the size limit: connection closed");
                    return Drained::Close;
                }
                return out;
            }
            Err(err) => {
                // Framing lost (bad Content-Length, oversized headers): answer if possible, close.
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %err, "TCP framing failed: connection closed");
                handler.on_malformed(buf.split().freeze(), err, peer, Proto::Tcp);
                return Drained::Close;
            }
        }
    }
}

#[cfg(test)]
pub(super) mod test_support {
    //! Exposes the framer to the transport tests.
    use super::*;

    pub(crate) fn drain_for_test(buf: &mut BytesMut, handler: &dyn InboundHandler) -> &'static str {
        let counters = Counters::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        match drain(buf, handler, &counters, a, a).0 {
            Drained::More => "more",
            Drained::Pong => "pong",
            Drained::Close => "close",
        }
    }
}
