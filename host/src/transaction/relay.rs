//! [`ServerTx::relay`]: builds one forwarded copy of the request per target (RFC 3261
//! section 16.6) and hands them to the response context, which starts the client
//! transactions; an ACK (to a 2xx) is forwarded statelessly.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::fork::{self, ProxyEvent};
use super::inbox::Inbox;
use super::key::MAGIC_COOKIE;
use super::server_tx::{ServerTx, TuState};
use super::{Forward, TmError, build};
use crate::sip::{self, Edits, HeaderName, Message, Method, Uri};
use crate::transport::Proto;

/// Events queued per response context.
const PROXY_INBOX_LEN: usize = 64;

/// One branch ready to send.
pub(crate) struct BranchPlan {
    /// The Request-URI of this branch.
    pub(crate) target: String,
    /// The whole request as sent (our Via on top).
    pub(crate) bytes: Bytes,
    /// The same request without our Via, for building its CANCEL and ACK.
    pub(crate) base: Message,
    /// Our Via header value.
    pub(crate) via: String,
    /// Our branch parameter.
    pub(crate) branch: String,
    /// The explicit next hop it was planned with (`Forward::next_hops`), as given.
    pub(crate) next_hop: Option<String>,
    /// Next hop transport, host (IP literal or name) and port.
    pub(crate) proto: Proto,
    pub(crate) host: String,
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
        let hash = core.loop_hash(req);
        let rr = fwd.record_route.then(|| self.record_route_value());
        let hop = |k: usize| fwd.next_hops.get(k).and_then(|h| h.as_deref());

        if req.method() == Some(&Method::Ack) || !self.has_transaction() {
            // 16.11-style stateless forward; the branch is deterministic so a retransmitted
            // ACK gets the same one, and distinct from the INVITE's.
            let branch = format!("{MAGIC_COOKIE}{hash}.a");
            let plan = plan_branch(self, &fwd.edits, &fwd.targets[0], hop(0), mf, rr.as_deref(), branch)?;
            core.send_to_host(plan.proto, plan.host, plan.port, plan.bytes);
            return Ok(());
        }

        let first = {
            let mut tu = self.tu();
            check_open(&tu)?;
            let first = tu.next_branch;
            tu.next_branch += fwd.targets.len();
            first
        };
        let plans = fwd
            .targets
            .iter()
            .enumerate()
            .map(|(k, t)| {
                plan_branch(
                    self,
                    &fwd.edits,
                    t,
                    hop(k),
                    mf,
                    rr.as_deref(),
                    format!("{MAGIC_COOKIE}{hash}.{}", first + k),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Commit: re-check under the lock the CANCEL path also takes, so a CANCEL either
        // sees the response context or makes this relay fail.
        let sender = {
            let mut tu = self.tu();
            check_open(&tu)?;
            tu.stages_requested += 1;
            tu.forked.extend(plans.iter().map(|p| (p.target.clone(), p.next_hop.clone())));
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
pub(crate) fn check_open(tu: &TuState) -> Result<(), TmError> {
    if tu.final_sent {
        return Err(TmError::AlreadyAnswered);
    }
    if tu.cancelled || tu.closed {
        return Err(TmError::Completed);
    }
    Ok(())
}

/// Builds one branch: Request-URI, Max-Forwards, Record-Route, our Via (16.6 steps 2-8).
/// The next hop is `next_hop` when given, else the top Route of the forwarded request, else
/// its Request-URI (step 7, loose routing); a `transport=tcp` parameter selects TCP.
pub(crate) fn plan_branch(
    tx: &ServerTx,
    edits: &Edits,
    target: &str,
    next_hop: Option<&str>,
    max_forwards: u32,
    record_route: Option<&str>,
    branch: String,
) -> Result<BranchPlan, TmError> {
    let target = build::strip_brackets(target);
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
        parse_next_hop(h)?
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
        (proto, hop.host.to_owned(), hop.port.unwrap_or(5060))
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
    let next_hop = next_hop.map(str::to_owned);
    Ok(BranchPlan { target: target.to_owned(), bytes, base, via, branch, next_hop, proto, host, port })
}

/// Parses an explicit next hop: `udp:HOST[:PORT]`, `tcp:HOST[:PORT]`, `sip:HOST[:PORT]` (with
/// an optional `;transport=tcp`, as OpenSIPS writes `received`), or a bare `HOST[:PORT]`
/// (UDP). HOST is an IP literal (IPv6 in brackets when a port follows) or a name; the port
/// defaults to 5060.
pub(crate) fn parse_next_hop(hop: &str) -> Result<(Proto, String, u16), TmError> {
    let bad = |why: &str| TmError::BadTarget(format!("next hop {hop:?}: {why}"));
    let hop_t = hop.trim();
    let lower = hop_t.get(..4).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("sip:") {
        let uri = Uri::parse(hop_t).map_err(|e| bad(&e.to_string()))?;
        let proto = match uri.param("transport") {
            Some(Some(t)) => Proto::from_name(t).ok_or_else(|| bad("unsupported transport"))?,
            _ => Proto::Udp,
        };
        return Ok((proto, uri.host.to_owned(), uri.port.unwrap_or(5060)));
    }
    let (proto, rest) = match lower.as_deref() {
        Some("udp:") => (Proto::Udp, &hop_t[4..]),
        Some("tcp:") => (Proto::Tcp, &hop_t[4..]),
        _ => (Proto::Udp, hop_t),
    };
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    let port_of = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad("bad port"));
    // "[v6]" or "[v6]:port"; a bare "v6" (several colons) has no port.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after {
            "" => 5060,
            p => port_of(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?)?,
        };
        (format!("[{addr}]"), port)
    } else if rest.matches(':').count() > 1 {
        (rest.to_owned(), 5060)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), port_of(p)?),
            None => (rest.to_owned(), 5060),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ';' || c == '@') {
        return Err(bad("bad host"));
    }
    Ok((proto, host, port))
}
