//! The proxy core: matches inbound messages to transactions (17.1.3, 17.2.3) and decides
//! what reaches the router. Retransmissions, the ACK of a non-2xx and CANCELs of known
//! INVITEs are handled here; loops are answered 482 (16.3 step 4); responses without a
//! client transaction are forwarded statelessly (16.11, 18.2.1); malformed requests get 400.
//! Before a new request reaches the router the core checks what RFC 3261 16.3 asks of every
//! proxy: the Request-URI scheme (416), Proxy-Require (420, this proxy supports no option);
//! and it caps the live server transactions: beyond [`Core::set_limits`]' maximum a new
//! request is answered 503 with Retry-After, statelessly (ACKs, responses and
//! retransmissions of live transactions still pass).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::build;
use super::client_tx::ClientHandle;
use super::key::{ClientKey, MAGIC_COOKIE, ServerKey, Sharded};
use super::server_tx::{ServerEvent, ServerTx, ServerTxInner};
use super::{Router, Timers};
use crate::sip::{self, Edits, HeaderName, Message, Method};
use crate::transport::{Host, Inbound, InboundHandler, Proto, Transports};

/// The live server transactions by id (OpenSIPS `t_lookup_ident`): filled by the
/// [`Core`] built with it, read by whoever must reach another request's transaction
/// (the runtime's `tm.inject-branches`). Made before both, so the runtime needs no
/// handle to the core, which holds the runtime as its router. Cheap clone.
#[derive(Clone)]
pub struct Transactions {
    by_id: Arc<Sharded<u64, Arc<ServerTxInner>>>,
}

impl Default for Transactions {
    fn default() -> Transactions {
        Transactions { by_id: Arc::new(Sharded::new()) }
    }
}

impl Transactions {
    /// The live server transaction with this [`ServerTx::id`]: from its creation until
    /// its state machine terminates (after its final response was acknowledged or timed
    /// out). `None` for an unknown or ended one.
    pub fn find(&self, tid: u64) -> Option<ServerTx> {
        self.by_id.get(&tid).map(ServerTx::from_inner)
    }
}

/// The stateful proxy core. Cheap to clone; install it as the transports' handler.
#[derive(Clone)]
pub struct Core {
    inner: Arc<CoreInner>,
}

/// Live transaction counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TmStats {
    /// Server transactions (requests received and not yet terminated).
    pub server: usize,
    /// Client transactions (requests sent and not yet terminated).
    pub client: usize,
    /// Malformed messages seen (answered 400 when possible).
    pub malformed: u64,
    /// Responses forwarded without a client transaction.
    pub stateless_responses: u64,
    /// New requests answered 503 because `max_transactions` server transactions were live.
    pub rejected_overload: u64,
    /// Relays and injections refused because they would pass `max_branches`.
    pub branches_refused: u64,
}

/// Default most live server transactions ([`Core::set_limits`]; `[server] max_transactions`).
pub const DEFAULT_MAX_TRANSACTIONS: usize = 50_000;

/// Default most branches one server transaction forks over its life, every serial stage and
/// injection included ([`Core::set_max_branches`]; `[server] max_branches`): Kamailio's and
/// OpenSIPS's 12. A route that keeps appending targets, or a contact that re-registers from
/// new ports while its call waits, cannot make one INVITE a datagram storm.
pub const DEFAULT_MAX_BRANCHES: usize = 12;

pub(crate) struct CoreInner {
    pub(crate) transports: Transports,
    pub(crate) timers: Timers,
    pub(crate) router: Arc<dyn Router>,
    pub(crate) servers: Sharded<ServerKey, Arc<ServerTxInner>>,
    pub(crate) clients: Sharded<ClientKey, ClientHandle>,
    /// Live server transactions by id ([`Core::find_tx`]: injection from another route).
    pub(crate) by_id: Arc<Sharded<u64, Arc<ServerTxInner>>>,
    pub(crate) live_servers: AtomicUsize,
    pub(crate) live_clients: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    /// Keys the loop-detection hash (per process, so peers cannot forge collisions).
    loop_hasher: RandomState,
    malformed: AtomicU64,
    stateless_responses: AtomicU64,
    /// Most live server transactions; a new request beyond it gets 503.
    max_servers: AtomicUsize,
    /// The Retry-After of that 503, seconds.
    retry_after_s: AtomicU32,
    rejected_overload: AtomicU64,
    /// Most branches per server transaction.
    pub(crate) max_branches: AtomicUsize,
    pub(crate) branches_refused: AtomicU64,
    /// Shutting down: new requests outside a dialog get 503 ([`Core::drain`]).
    draining: AtomicBool,
}

impl Core {
    /// A core sending through `transports` and routing new requests to `router`.
    pub fn new(transports: Transports, timers: Timers, router: Arc<dyn Router>) -> Core {
        Core::with_transactions(transports, timers, router, Transactions::default())
    }

    /// As [`new`](Self::new), registering its server transactions in `transactions`
    /// (shared with the router, which finds them there by id).
    pub fn with_transactions(
        transports: Transports,
        timers: Timers,
        router: Arc<dyn Router>,
        transactions: Transactions,
    ) -> Core {
        Core {
            inner: Arc::new(CoreInner {
                transports,
                timers,
                router,
                servers: Sharded::new(),
                clients: Sharded::new(),
                by_id: transactions.by_id,
                live_servers: AtomicUsize::new(0),
                live_clients: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                loop_hasher: RandomState::new(),
                malformed: AtomicU64::new(0),
                stateless_responses: AtomicU64::new(0),
                max_servers: AtomicUsize::new(DEFAULT_MAX_TRANSACTIONS),
                retry_after_s: AtomicU32::new(5),
                rejected_overload: AtomicU64::new(0),
                max_branches: AtomicUsize::new(DEFAULT_MAX_BRANCHES),
                branches_refused: AtomicU64::new(0),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// At most `max_transactions` live server transactions (0: no limit); a new request
    /// beyond it is answered 503 with `Retry-After: retry_after_s`, without a transaction.
    pub fn set_limits(&self, max_transactions: usize, retry_after_s: u32) {
        let max = if max_transactions == 0 { usize::MAX } else { max_transactions };
        self.inner.max_servers.store(max, Ordering::Relaxed);
        self.inner.retry_after_s.store(retry_after_s, Ordering::Relaxed);
    }

    /// At most `max_branches` branches per server transaction (at least 1), over all its
    /// stages and injections; a relay or injection past it fails with
    /// [`TmError::BadTarget`] and sends nothing.
    pub fn set_max_branches(&self, max_branches: usize) {
        self.inner.max_branches.store(max_branches.max(1), Ordering::Relaxed);
    }

    /// Starts a graceful drain: from now on a new request outside a dialog (no
    /// To tag) is answered `503 Service Unavailable` with Retry-After, so its
    /// caller retries elsewhere or after the restart, while in-dialog requests
    /// (the BYE of an answered call), ACKs, CANCELs and every live
    /// transaction go on. [`unanswered`](Self::unanswered) tells when the
    /// live ones are done.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Server transactions whose request has no final response yet (ringing
    /// calls, parked guests, requests being routed): what a drain waits for.
    /// Answered ones that only absorb retransmissions (Timers J, L) are not
    /// counted, nor client transactions: one still waiting belongs to an
    /// unanswered server transaction, or to a branch a 2xx already beat
    /// (being cancelled), or lingers in Timer M / D / K for retransmissions.
    pub fn unanswered(&self) -> usize {
        self.inner.by_id.count(|tx| !tx.tu().final_sent)
    }

    /// The live server transaction with this [`ServerTx::id`] (OpenSIPS `t_lookup_ident`):
    /// from its creation until its state machine terminates (after its final response was
    /// acknowledged or timed out). `None` for an unknown or ended one.
    pub fn find_tx(&self, tid: u64) -> Option<ServerTx> {
        self.inner.by_id.get(&tid).map(ServerTx::from_inner)
    }

    /// Live transaction counts and counters.
    pub fn stats(&self) -> TmStats {
        let i = &self.inner;
        TmStats {
            server: i.live_servers.load(Ordering::Relaxed),
            client: i.live_clients.load(Ordering::Relaxed),
            malformed: i.malformed.load(Ordering::Relaxed),
            stateless_responses: i.stateless_responses.load(Ordering::Relaxed),
            rejected_overload: i.rejected_overload.load(Ordering::Relaxed),
            branches_refused: i.branches_refused.load(Ordering::Relaxed),
        }
    }
}

impl InboundHandler for Core {
    fn on_message(&self, inbound: Inbound) {
        if inbound.msg.is_request() {
            self.inner.on_request(inbound);
        } else {
            self.inner.on_response(inbound);
        }
    }

    fn on_malformed(&self, raw: Bytes, err: sip::ParseError, src: SocketAddr, proto: Proto) {
        self.inner.malformed.fetch_add(1, Ordering::Relaxed);
        // A 400 is possible only for a request with a usable Via; it goes to the source.
        if let Some(resp) = sip::reply_to_malformed(&raw, &err.to_string())
            && let Err(e) = self.inner.transports.send(proto, src, resp)
        {
            tracing::debug!(%src, error = %e, "cannot send 400 for a malformed message");
        }
    }
}

impl CoreInner {
    fn on_request(self: &Arc<Self>, mut inb: Inbound) {
        let key = match ServerKey::of(&inb.msg) {
            Ok(k) => k,
            Err(err) => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
                if let Some(resp) = sip::reply_to_malformed(inb.msg.raw(), &err.to_string()) {
                    let _ = self.transports.send(inb.proto, inb.src, resp);
                }
                return;
            }
        };
        // 18.2.1 / RFC 3581, before anything answers or relays it. The key does not change:
        // only parameters other than the branch are added.
        if let Some(stamped) = build::stamp_top_via(&inb.msg, inb.src) {
            inb.msg = stamped;
        }
        match inb.msg.method() {
            Some(Method::Ack) => self.on_ack(inb, key),
            Some(Method::Cancel) => self.on_cancel(inb, key),
            _ => {
                // 17.2.3: a retransmission goes to its transaction.
                if let Some(tx) = self.servers.get(&key) {
                    tx.post_input(ServerEvent::Request);
                    return;
                }
                if let Some((code, reason, extra)) = refusal(&inb.msg) {
                    // 16.3 steps 2 and 5, before any route runs; statelessly, as a
                    // retransmission gets the same answer again.
                    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    self.reply_stateless(&inb, code, reason, &extra);
                    return;
                }
                if self.over_capacity() || (self.draining.load(Ordering::Relaxed) && !in_dialog(&inb.msg)) {
                    self.reject_overload(&inb);
                    return;
                }
                let looped = self.is_loop(&inb.msg);
                let is_invite = inb.msg.method() == Some(&Method::Invite);
                let tx = match self.new_server_tx(inb, key) {
                    Ok(tx) => tx,
                    Err(existing) => {
                        existing.post_input(ServerEvent::Request);
                        return;
                    }
                };
                if is_invite {
                    // 16.2 / 17.2.1: answer 100 at once so the UAC stops retransmitting.
                    let _ = tx.reply(100, "Trying", &[], None);
                }
                if looped {
                    // 16.3 step 4: a loop, not a spiral.
                    let _ = tx.reply(482, "Loop Detected", &[], None);
                    tx.route_done();
                    return;
                }
                self.spawn_route(tx);
            }
        }
    }

    /// 17.2.3: an ACK matching an INVITE server transaction belongs to it (absorbed after a
    /// non-2xx, hop by hop); otherwise it acknowledges a 2xx and is routed end to end.
    fn on_ack(self: &Arc<Self>, inb: Inbound, key: ServerKey) {
        match self.servers.get(&key) {
            Some(tx) => tx.post_input(ServerEvent::Ack(Box::new(inb))),
            None => self.route_ack(inb),
        }
    }

    /// An ACK for a 2xx: the router gets it with a transaction-less [`ServerTx`].
    pub(crate) fn route_ack(self: &Arc<Self>, inb: Inbound) {
        let tx = ServerTx::stateless(self.clone(), inb);
        let router = self.router.clone();
        tokio::spawn(async move { router.on_request(tx).await });
    }

    /// 16.10: a CANCEL is its own transaction; if it matches a pending INVITE, answer it 200
    /// at once and cancel the INVITE's branches; with no match, 481.
    fn on_cancel(self: &Arc<Self>, inb: Inbound, key: ServerKey) {
        if let Some(tx) = self.servers.get(&key) {
            tx.post_input(ServerEvent::Request);
            return;
        }
        let invite = self.servers.get(&key.with_method(Method::Invite));
        // A CANCEL of a live INVITE always gets through: it ends a transaction.
        if invite.is_none() && self.over_capacity() {
            self.reject_overload(&inb);
            return;
        }
        let ctx = match self.new_server_tx(inb, key) {
            Ok(tx) => tx,
            Err(existing) => {
                existing.post_input(ServerEvent::Request);
                return;
            }
        };
        match invite {
            Some(inv) => {
                // 9.2: the 200 to the CANCEL carries the To tag of the INVITE's responses.
                let tag = inv.to_tag().to_owned();
                let _ = ctx.reply_tagged(200, "OK", Some(&tag));
                ServerTx::from_inner(inv).cancel_upstream();
            }
            None => {
                let _ = ctx.reply(481, "Call/Transaction Does Not Exist", &[], None);
            }
        }
    }

    fn spawn_route(self: &Arc<Self>, tx: ServerTx) {
        let router = self.router.clone();
        tokio::spawn(async move {
            router.on_request(tx.clone()).await;
            tx.route_done();
        });
    }

    fn over_capacity(&self) -> bool {
        self.live_servers.load(Ordering::Relaxed) >= self.max_servers.load(Ordering::Relaxed)
    }

    /// The overload answer: 503 with Retry-After, no transaction, no route (RFC 3261 21.5.4).
    fn reject_overload(&self, inb: &Inbound) {
        self.rejected_overload.fetch_add(1, Ordering::Relaxed);
        let retry = self.retry_after_s.load(Ordering::Relaxed).to_string();
        self.reply_stateless(inb, 503, "Service Unavailable", &[("Retry-After", &retry)]);
    }

    /// A response sent without a transaction, where the request's Via says (18.2.2).
    fn reply_stateless(&self, inb: &Inbound, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let tag = build::random_tag();
        let bytes = sip::response(&inb.msg, code, reason, Some(&tag), extra, None);
        let dst = build::reply_destination(inb.msg.top_via().ok().as_ref(), inb.proto, inb.src);
        if let Err(e) = self.transports.send(inb.proto, dst, bytes) {
            tracing::debug!(%dst, error = %e, code, "cannot send a stateless response");
        }
    }

    /// Creates and registers a server transaction, or returns the one that won the race.
    fn new_server_tx(self: &Arc<Self>, inb: Inbound, key: ServerKey) -> Result<ServerTx, Arc<ServerTxInner>> {
        ServerTx::create(self.clone(), inb, key)
    }

    fn on_response(self: &Arc<Self>, inb: Inbound) {
        match ClientKey::of_response(&inb.msg) {
            Ok(key) => {
                if let Some(c) = self.clients.get(&key) {
                    // A full inbox drops the response; the peer retransmits (UDP).
                    c.deliver(inb.msg);
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(src = %inb.src, error = %e, "response without a usable Via/CSeq dropped");
                return;
            }
        }
        self.forward_stateless(inb.msg);
    }

    /// 16.11 / 18.2.1: a response with no client transaction whose top Via is ours goes to
    /// the next Via's address; anything else is dropped (18.1.2).
    pub(crate) fn forward_stateless(self: &Arc<Self>, msg: Message) {
        let dest = {
            let Ok(vias) = msg.vias() else { return };
            let (Some(top), Some(next)) = (vias.first(), vias.get(1)) else { return };
            if !self.transports.is_local(top.host, top.port) {
                tracing::debug!(host = top.host, "response whose top Via is not ours dropped");
                return;
            }
            build::via_destination(next)
        };
        let Some((proto, host, port)) = dest else { return };
        let mut edits = Edits::default();
        edits.pop_first_value(HeaderName::Via);
        let bytes = sip::serialize(&msg, &edits);
        self.stateless_responses.fetch_add(1, Ordering::Relaxed);
        self.send_to_host(proto, host, port, bytes);
    }

    /// Sends to a host that may be a name (resolved in a task, so nothing blocks).
    pub(crate) fn send_to_host(self: &Arc<Self>, proto: Proto, host: Host, port: u16, bytes: Bytes) {
        match host {
            Host::Ip(ip) => {
                let dst = SocketAddr::new(ip, port);
                if let Err(e) = self.transports.send(proto, dst, bytes) {
                    tracing::debug!(%dst, error = %e, "stateless send failed");
                }
            }
            Host::Name(name) => {
                let me = self.clone();
                tokio::spawn(async move {
                    match build::resolve(&name, port).await {
                        Some(dst) => {
                            let _ = me.transports.send(proto, dst, bytes);
                        }
                        None => tracing::debug!(host = %name, "cannot resolve next hop"),
                    }
                });
            }
        }
    }

    /// The loop-detection hash of a received request (16.6 step 8): everything that affects
    /// its routing here, but not the method (a CANCEL and the ACK of a non-2xx share the
    /// INVITE's branch) nor Via or Max-Forwards (they change on every hop).
    pub(crate) fn loop_hash(&self, req: &Message) -> String {
        let mut h = self.loop_hasher.build_hasher();
        h.write(req.request_uri().unwrap_or("").as_bytes());
        h.write_u8(0);
        h.write(req.call_id().unwrap_or("").as_bytes());
        h.write_u8(0);
        h.write(req.from().ok().and_then(|f| f.tag()).unwrap_or("").as_bytes());
        h.write_u8(0);
        h.write(req.to().ok().and_then(|t| t.tag()).unwrap_or("").as_bytes());
        h.write_u8(0);
        h.write_u32(req.cseq().map(|c| c.seq).unwrap_or(0));
        for r in req.values(HeaderName::Route) {
            h.write(r.trim().as_bytes());
            h.write_u8(0);
        }
        for p in req.values_by_name("Proxy-Require") {
            h.write(p.trim().as_bytes());
            h.write_u8(0);
        }
        format!("{:016x}", h.finish())
    }

    /// What makes the client branches of this server transaction unique (16.6 step 8): two
    /// requests that differ only in their top Via are two transactions, so their branches
    /// must differ too. A hash of the server key (top Via branch and sent-by, method).
    pub(crate) fn tx_salt(&self, req: &Message) -> String {
        let mut h = self.loop_hasher.build_hasher();
        if let Ok(key) = ServerKey::of(req) {
            h.write(key.branch.as_bytes());
            h.write_u8(0);
            h.write(key.sent_by.as_bytes());
        }
        format!("{:016x}", h.finish())
    }

    /// 16.3 step 4: a Via with our sent-by whose branch carries this request's loop hash.
    fn is_loop(&self, req: &Message) -> bool {
        let Ok(vias) = req.vias() else { return false };
        let mut prefix: Option<String> = None;
        vias.iter().any(|v| {
            if !self.transports.is_local(v.host, v.port) {
                return false;
            }
            let Some(branch) = v.branch else { return false };
            let p = prefix.get_or_insert_with(|| format!("{MAGIC_COOKIE}{}.", self.loop_hash(req)));
            branch.starts_with(p.as_str())
        })
    }
}

/// A request within a dialog (its To has a tag).
fn in_dialog(req: &Message) -> bool {
    req.to().ok().and_then(|to| to.tag()).is_some()
}

/// RFC 3261 16.3's checks a proxy makes before routing a request (not an ACK or CANCEL):
/// step 2, a Request-URI scheme it does not know (sip, sips; tel, which a route may rewrite
/// into a SIP URI, goes on) gets 416; step 5, a Proxy-Require option gets 420 with
/// Unsupported listing them, as this proxy supports no extension there.
#[allow(clippy::type_complexity, reason = "one response: code, reason, extra headers")]
pub(crate) fn refusal(req: &Message) -> Option<(u16, &'static str, Vec<(&'static str, String)>)> {
    let ruri = req.request_uri().unwrap_or("");
    let scheme = ruri.split_once(':').map_or(ruri, |(s, _)| s);
    if !["sip", "sips", "tel"].iter().any(|k| scheme.eq_ignore_ascii_case(k)) {
        return Some((416, "Unsupported URI Scheme", vec![]));
    }
    let options: Vec<&str> = req
        .values_by_name("Proxy-Require")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if !options.is_empty() {
        return Some((420, "Bad Extension", vec![("Unsupported", options.join(", "))]));
    }
    None
}
