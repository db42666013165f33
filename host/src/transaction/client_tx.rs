//! The client transaction driver: one task per request the proxy sends (a branch of a
//! relayed request, or a CANCEL), running Figure 5 or 6 and reporting to the response
//! context (the TU).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::build;
use super::fork::ProxyEvent;
use super::fsm::{Action, Cfg, client_invite, client_non_invite};
use super::inbox::Inbox;
use super::key::ClientKey;
use super::proxy::CoreInner;
use super::server_tx::sleep_until;
use super::timers::{Timer, TimerSet};
use crate::sip::Message;
use crate::transport::Proto;

/// Responses queued per client transaction; more are dropped (UDP peers retransmit).
const INBOX_LEN: usize = 16;

/// The table's handle to a live client transaction.
#[derive(Clone)]
pub(crate) struct ClientHandle {
    pub(crate) id: u64,
    inbox: Arc<Inbox<ClientEvent>>,
}

// Responses travel inline: boxing them would cost an allocation per response on the
// hot path, while the inbox holds few events and owns no memory when empty.
#[allow(clippy::large_enum_variant, reason = "a boxed Message would be one more allocation per response")]
pub(crate) enum ClientEvent {
    Response(Message),
    /// The TU gives up (Timer C without a provisional, or no final after CANCEL).
    Abandon,
    /// The TCP connection the request was queued on could not be opened.
    ConnectFailed,
}

impl ClientHandle {
    /// Queues a response; dropped if the inbox is full.
    pub(crate) fn deliver(&self, msg: Message) {
        let _ = self.inbox.push(ClientEvent::Response(msg));
    }

    pub(crate) fn abandon(&self) {
        let _ = self.inbox.push(ClientEvent::Abandon);
    }
}

/// Who hears about responses: the response context and the branch index, or nobody (a CANCEL).
pub(crate) type Tu = Option<(Arc<Inbox<ProxyEvent>>, usize)>;

/// Everything a client transaction needs.
pub(crate) struct ClientSpec {
    pub(crate) key: ClientKey,
    pub(crate) bytes: Bytes,
    /// The request without our Via and our Via value (to build the ACK of a non-2xx).
    pub(crate) base: Option<(Message, String)>,
    pub(crate) proto: Proto,
    pub(crate) dst: SocketAddr,
    pub(crate) tu: Tu,
}

/// Registers and starts a client transaction; `None` if the key is taken (never for our
/// unique branches, but checked rather than assumed).
pub(crate) fn spawn(core: &Arc<CoreInner>, spec: ClientSpec) -> Option<ClientHandle> {
    let handle =
        ClientHandle { id: core.next_id.fetch_add(1, Ordering::Relaxed), inbox: Arc::new(Inbox::new(INBOX_LEN)) };
    if core.clients.insert_new(spec.key.clone(), handle.clone()).is_err() {
        tracing::warn!(branch = %spec.key.branch, "duplicate client transaction key");
        return None;
    }
    core.live_clients.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(run(core.clone(), spec, handle.clone()));
    Some(handle)
}

#[derive(Clone, Copy, Debug)]
enum Fsm {
    Invite(client_invite::State),
    NonInvite(client_non_invite::State),
}

impl Fsm {
    /// Whether the request may still be (re)sent: Timer A / E running.
    fn may_send(self) -> bool {
        matches!(
            self,
            Fsm::Invite(client_invite::State::Calling { .. })
                | Fsm::NonInvite(client_non_invite::State::Trying { .. } | client_non_invite::State::Proceeding)
        )
    }

    /// Whether an ACK may still be built here (a 300-699 or its retransmission may come).
    fn may_ack(self) -> bool {
        matches!(
            self,
            Fsm::Invite(
                client_invite::State::Calling { .. }
                    | client_invite::State::Proceeding
                    | client_invite::State::Completed
            )
        )
    }

    fn terminated(self) -> bool {
        matches!(
            self,
            Fsm::Invite(client_invite::State::Terminated) | Fsm::NonInvite(client_non_invite::State::Terminated)
        )
    }
}

#[derive(Clone, Copy)]
enum Input {
    Resp(u16),
    Timer(Timer),
    TransportErr,
    Abandon,
}

fn step(fsm: Fsm, input: Input, cfg: &Cfg) -> (Fsm, Vec<Action>) {
    match fsm {
        Fsm::Invite(s) => {
            use client_invite::Event as E;
            let ev = match input {
                Input::Resp(c) if c < 200 => E::Resp1xx,
                Input::Resp(c) if c < 300 => E::Resp2xx,
                Input::Resp(_) => E::Resp300_699,
                Input::Timer(Timer::A) => E::TimerA,
                Input::Timer(Timer::B) => E::TimerB,
                Input::Timer(Timer::D) => E::TimerD,
                Input::Timer(Timer::M) => E::TimerM,
                Input::Timer(_) => return (fsm, vec![]),
                Input::TransportErr => E::TransportErr,
                Input::Abandon => E::Abandon,
            };
            let (s, a) = client_invite::step(s, ev, cfg);
            (Fsm::Invite(s), a)
        }
        Fsm::NonInvite(s) => {
            use client_non_invite::Event as E;
            let ev = match input {
                Input::Resp(c) if c < 200 => E::Resp1xx,
                Input::Resp(_) => E::RespFinal,
                Input::Timer(Timer::E) => E::TimerE,
                Input::Timer(Timer::F) => E::TimerF,
                Input::Timer(Timer::K) => E::TimerK,
                Input::Timer(_) => return (fsm, vec![]),
                Input::TransportErr => E::TransportErr,
                Input::Abandon => E::Abandon,
            };
            let (s, a) = client_non_invite::step(s, ev, cfg);
            (Fsm::NonInvite(s), a)
        }
    }
}

async fn run(core: Arc<CoreInner>, mut spec: ClientSpec, handle: ClientHandle) {
    let cfg = Cfg { reliable: spec.proto.is_reliable(), timers: core.timers.clone() };
    let is_invite = spec.key.method == crate::sip::Method::Invite;
    let (mut fsm, first) = if is_invite {
        let (s, a) = client_invite::start(&cfg);
        (Fsm::Invite(s), a)
    } else {
        let (s, a) = client_non_invite::start(&cfg);
        (Fsm::NonInvite(s), a)
    };
    let mut timers = TimerSet::default();
    let mut pending = Some(first);
    let mut current: Option<Message> = None;
    // Events taken from the inbox and not yet fed to the machine, oldest first.
    let mut batch = std::collections::VecDeque::new();
    loop {
        // Execute actions; a failed send feeds TransportErr back into the machine.
        while let Some(actions) = pending.take() {
            for a in actions {
                if let Some(err_actions) = execute(&core, &spec, &handle, &mut timers, current.as_ref(), a).await {
                    let (s, more) = step(fsm, err_actions, &cfg);
                    fsm = s;
                    pending = Some(more);
                }
            }
        }
        // An INVITE's transaction outlives its 2xx by Timer M (32 s) and a non-INVITE's its
        // final by Timer K: free the request and the response they no longer use, which at
        // 1000 calls/s is tens of megabytes held for nothing.
        current = None;
        if !fsm.may_send() {
            spec.bytes = Bytes::new();
        }
        if !fsm.may_ack() {
            spec.base = None;
        }
        if fsm.terminated() {
            break;
        }
        let input = match batch.pop_front() {
            Some(ClientEvent::Response(m)) => {
                let Some(code) = m.status() else { continue };
                current = Some(m);
                Input::Resp(code)
            }
            Some(ClientEvent::Abandon) => Input::Abandon,
            Some(ClientEvent::ConnectFailed) => Input::TransportErr,
            None => {
                let next = timers.next();
                tokio::select! {
                    events = handle.inbox.recv_all() => {
                        batch = events;
                        continue;
                    }
                    () = sleep_until(next) => {
                        let Some((_, t)) = next else { continue };
                        timers.clear(t);
                        Input::Timer(t)
                    }
                }
            }
        };
        let (s, actions) = step(fsm, input, &cfg);
        fsm = s;
        pending = Some(actions);
    }
    handle.inbox.close();
    core.clients.remove_if(&spec.key, |h| h.id == handle.id);
    core.live_clients.fetch_sub(1, Ordering::Relaxed);
    if let Some((tu, branch)) = &spec.tu {
        let _ = tu.send(ProxyEvent::ClientDone { branch: *branch }).await;
    }
}

/// Runs one action; returns `Some(TransportErr)` when a send failed.
async fn execute(
    core: &Arc<CoreInner>,
    spec: &ClientSpec,
    handle: &ClientHandle,
    timers: &mut TimerSet,
    current: Option<&Message>,
    a: Action,
) -> Option<Input> {
    match a {
        Action::SendRequest | Action::Retransmit => {
            let inbox = handle.inbox.clone();
            let on_failure = move || {
                let _ = inbox.push(ClientEvent::ConnectFailed);
            };
            if let Err(e) = core.transports.send_or_report(spec.proto, spec.dst, spec.bytes.clone(), on_failure) {
                tracing::debug!(dst = %spec.dst, error = %e, "request send failed");
                return Some(Input::TransportErr);
            }
        }
        Action::Timer(op) => timers.apply(op),
        Action::PassUp => {
            if let (Some((tu, branch)), Some(m)) = (&spec.tu, current)
                && let Err(ProxyEvent::Response { msg, .. }) =
                    tu.send(ProxyEvent::Response { branch: *branch, msg: m.clone() }).await
                && msg.status().is_some_and(|c| (200..300).contains(&c))
            {
                // The response context ended once its final went upstream; a 2xx still goes.
                core.forward_stateless(msg);
            }
        }
        Action::SendAck => {
            if let (Some((base, via)), Some(resp)) = (&spec.base, current) {
                let ack = build::ack(base, via, resp);
                let _ = core.transports.send(spec.proto, spec.dst, ack);
            }
        }
        Action::Timeout => {
            if let Some((tu, branch)) = &spec.tu {
                let _ = tu.send(ProxyEvent::Timeout { branch: *branch }).await;
            }
        }
        Action::TransportError => {
            if let Some((tu, branch)) = &spec.tu {
                let _ = tu.send(ProxyEvent::TransportErr { branch: *branch }).await;
            }
        }
        Action::SendResponse | Action::PassAck => {}
    }
    None
}
