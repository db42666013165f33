//! [`ServerTx::relay`]: builds one forwarded copy of the request per target (RFC 3261
//! section 16.6) and hands them to the response context, which starts the client
//! transactions; an ACK (to a 2xx) is forwarded statelessly.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::fork::{self, ProxyEvent};
use super::inbox::Inbox;
use super::key::MAGIC_COOKIE;
use super::server_tx::{ServerTx, TuState};
use super::{Forward, Target, TmError, build};
use crate::sip::{self, Edits, HeaderName, Message, Method, Uri};
use crate::transport::{Host, NextHop, Proto};

/// Events queued per response context.
const PROXY_INBOX_LEN: usize = 64;

/// One branch ready to send.
pub(crate) struct BranchPlan {
    /// The Request-URI of this branch (without angle brackets) and the explicit next hop
    /// it was planned with, as recorded in `TuState::forked`.
    pub(crate) target: Target,
    /// The whole request as sent (our Via on top).
    pub(crate) bytes: Bytes,
    /// The same request without our Via, for building its CANCEL and ACK.
    pub(crate) base: Message,
    /// Our Via header value.
    pub(crate) via: String,
    /// Our branch parameter.
    pub(crate) branch: String,
    /// Where it goes: the explicit next hop, else the top Route or Request-URI; transport,
    /// host (IP literal or name, resolved by the sender) and port.
    pub(crate) proto: Proto,
    pub(crate) host: Host,
    pub(crate) port: u16,
}

impl ServerTx {
    /// Forwards the request (16.6). An ACK is forwarded statelessly to the first target;
    /// any other request gets one client transaction per target (parallel forking), and a
    /// call from `on_failure` starts a new serial stage. Fails when the request was answered
    /// ([`TmError::AlreadyAnswered`]), the transaction was CANCELled or ended by a 2xx/6xx
    /// ([`TmError::Completed`]), Max-Forwards is 0 ([`TmError::TooManyHops`], 483 sent),
    /// or a target is unusable ([`TmError::BadTarget`]; nothing is sent then).
    pub fn relay(&self, fwd: Forward) -> Result<(), TmError> {
        let mf = self.max_forwards()?;
        if fwd.targets.is_empty() {
            return Err(TmError::BadTarget("no target".into()));
        }
        let req = self.request();
        let core = &self.inner.core;
        // 16.6 step 8: the loop hash (16.3 step 4 finds it again), then what makes this
        // server transaction's branches its own (its top Via).
        let prefix = format!("{MAGIC_COOKIE}{}.{}", core.loop_hash(req), core.tx_salt(req));
        let rr = fwd.record_route.then(|| self.record_route_value());

        if req.method() == Some(&Method::Ack) || !self.has_transaction() {
            // 16.11-style stateless forward; the branch is deterministic so a retransmitted
            // ACK gets the same one, and distinct from the INVITE's.
            let branch = format!("{prefix}.a");
            let t = &fwd.targets[0];
            let plan = plan_branch(self, &fwd.edits, &t.uri, t.next_hop.as_ref(), mf, rr.as_deref(), branch)?;
            core.send_to_host(plan.proto, plan.host, plan.port, plan.bytes);
            return Ok(());
        }

        let first = {
            let mut tu = self.tu();
            check_open(&tu)?;
            self.check_branch_room(&tu, fwd.targets.len())?;
            let first = tu.next_branch;
            tu.next_branch += fwd.targets.len();
            first
        };
        let plans = usable_plans(fwd.targets.iter().enumerate().map(|(k, t)| {
            plan_branch(
                self,
                &fwd.edits,
                &t.uri,
                t.next_hop.as_ref(),
                mf,
                rr.as_deref(),
                format!("{prefix}.{}", first + k),
            )
        }))?;

        // Commit: re-check under the lock the CANCEL path also takes, so a CANCEL either
        // sees the response context or makes this relay fail.
        let sender = {
            let mut tu = self.tu();
            check_open(&tu)?;
            tu.stages_requested += 1;
            tu.forked.extend(plans.iter().map(|p| p.target.clone()));
            self.context_sender(&mut tu)
        };
        let Forward { edits, record_route, on_reply, on_failure, .. } = fwd;
        let ev = ProxyEvent::Branches {
            plans,
            on_reply: on_reply.clone(),
            on_failure: on_failure.clone(),
            cancel_existing: false,
            stop_waiting: false,
        };
        if let Err(e) = sender.push(ev) {
            self.tu().stages_requested -= 1;
            return Err(TmError::Transport(format!("response context busy: {e}")));
        }
        // Kept for branches injected later without a wait template.
        self.tu().last_relay =
            Some(Box::new(Forward { edits, record_route, on_reply, on_failure, ..Forward::default() }));
        Ok(())
    }

    /// 16.6 step 3: the Max-Forwards of forwarded copies: decremented, or 70 when absent
    /// (also replacing a malformed value, which cannot be decremented). At 0 the request is
    /// answered 483 (an ACK is not answered) and [`TmError::TooManyHops`] returned.
    pub(crate) fn max_forwards(&self) -> Result<u32, TmError> {
        let req = self.request();
        match req.max_forwards() {
            Ok(Some(0)) => {
                if req.method() != Some(&Method::Ack) {
                    let _ = self.reply(483, "Too Many Hops", &[], None);
                }
                Err(TmError::TooManyHops)
            }
            Ok(Some(n)) => Ok(n - 1),
            Ok(None) | Err(_) => Ok(70),
        }
    }

    /// The response context's inbox, spawning the context on first use.
    pub(crate) fn context_sender(&self, tu: &mut TuState) -> Arc<Inbox<ProxyEvent>> {
        match &tu.proxy {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(Inbox::new(PROXY_INBOX_LEN));
                tu.proxy = Some(s.clone());
                fork::spawn(self.clone(), s.clone());
                s
            }
        }
    }

    pub(crate) fn has_transaction(&self) -> bool {
        self.inner.has_tx()
    }
}

/// New branches are possible: no final response sent, not CANCELled, not ended by a 2xx/6xx.
impl ServerTx {
    /// Most branches this transaction may fork (`[server] max_branches`).
    pub fn branch_limit(&self) -> usize {
        self.inner.core.max_branches.load(Ordering::Relaxed)
    }

    /// Branches this transaction has forked so far, every stage and injection.
    pub fn branches_started(&self) -> usize {
        self.tu().next_branch
    }

    /// As [`check_branch_room`](Self::check_branch_room), for a route about to add a target.
    pub fn branch_room(&self, more: usize) -> Result<(), TmError> {
        let tu = self.tu();
        self.check_branch_room(&tu, more)
    }

    /// Whether `more` branches fit under [`branch_limit`](Self::branch_limit); the refusal
    /// says how many there are and is counted (`tm:branches_refused`).
    pub(crate) fn check_branch_room(&self, tu: &TuState, more: usize) -> Result<(), TmError> {
        let limit = self.branch_limit();
        if tu.next_branch + more <= limit {
            return Ok(());
        }
        self.inner.core.branches_refused.fetch_add(1, Ordering::Relaxed);
        Err(TmError::BadTarget(format!(
            "{more} more branches would pass the limit of {limit} per transaction ([server] max_branches; {} forked)",
            tu.next_branch
        )))
    }
}

pub(crate) fn check_open(tu: &TuState) -> Result<(), TmError> {
    if tu.final_sent {
        return Err(TmError::AlreadyAnswered);
    }
    if tu.cancelled || tu.closed {
        return Err(TmError::Completed);
    }
    Ok(())
}

/// The branches that could be built; an unusable target (a contact a phone registered with
/// a scheme or transport this proxy cannot reach) is left out, logged, and the others go on.
/// All unusable: the first one's error, and nothing is sent.
pub(crate) fn usable_plans(
    plans: impl Iterator<Item = Result<BranchPlan, TmError>>,
) -> Result<Vec<BranchPlan>, TmError> {
    let mut usable = Vec::new();
    let mut first_err = None;
    for plan in plans {
        match plan {
            Ok(p) => usable.push(p),
            Err(e) => {
                tracing::debug!(error = %e, "unusable branch left out");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if usable.is_empty() => Err(e),
        _ => Ok(usable),
    }
}

/// A target without its URI headers (`?name=value`, RFC 3261 19.1.5): a registered contact
/// may carry them, but they are for building a request from the URI, which forking does
/// not do, and they have no place in a Request-URI (19.1.1 table).
fn without_uri_headers<'a>(target: &'a str, uri: &Uri<'_>) -> &'a str {
    if uri.headers.is_empty() {
        return target;
    }
    match target.rfind('?') {
        Some(i) => &target[..i],
        None => target,
    }
}

/// Builds one branch: Request-URI, Max-Forwards, Record-Route, our Via (16.6 steps 2-8).
/// The next hop is `next_hop` when given, else the top Route of the forwarded request, else
/// its Request-URI (step 7, loose routing); a `transport=tcp` parameter selects TCP.
pub(crate) fn plan_branch(
    tx: &ServerTx,
    edits: &Edits,
    target: &str,
    next_hop: Option<&NextHop>,
    max_forwards: u32,
    record_route: Option<&str>,
    branch: String,
) -> Result<BranchPlan, TmError> {
    let target = build::strip_brackets(target);
    let uri = Uri::parse(target).map_err(|e| TmError::BadTarget(format!("{target}: {e}")))?;
    let target = without_uri_headers(target, &uri);
    let uri = Uri::parse(target).map_err(|e| TmError::BadTarget(format!("{target}: {e}")))?;
    if !uri.scheme.eq_ignore_ascii_case("sip") {
        return Err(TmError::BadTarget(format!("{target}: only sip: URIs can be relayed (no TLS transport)")));
    }
    let mut e = edits.clone();
    e.set_request_uri(target);
    e.set(HeaderName::MaxForwards, max_forwards.to_string());
    if let Some(rr) = record_route {
        e.prepend("Record-Route", rr);
    }
    let base_bytes = sip::serialize(tx.request(), &e);
    let base = Message::parse(base_bytes.clone())
        .map_err(|err| TmError::BadTarget(format!("the forwarded request does not parse: {err}")))?;

    let (proto, host, port) = if let Some(h) = next_hop {
        (h.proto, h.host.clone(), h.port_or_default())
    } else {
        let routes = base.routes().map_err(|err| TmError::BadTarget(format!("Route: {err}")))?;
        let hop = match routes.first() {
            Some(r) => Uri::parse(r.uri).map_err(|err| TmError::BadTarget(format!("Route {}: {err}", r.uri)))?,
            None => uri,
        };
        let proto = match hop.param("transport") {
            Some(Some(t)) => {
                Proto::from_name(t).ok_or_else(|| TmError::BadTarget(format!("unsupported transport {t}")))?
            }
            _ => Proto::Udp,
        };
        (proto, Host::from_uri_host(hop.host), hop.port.unwrap_or(5060))
    };

    let (sent_host, sent_port) = tx.inner.core.transports.sent_by(proto);
    let via = format!("SIP/2.0/{} {sent_host}:{sent_port};branch={branch};rport", proto.via_name());
    // Our Via goes first (16.6 step 8): right after the request line.
    let bytes = match memchr::memmem::find(&base_bytes, b"\r\n") {
        Some(i) => {
            let mut b = BytesMut::with_capacity(base_bytes.len() + via.len() + 7);
            b.extend_from_slice(&base_bytes[..i + 2]);
            b.extend_from_slice(b"Via: ");
            b.extend_from_slice(via.as_bytes());
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(&base_bytes[i + 2..]);
            b.freeze()
        }
        None => return Err(TmError::BadTarget("the forwarded request has no request line".into())),
    };
    let target = Target { uri: target.to_owned(), next_hop: next_hop.cloned() };
    Ok(BranchPlan { target, bytes, base, via, branch, proto, host, port })
}
