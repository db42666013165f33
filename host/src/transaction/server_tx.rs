//! [`ServerTx`]: the router's handle to one server transaction, its replies, and the driver
//! task that runs the server state machine (Figure 7 or 8) and its timers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use super::fork::ProxyEvent;
use super::fsm::{Action, Cfg, server_invite, server_non_invite};
use super::inbox::{Inbox, PushError};
use super::key::ServerKey;
use super::proxy::CoreInner;
use super::timers::{Timer, TimerSet};
use super::{Forward, Target, TmError, build};
use crate::sip::{self, Message, Method, Uri};
use crate::transport::{Inbound, Proto};

/// Events queued per server transaction; retransmissions beyond this are dropped.
const INBOX_LEN: usize = 32;

/// A cheap-clone handle to one server transaction (or, for an ACK to a 2xx, to a request
/// without one: [`reply`](ServerTx::reply) then fails and [`relay`](ServerTx::relay)
/// forwards statelessly).
#[derive(Clone)]
pub struct ServerTx {
    pub(crate) inner: Arc<ServerTxInner>,
}

pub(crate) struct ServerTxInner {
    pub(crate) id: u64,
    pub(crate) core: Arc<CoreInner>,
    pub(crate) req: Message,
    pub(crate) proto: Proto,
    pub(crate) src: SocketAddr,
    /// Where responses go (18.2.2, RFC 3581).
    pub(crate) reply_dst: SocketAddr,
    pub(crate) is_invite: bool,
    /// `None` for a transaction-less request (ACK to a 2xx).
    key: Option<ServerKey>,
    /// The driver's queue, in the transaction itself (no allocation while empty: a
    /// parked call holds its transaction for minutes).
    inbox: Option<Inbox<ServerEvent>>,
    to_tag: OnceLock<String>,
    tu: Mutex<TuState>,
}

/// What the TU side (router, proxy core) has done with the transaction.
#[derive(Default)]
pub(crate) struct TuState {
    /// A final response went upstream.
    pub(crate) final_sent: bool,
    /// CANCELled by the upstream client.
    pub(crate) cancelled: bool,
    /// A 2xx or 6xx arrived: no new branches (16.7 steps 5 and 10).
    pub(crate) closed: bool,
    /// Relay calls accepted (serial stages requested).
    pub(crate) stages_requested: usize,
    /// Branch indexes handed out (unique branch parameters across stages).
    pub(crate) next_branch: usize,
    /// The response context, once relayed (or waiting for branches).
    pub(crate) proxy: Option<Arc<Inbox<ProxyEvent>>>,
    /// `wait_for_new_branches` is in force: the response context holds a phony branch.
    pub(crate) wait: Option<WaitTu>,
    /// What `wait_for_new_branches` was given (edits, Record-Route, hooks) for injected
    /// branches; targets and next hops cleared.
    pub(crate) wait_template: Option<Box<Forward>>,
    /// The same for the last relay (used by injections when there was no wait).
    pub(crate) last_relay: Option<Box<Forward>>,
    /// Every branch forked (Request-URI without brackets, explicit next hop), so an
    /// injection skips duplicates.
    pub(crate) forked: Vec<Target>,
    /// Run with the id once the transaction is gone (`ServerTx::on_end`); `ended` after.
    pub(crate) on_end: Vec<Box<dyn FnOnce(u64) + Send>>,
    pub(crate) ended: bool,
}

/// The TU side of a `wait_for_new_branches`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WaitTu {
    /// Injections (that started a branch) still awaited before the wait ends; `None`: no limit.
    pub(crate) expected_left: Option<u32>,
}

/// Inputs of a server transaction driver.
pub(crate) enum ServerEvent {
    /// A retransmission of the request.
    Request,
    /// A matching ACK (17.2.3).
    Ack(Box<Inbound>),
    /// A response to send (from the route or forwarded by the proxy core).
    Tu { code: u16, bytes: Bytes },
    /// The route neither answered nor relayed.
    Dropped,
}

impl ServerTx {
    /// Creates, registers and starts a server transaction; returns the existing one if the
    /// key is already taken.
    pub(crate) fn create(core: Arc<CoreInner>, inb: Inbound, key: ServerKey) -> Result<ServerTx, Arc<ServerTxInner>> {
        let inner = Arc::new(ServerTxInner::new(core.clone(), inb, Some(key.clone()), Some(Inbox::new(INBOX_LEN))));
        core.servers.insert_new(key, inner.clone())?;
        // Ids are unique, so this insert cannot collide.
        let _ = core.by_id.insert_new(inner.id, inner.clone());
        core.live_servers.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run(inner.clone()));
        Ok(ServerTx { inner })
    }

    /// A handle for a request that has no transaction (ACK to a 2xx).
    pub(crate) fn stateless(core: Arc<CoreInner>, inb: Inbound) -> ServerTx {
        ServerTx { inner: Arc::new(ServerTxInner::new(core, inb, None, None)) }
    }

    pub(crate) fn from_inner(inner: Arc<ServerTxInner>) -> ServerTx {
        ServerTx { inner }
    }

    /// Identifies the transaction for the process lifetime.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The request as received.
    pub fn request(&self) -> &Message {
        &self.inner.req
    }

    /// Transport and remote address the request came from.
    pub fn source(&self) -> (Proto, SocketAddr) {
        (self.inner.proto, self.inner.src)
    }

    /// Sends a response built from the request (RFC 3261 8.2.6, with this transaction's To
    /// tag on every response above 100). Provisionals may precede one final; after the
    /// final, [`TmError::AlreadyAnswered`]. A final response also cancels pending branches.
    pub fn reply(
        &self,
        code: u16,
        reason: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<(), TmError> {
        if self.inner.inbox.is_none() {
            return Err(TmError::Completed);
        }
        if !(100..700).contains(&code) {
            return Err(TmError::BadTarget(format!("status code {code} not in 100..=699")));
        }
        let proxy = {
            let mut tu = self.inner.tu();
            if tu.final_sent {
                return Err(TmError::AlreadyAnswered);
            }
            if code >= 200 {
                tu.final_sent = true;
            }
            tu.proxy.clone()
        };
        let tag = (code > 100).then(|| self.inner.to_tag());
        let bytes = sip::response(&self.inner.req, code, reason, tag, extra, body);
        self.inner.post_tu(code, bytes)?;
        if code >= 200
            && let Some(p) = proxy
        {
            let _ = p.push(ProxyEvent::Answered);
        }
        Ok(())
    }

    /// A response with an explicit To tag (the 200 to a CANCEL reuses the INVITE's tag).
    pub(crate) fn reply_tagged(&self, code: u16, reason: &str, tag: Option<&str>) -> Result<(), TmError> {
        {
            let mut tu = self.inner.tu();
            if tu.final_sent {
                return Err(TmError::AlreadyAnswered);
            }
            tu.final_sent = code >= 200;
        }
        let bytes = sip::response(&self.inner.req, code, reason, tag, &[], None);
        self.inner.post_tu(code, bytes)
    }

    /// Sends a response forwarded from a branch (our Via already popped). 16.7 step 5:
    /// provisionals only before a final; after a final only 2xx to an INVITE. Returns
    /// false when the response must not go upstream.
    pub(crate) fn forward_response(&self, code: u16, bytes: Bytes) -> bool {
        {
            let mut tu = self.inner.tu();
            if code < 200 {
                if tu.final_sent {
                    return false;
                }
            } else if tu.final_sent {
                if !(self.inner.is_invite && (200..300).contains(&code)) {
                    return false;
                }
            } else {
                tu.final_sent = true;
            }
        }
        self.inner.post_tu(code, bytes).is_ok()
    }

    /// Is a final response out?
    pub fn is_answered(&self) -> bool {
        self.inner.tu().final_sent
    }

    /// "<sip:HOST:PORT;lr>" (with `;transport=tcp` over TCP) for this proxy on the
    /// transport the request arrived on.
    pub fn record_route_value(&self) -> String {
        let (host, port) = self.inner.core.transports.sent_by(self.inner.proto);
        match self.inner.proto {
            Proto::Udp => format!("<sip:{host}:{port};lr>"),
            Proto::Tcp => format!("<sip:{host}:{port};transport=tcp;lr>"),
        }
    }

    /// Does this SIP URI (bare or in angle brackets) point at this proxy?
    pub fn is_local_uri(&self, uri: &str) -> bool {
        match Uri::parse(build::strip_brackets(uri)) {
            Ok(u) => {
                (u.scheme.eq_ignore_ascii_case("sip") || u.scheme.eq_ignore_ascii_case("sips"))
                    && self.inner.core.transports.is_local(u.host, u.port)
            }
            Err(_) => false,
        }
    }

    /// The route finished without answering or relaying: the request is dropped (as
    /// OpenSIPS's `exit`); the transaction absorbs retransmissions, then ends.
    pub(crate) fn route_done(&self) {
        if self.inner.inbox.is_none() {
            return;
        }
        let dropped = {
            let tu = self.inner.tu();
            !tu.final_sent && tu.proxy.is_none()
        };
        if dropped {
            let _ = self.inner.post(ServerEvent::Dropped);
        }
    }

    /// The upstream client CANCELled this INVITE (16.10): cancel the branches (the response
    /// context then answers 487), or answer 487 now if nothing was relayed.
    pub(crate) fn cancel_upstream(&self) {
        let proxy = {
            let mut tu = self.inner.tu();
            if tu.final_sent || tu.cancelled {
                return;
            }
            tu.cancelled = true;
            tu.proxy.clone()
        };
        match proxy {
            Some(p) => {
                // The context also re-checks `cancelled` after every event.
                let _ = p.push(ProxyEvent::Cancel);
            }
            None => {
                let _ = self.reply(487, "Request Terminated", &[], None);
            }
        }
    }

    pub(crate) fn tu(&self) -> MutexGuard<'_, TuState> {
        self.inner.tu()
    }
}

impl ServerTxInner {
    fn new(
        core: Arc<CoreInner>,
        inb: Inbound,
        key: Option<ServerKey>,
        inbox: Option<Inbox<ServerEvent>>,
    ) -> ServerTxInner {
        let reply_dst = build::reply_destination(inb.msg.top_via().ok().as_ref(), inb.proto, inb.src);
        ServerTxInner {
            id: core.next_id.fetch_add(1, Ordering::Relaxed),
            is_invite: inb.msg.method() == Some(&Method::Invite),
            core,
            req: inb.msg,
            proto: inb.proto,
            src: inb.src,
            reply_dst,
            key,
            inbox,
            to_tag: OnceLock::new(),
            tu: Mutex::new(TuState::default()),
        }
    }

    /// False for the transaction-less handle of an ACK to a 2xx.
    pub(crate) fn has_tx(&self) -> bool {
        self.inbox.is_some()
    }

    /// The To tag of this transaction's responses (a request that has one keeps it).
    pub(crate) fn to_tag(&self) -> &str {
        self.to_tag.get_or_init(|| {
            self.req.to().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_else(build::random_tag)
        })
    }

    pub(crate) fn tu(&self) -> MutexGuard<'_, TuState> {
        // Critical sections only flip flags; a poisoned lock holds consistent data.
        self.tu.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a network input (retransmission, ACK); dropped when the inbox is full.
    pub(crate) fn post_input(&self, ev: ServerEvent) {
        if let Some(inbox) = &self.inbox {
            let _ = inbox.push(ev);
        }
    }

    fn post(&self, ev: ServerEvent) -> Result<(), TmError> {
        let Some(inbox) = &self.inbox else { return Err(TmError::Completed) };
        inbox.push(ev).map_err(|e| match e {
            PushError::Full(_) => TmError::Transport("transaction inbox full".into()),
            PushError::Closed(_) => TmError::Completed,
        })
    }

    /// Hands a response to the driver; once the transaction has terminated (a 2xx
    /// retransmission after Timer L), it goes straight to the transport.
    fn post_tu(&self, code: u16, bytes: Bytes) -> Result<(), TmError> {
        let Some(inbox) = &self.inbox else { return Err(TmError::Completed) };
        match inbox.push(ServerEvent::Tu { code, bytes }) {
            Ok(()) => Ok(()),
            Err(PushError::Full(_)) => Err(TmError::Transport("transaction inbox full".into())),
            Err(PushError::Closed(ServerEvent::Tu { bytes, .. })) => self
                .core
                .transports
                .send(self.proto, self.reply_dst, bytes)
                .map_err(|e| TmError::Transport(e.to_string())),
            Err(PushError::Closed(_)) => Err(TmError::Completed),
        }
    }
}

/// The server state machine of either kind.
#[derive(Clone, Copy, Debug)]
enum Fsm {
    Invite(server_invite::State),
    NonInvite(server_non_invite::State),
}

impl Fsm {
    fn terminated(self) -> bool {
        matches!(
            self,
            Fsm::Invite(server_invite::State::Terminated) | Fsm::NonInvite(server_non_invite::State::Terminated)
        )
    }
}

/// Network-independent input the machines understand.
#[derive(Clone, Copy)]
enum Input {
    Request,
    Ack,
    Tu(u16),
    Dropped,
    Timer(Timer),
    TransportErr,
}

fn step(fsm: Fsm, input: Input, cfg: &Cfg) -> (Fsm, Vec<Action>) {
    match fsm {
        Fsm::Invite(s) => {
            use server_invite::Event as E;
            let ev = match input {
                Input::Request => E::Request,
                Input::Ack => E::Ack,
                Input::Tu(c) if c < 200 => E::Tu1xx,
                Input::Tu(c) if c < 300 => E::Tu2xx,
                Input::Tu(_) => E::Tu300_699,
                Input::Dropped => E::TuDropped,
                Input::Timer(Timer::G) => E::TimerG,
                Input::Timer(Timer::H) => E::TimerH,
                Input::Timer(Timer::I) => E::TimerI,
                Input::Timer(Timer::L) => E::TimerL,
                Input::Timer(_) => return (fsm, vec![]),
                Input::TransportErr => E::TransportErr,
            };
            let (s, a) = server_invite::step(s, ev, cfg);
            (Fsm::Invite(s), a)
        }
        Fsm::NonInvite(s) => {
            use server_non_invite::Event as E;
            let ev = match input {
                Input::Request => E::Request,
                // An ACK never matches a non-INVITE transaction (its key says INVITE).
                Input::Ack => return (fsm, vec![]),
                Input::Tu(c) if c < 200 => E::Tu1xx,
                Input::Tu(_) => E::TuFinal,
                Input::Dropped => E::TuDropped,
                Input::Timer(Timer::J) => E::TimerJ,
                Input::Timer(_) => return (fsm, vec![]),
                Input::TransportErr => E::TransportErr,
            };
            let (s, a) = server_non_invite::step(s, ev, cfg);
            (Fsm::NonInvite(s), a)
        }
    }
}

/// The driver: one task per server transaction, until its machine terminates.
async fn run(inner: Arc<ServerTxInner>) {
    // Only transactions made by `create` have a driver, and those have an inbox.
    let Some(inbox) = inner.inbox.as_ref() else { return };
    let mut driver = Driver {
        cfg: Cfg { reliable: inner.proto.is_reliable(), timers: inner.core.timers.clone() },
        fsm: if inner.is_invite {
            Fsm::Invite(server_invite::start())
        } else {
            Fsm::NonInvite(server_non_invite::start())
        },
        timers: TimerSet::default(),
        last: None,
    };
    while !driver.fsm.terminated() {
        let next = driver.timers.next();
        tokio::select! {
            batch = inbox.recv_all() => {
                // Events behind the one that terminates the machine are dropped, as
                // they would be by any closed queue.
                for ev in batch {
                    if driver.fsm.terminated() {
                        break;
                    }
                    match ev {
                        ServerEvent::Request => driver.feed(&inner, Input::Request, None, None),
                        ServerEvent::Ack(inb) => driver.feed(&inner, Input::Ack, None, Some(inb)),
                        ServerEvent::Tu { code, bytes } => driver.feed(&inner, Input::Tu(code), Some(bytes), None),
                        ServerEvent::Dropped => driver.feed(&inner, Input::Dropped, None, None),
                    }
                }
            }
            () = sleep_until(next) => {
                let Some((_, t)) = next else { continue };
                driver.timers.clear(t);
                driver.feed(&inner, Input::Timer(t), None, None);
            }
        }
    }
    // From here on responses go straight to the transport (`post_tu`).
    inbox.close();
    if let Some(key) = &inner.key {
        inner.core.servers.remove_if(key, |v| Arc::ptr_eq(v, &inner));
        inner.core.by_id.remove_if(&inner.id, |v| Arc::ptr_eq(v, &inner));
    }
    inner.core.live_servers.fetch_sub(1, Ordering::Relaxed);
    let hooks = {
        let mut tu = inner.tu();
        tu.ended = true;
        std::mem::take(&mut tu.on_end)
    };
    for hook in hooks {
        hook(inner.id);
    }
}

/// The state of a server transaction driver between inputs.
struct Driver {
    cfg: Cfg,
    fsm: Fsm,
    timers: TimerSet,
    /// The last response sent, for retransmissions.
    last: Option<Bytes>,
}

impl Driver {
    /// Steps the machine with `input` and executes its actions, feeding a transport
    /// error back in; `current` is the response a `Tu` input carries, `ack` the ACK.
    fn feed(&mut self, inner: &ServerTxInner, input: Input, mut current: Option<Bytes>, mut ack: Option<Box<Inbound>>) {
        let transports = &inner.core.transports;
        let mut input = Some(input);
        while let Some(i) = input.take() {
            let (next_fsm, actions) = step(self.fsm, i, &self.cfg);
            self.fsm = next_fsm;
            for a in actions {
                match a {
                    Action::SendResponse => {
                        if let Some(b) = current.take() {
                            if let Err(e) = transports.send(inner.proto, inner.reply_dst, b.clone()) {
                                tracing::debug!(dst = %inner.reply_dst, error = %e, "response send failed");
                                input = Some(Input::TransportErr);
                            }
                            self.last = Some(b);
                        }
                    }
                    Action::Retransmit => {
                        if let Some(b) = &self.last {
                            let _ = transports.send(inner.proto, inner.reply_dst, b.clone());
                        }
                    }
                    Action::Timer(op) => self.timers.apply(op),
                    Action::PassAck => {
                        if let Some(inb) = ack.take() {
                            inner.core.route_ack(*inb);
                        }
                    }
                    Action::Timeout => tracing::debug!(id = inner.id, "no ACK for the final response (Timer H)"),
                    Action::TransportError => tracing::debug!(id = inner.id, "server transaction transport error"),
                    Action::SendRequest | Action::PassUp | Action::SendAck => {}
                }
            }
        }
    }
}

/// Sleeps until the deadline, or forever without one.
pub(crate) async fn sleep_until(next: Option<(tokio::time::Instant, Timer)>) {
    match next {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
