//! The response context of a relayed request (RFC 3261 sections 16.7-16.10): one task per
//! relayed server transaction that starts the branches' client transactions, runs Timer C,
//! forwards provisionals and 2xx, cancels branches, runs the armed reply and failure hooks
//! and finally sends the best response. It also holds the "phony branch" of
//! `wait_for_new_branches` (OpenSIPS): while it is pending, the context does not conclude
//! when its real branches have all failed, so branches injected later still can answer.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::best::{choose_best, upstream_code};
use super::client_tx::{self, ClientHandle, ClientSpec};
use super::inbox::Inbox;
use super::key::ClientKey;
use super::relay::BranchPlan;
use super::server_tx::ServerTx;
use super::{build, proxy::CoreInner};
use crate::sip::{self, Edits, HeaderName, Message, Method};
use crate::transport::Host;

/// RFC 3326 Reason of the CANCEL sent to branches replaced by an injection (as OpenSIPS,
/// `modules/tm/t_cancel.h`).
const CALL_COMPLETED_ELSEWHERE: &str = "SIP ;cause=200 ;text=\"Call completed elsewhere\"";

/// Inputs of a response context.
#[allow(clippy::large_enum_variant, reason = "a boxed Message would be one more allocation per response")]
pub(crate) enum ProxyEvent {
    /// `relay` or `inject` was called: start these branches (a new serial stage when
    /// earlier ones ended); `cancel_existing`: CANCEL the pending ones first (call pickup);
    /// `stop_waiting`: this was the last expected injection.
    Branches {
        plans: Vec<BranchPlan>,
        on_reply: Option<Arc<str>>,
        on_failure: Option<Arc<str>>,
        cancel_existing: bool,
        stop_waiting: bool,
    },
    /// `wait_for_new_branches`: hold the context open until `until` (Timer C).
    Wait { until: Instant, on_reply: Option<Arc<str>>, on_failure: Option<Arc<str>> },
    /// `stop_waiting`: no more injections are awaited.
    StopWaiting,
    /// A branch's next hop was resolved (`None`: it cannot be).
    Resolved { branch: usize, addr: Option<SocketAddr> },
    /// A response passed up by a branch's client transaction.
    Response { branch: usize, msg: Message },
    /// A branch's client transaction timed out (Timer B or F).
    Timeout { branch: usize },
    /// Sending on a branch failed.
    TransportErr { branch: usize },
    /// A branch's client transaction terminated.
    ClientDone { branch: usize },
    /// The upstream client CANCELled the request.
    Cancel,
    /// The route sent a final response itself.
    Answered,
}

/// A branch's final outcome.
#[allow(clippy::large_enum_variant, reason = "most finals are received; boxing them would allocate per branch")]
enum Final {
    /// A response from downstream.
    Received(Message),
    /// Synthesised: 408 (timeout, 16.8), 503 (transport error, 16.9), 487.
    Local(u16),
}

impl Final {
    fn code(&self) -> u16 {
        match self {
            Final::Received(m) => m.status().unwrap_or(500),
            Final::Local(c) => *c,
        }
    }
}

#[derive(PartialEq, Eq)]
enum CancelState {
    None,
    /// Wanted but no provisional yet (9.1: wait for one before sending CANCEL).
    Wanted,
    Sent,
}

struct Branch {
    plan: BranchPlan,
    dst: Option<SocketAddr>,
    client: Option<ClientHandle>,
    provisional: bool,
    final_: Option<Final>,
    cancel: CancelState,
    /// Timer C (INVITE only), restarted by 101-199 (16.7 step 2).
    timer_c: Option<Instant>,
    /// After a CANCEL, how long to wait for the final before giving up (9.1: 64*T1).
    cancel_deadline: Option<Instant>,
    /// Cancelled because another branch takes the call (inject with cancel-existing): the
    /// CANCEL says so, so the phone does not log a missed call (RFC 3326).
    elsewhere: bool,
}

struct ResponseContext {
    tx: ServerTx,
    core: Arc<CoreInner>,
    /// Our inbox: branches' client transactions and resolver tasks report here.
    me: Arc<Inbox<ProxyEvent>>,
    branches: Vec<Branch>,
    on_reply: Option<Arc<str>>,
    on_failure: Option<Arc<str>>,
    is_invite: bool,
    stages_started: usize,
    /// The phony branch of `wait_for_new_branches` is pending until this instant.
    wait_until: Option<Instant>,
    /// The phony branch ended by its timeout: a 408 among the finals (best-response choice).
    wait_timed_out: bool,
}

/// Starts the response context task for `tx`.
pub(crate) fn spawn(tx: ServerTx, me: Arc<Inbox<ProxyEvent>>) {
    let core = tx.inner.core.clone();
    let is_invite = tx.inner.is_invite;
    let ctx = ResponseContext {
        tx,
        core,
        me,
        branches: Vec::new(),
        on_reply: None,
        on_failure: None,
        is_invite,
        stages_started: 0,
        wait_until: None,
        wait_timed_out: false,
    };
    tokio::spawn(ctx.run());
}

impl ResponseContext {
    async fn run(mut self) {
        let inbox = self.me.clone();
        let mut left = std::collections::VecDeque::new();
        'run: loop {
            let next = self.next_deadline();
            tokio::select! {
                mut batch = inbox.recv_all() => {
                    while let Some(ev) = batch.pop_front() {
                        self.on_event(ev).await;
                        if self.settle().await {
                            left = batch;
                            break 'run;
                        }
                    }
                }
                () = sleep_opt(next) => {
                    self.on_tick();
                    if self.settle().await {
                        break 'run;
                    }
                }
            }
        }
        // Late reports (a client transaction ending after the final) are refused, not queued;
        // a 2xx among those already queued (a retransmission, a second UAS behind a forking
        // proxy) still goes upstream, statelessly, as a late one does (16.7 step 5).
        left.extend(inbox.close_and_take());
        for ev in left {
            if let ProxyEvent::Response { msg, .. } = ev
                && self.is_invite
                && msg.status().is_some_and(|c| (200..300).contains(&c))
            {
                self.core.forward_stateless(msg);
            }
        }
    }

    /// What follows every event or tick: the response upstream, if one is due. Returns
    /// whether the context is done.
    async fn settle(&mut self) -> bool {
        self.after_event().await;
        self.finished()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.branches.iter().flat_map(|b| [b.timer_c, b.cancel_deadline]).flatten().chain(self.wait_until).min()
    }

    /// Done when a final went upstream and every branch has its own. Their client
    /// transactions live on (Timer M, D or K, up to 32 s) without the context: a 2xx one
    /// still passes up (a retransmission, or another UAS behind a forking proxy) is
    /// forwarded statelessly (`client_tx`), as 16.7 step 5 forwards every 2xx.
    fn finished(&self) -> bool {
        let tu = self.tx.tu();
        tu.final_sent && tu.stages_requested == self.stages_started && self.branches.iter().all(|b| b.final_.is_some())
    }

    async fn on_event(&mut self, ev: ProxyEvent) {
        match ev {
            ProxyEvent::Branches { plans, on_reply, on_failure, cancel_existing, stop_waiting } => {
                self.stages_started += 1;
                // An injection racing with the end of the transaction starts nothing.
                if !self.open() {
                    return;
                }
                self.on_reply = on_reply;
                self.on_failure = on_failure;
                if cancel_existing {
                    for b in &mut self.branches {
                        b.elsewhere = b.final_.is_none();
                    }
                    self.cancel_pending();
                }
                for plan in plans {
                    self.add_branch(plan);
                }
                if stop_waiting {
                    self.end_wait();
                }
            }
            ProxyEvent::Wait { until, on_reply, on_failure } => {
                self.stages_started += 1;
                if self.open() {
                    self.wait_until = Some(until);
                    self.wait_timed_out = false;
                    self.on_reply = on_reply;
                    self.on_failure = on_failure;
                }
            }
            ProxyEvent::StopWaiting => self.end_wait(),
            ProxyEvent::Resolved { branch, addr } => match addr {
                Some(a) => self.start_client(branch, a),
                None => {
                    tracing::debug!(host = %self.branches[branch].plan.host, "next hop does not resolve");
                    self.set_final(branch, Final::Local(503));
                }
            },
            ProxyEvent::Response { branch, msg } => self.on_response(branch, msg).await,
            // 16.8 / 17.1: a timeout is a 408 from that branch.
            ProxyEvent::Timeout { branch } => self.set_final(branch, Final::Local(408)),
            // 16.9: a transport error is a 503 from that branch.
            ProxyEvent::TransportErr { branch } => self.set_final(branch, Final::Local(503)),
            ProxyEvent::ClientDone { branch } => self.set_final(branch, Final::Local(408)),
            ProxyEvent::Cancel | ProxyEvent::Answered => {}
        }
    }

    fn add_branch(&mut self, plan: BranchPlan) {
        let idx = self.branches.len();
        // An IP literal is the address; only a name needs a copy, for the resolving task.
        let dst = match &plan.host {
            Host::Ip(ip) => Ok(SocketAddr::new(*ip, plan.port)),
            Host::Name(name) => Err((name.clone(), plan.port)),
        };
        self.branches.push(Branch {
            plan,
            dst: None,
            client: None,
            provisional: false,
            final_: None,
            cancel: CancelState::None,
            timer_c: None,
            cancel_deadline: None,
            elsewhere: false,
        });
        match dst {
            Ok(a) => self.start_client(idx, a),
            Err((name, port)) => {
                let me = self.me.clone();
                tokio::spawn(async move {
                    let addr = build::resolve(&name, port).await;
                    let _ = me.send(ProxyEvent::Resolved { branch: idx, addr }).await;
                });
            }
        }
    }

    fn start_client(&mut self, idx: usize, dst: SocketAddr) {
        let is_invite = self.is_invite;
        let timer_c = self.core.timers.c();
        let Some(b) = self.branches.get_mut(idx) else { return };
        if b.final_.is_some() {
            // Cancelled while resolving.
            return;
        }
        b.dst = Some(dst);
        let method = self.tx.request().method().cloned().unwrap_or(Method::Invite);
        let spec = ClientSpec {
            key: ClientKey { branch: b.plan.branch.clone().into_boxed_str(), method },
            // Only this client transaction sends it; it frees the bytes once it cannot resend.
            bytes: std::mem::take(&mut b.plan.bytes),
            base: is_invite.then(|| (b.plan.base.clone(), b.plan.via.clone())),
            proto: b.plan.proto,
            dst,
            tu: Some((self.me.clone(), idx)),
        };
        tracing::trace!(target_uri = %b.plan.target.uri, %dst, "branch started");
        b.client = client_tx::spawn(&self.core, spec);
        if b.client.is_none() {
            self.set_final(idx, Final::Local(500));
            return;
        }
        // 16.6 step 11: Timer C for an INVITE.
        if is_invite {
            b.timer_c = Some(Instant::now() + timer_c);
        }
    }

    /// 16.7: handle one response of a branch.
    async fn on_response(&mut self, idx: usize, msg: Message) {
        let Some(code) = msg.status() else { return };
        let Some(b) = self.branches.get_mut(idx) else { return };
        // A 2xx after this branch's final is a retransmission (or a second UAS, RFC 6026).
        let repeat = b.final_.is_some();
        if repeat && !(self.is_invite && (200..300).contains(&code)) {
            return;
        }
        if code < 200 {
            b.provisional = true;
            // 16.7 step 2: 101-199 restarts Timer C.
            if self.is_invite && code > 100 && b.timer_c.is_some() {
                b.timer_c = Some(Instant::now() + self.core.timers.c());
            }
            // 9.1: a CANCEL waiting for a provisional can go now.
            if b.cancel == CancelState::Wanted {
                self.send_cancel(idx);
            }
            // 16.7 step 5: 100 is never forwarded (nor given to hooks).
            if code == 100 {
                return;
            }
        }
        if let Some(hook) = self.on_reply.clone().filter(|_| !repeat) {
            self.core.router.on_reply(self.tx.clone(), hook, msg.clone()).await;
        }
        if code < 200 {
            self.forward(&msg, code);
            return;
        }
        let b = &mut self.branches[idx];
        b.timer_c = None;
        b.cancel_deadline = None;
        if (200..300).contains(&code) {
            // 16.7 step 5: every 2xx goes upstream at once (also after another 2xx).
            let first = b.final_.is_none();
            if first {
                b.final_ = Some(Final::Received(msg.clone()));
            }
            self.tx.tu().closed = true;
            self.forward(&msg, code);
            // 16.7 step 10: a 2xx to an INVITE cancels the other pending branches.
            if first && self.is_invite {
                self.cancel_pending();
            }
            return;
        }
        b.final_ = Some(Final::Received(msg));
        if code >= 600 {
            // 16.7 step 5: a 6xx cancels the pending branches; no new branches.
            self.tx.tu().closed = true;
            self.cancel_pending();
        }
    }

    /// Timer C, CANCEL deadlines and the end of a wait for new branches.
    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.wait_until.is_some_and(|t| t <= now) {
            // OpenSIPS: the phony branch's FR timer fires; it counts as a 408.
            self.end_wait();
            self.wait_timed_out = true;
        }
        for idx in 0..self.branches.len() {
            let b = &mut self.branches[idx];
            if b.timer_c.is_some_and(|t| t <= now) {
                b.timer_c = None;
                // 16.8: with a provisional, CANCEL the branch; without, it is a 408.
                if b.provisional {
                    self.send_cancel(idx);
                } else {
                    if let Some(c) = &b.client {
                        c.abandon();
                    }
                    self.set_final(idx, Final::Local(408));
                }
                continue;
            }
            if b.cancel_deadline.is_some_and(|t| t <= now) {
                // 9.1: no final within 64*T1 of the CANCEL: give the branch up.
                b.cancel_deadline = None;
                if let Some(c) = &b.client {
                    c.abandon();
                }
                self.set_final(idx, Final::Local(408));
            }
        }
    }

    fn set_final(&mut self, idx: usize, f: Final) {
        if let Some(b) = self.branches.get_mut(idx)
            && b.final_.is_none()
        {
            b.final_ = Some(f);
            b.timer_c = None;
            b.cancel_deadline = None;
        }
    }

    /// 16.10: CANCEL every branch still waiting for a final (INVITE only; 9.1 says a
    /// non-INVITE should not be cancelled).
    fn cancel_pending(&mut self) {
        if !self.is_invite {
            return;
        }
        for idx in 0..self.branches.len() {
            let b = &mut self.branches[idx];
            if b.final_.is_some() || b.cancel != CancelState::None {
                continue;
            }
            if b.client.is_none() {
                // Not sent yet (resolving): nothing to cancel.
                self.set_final(idx, Final::Local(487));
            } else if b.provisional {
                self.send_cancel(idx);
            } else {
                b.cancel = CancelState::Wanted;
            }
        }
    }

    /// 9.1: a CANCEL with the INVITE's Request-URI, Call-ID, From, To, CSeq number, Route
    /// and top Via, as its own non-INVITE client transaction nobody listens to.
    fn send_cancel(&mut self, idx: usize) {
        let t1x64 = self.core.timers.t1x64();
        let b = &mut self.branches[idx];
        let Some(dst) = b.dst else { return };
        if b.cancel == CancelState::Sent {
            return;
        }
        b.cancel = CancelState::Sent;
        b.cancel_deadline = Some(Instant::now() + t1x64);
        b.timer_c = None;
        let spec = ClientSpec {
            key: ClientKey { branch: b.plan.branch.clone().into_boxed_str(), method: Method::Cancel },
            bytes: if b.elsewhere {
                build::cancel_with_reason(&b.plan.base, &b.plan.via, CALL_COMPLETED_ELSEWHERE)
            } else {
                build::cancel(&b.plan.base, &b.plan.via)
            },
            base: None,
            proto: b.plan.proto,
            dst,
            tu: None,
        };
        client_tx::spawn(&self.core, spec);
    }

    /// Forwards a branch response upstream with our Via popped (16.7 step 9).
    fn forward(&self, msg: &Message, code: u16) {
        let mut edits = Edits::default();
        edits.pop_first_value(HeaderName::Via);
        self.tx.forward_response(code, sip::serialize(msg, &edits));
    }

    /// After every event: cancel branches if the request was answered or CANCELled;
    /// when every branch is over, run the failure hook or send the best response.
    async fn after_event(&mut self) {
        let (final_sent, cancelled, closed, stages_requested) = {
            let tu = self.tx.tu();
            (tu.final_sent, tu.cancelled, tu.closed, tu.stages_requested)
        };
        if final_sent || cancelled || closed {
            self.end_wait();
        }
        if final_sent || cancelled {
            self.cancel_pending();
        }
        if final_sent || stages_requested != self.stages_started || self.wait_until.is_some() {
            return;
        }
        if self.branches.iter().any(|b| b.final_.is_none()) {
            return;
        }
        // The phony branch, when it timed out, is the last "branch" (index branches.len()).
        let mut codes: Vec<u16> = self.branches.iter().map(|b| b.final_.as_ref().map_or(500, Final::code)).collect();
        if self.wait_timed_out {
            codes.push(408);
        }
        let best = choose_best(&codes);
        if cancelled {
            // 16.10: a CANCELled INVITE is answered 487 (downstream's own 487 if it sent one).
            match best.filter(|&i| codes[i] == 487) {
                Some(i) => self.send_best(i),
                None => {
                    let _ = self.tx.reply(487, "Request Terminated", &[], None);
                }
            }
            return;
        }
        if let Some(hook) = self.on_failure.take() {
            let best_msg = match best {
                Some(i) => match self.branches.get(i).and_then(|b| b.final_.as_ref()) {
                    Some(Final::Received(m)) => Some(m.clone()),
                    _ => self.local_message(codes[i]),
                },
                None => self.local_message(408),
            };
            if let Some(m) = best_msg {
                self.core.router.on_failure(self.tx.clone(), hook, m).await;
                let tu = self.tx.tu();
                // The route replied, or relayed again (its branches are queued for us).
                if tu.final_sent || tu.stages_requested != self.stages_started {
                    return;
                }
            }
        }
        match best {
            Some(i) => self.send_best(i),
            // 16.7 step 6: no final response at all: 408.
            None => {
                let _ = self.tx.reply(408, "Request Timeout", &[], None);
            }
        }
    }

    /// Sends the chosen best response: 503 becomes 500; 401/407 carry every branch's
    /// WWW-/Proxy-Authenticate (16.7 step 6); synthesised finals are generated locally.
    fn send_best(&self, i: usize) {
        let Some(b) = self.branches.get(i) else {
            // The timed-out phony branch of a wait for new branches.
            let _ = self.tx.reply(408, "Request Timeout", &[], None);
            return;
        };
        let Some(f) = &b.final_ else { return };
        let msg = match f {
            Final::Local(c) => {
                let c = upstream_code(*c);
                let _ = self.tx.reply(c, sip::reason_phrase(c), &[], None);
                return;
            }
            Final::Received(m) => m,
        };
        let code = msg.status().unwrap_or(500);
        if upstream_code(code) != code {
            let c = upstream_code(code);
            let _ = self.tx.reply(c, sip::reason_phrase(c), &[], None);
            return;
        }
        let mut edits = Edits::default();
        edits.pop_first_value(HeaderName::Via);
        if code == 401 || code == 407 {
            for (j, b) in self.branches.iter().enumerate() {
                let Some(Final::Received(other)) = &b.final_ else { continue };
                if j == i || !matches!(other.status(), Some(401 | 407)) {
                    continue;
                }
                for h in other.headers() {
                    if h.raw_name.eq_ignore_ascii_case("WWW-Authenticate")
                        || h.raw_name.eq_ignore_ascii_case("Proxy-Authenticate")
                    {
                        edits.append(h.raw_name, h.value.trim().to_owned());
                    }
                }
            }
        }
        self.tx.forward_response(code, sip::serialize(msg, &edits));
    }

    /// Can branches still start (no final upstream, not CANCELled, no 2xx/6xx)?
    fn open(&self) -> bool {
        let tu = self.tx.tu();
        !(tu.final_sent || tu.cancelled || tu.closed)
    }

    /// The phony branch ends (without a response of its own unless it timed out).
    fn end_wait(&mut self) {
        if self.wait_until.take().is_some() {
            self.tx.tu().wait = None;
        }
    }

    /// A locally generated response as a message (for the failure hook).
    fn local_message(&self, code: u16) -> Option<Message> {
        let code = upstream_code(code);
        let tag = self.tx.inner.to_tag();
        Message::parse(sip::response(self.tx.request(), code, sip::reason_phrase(code), Some(tag), &[], None)).ok()
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
