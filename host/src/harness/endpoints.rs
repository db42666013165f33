//! The SIP user agents around the proxy: the callers that send the steps'
//! requests and the phones the proxy relays to. They are simple, correct
//! UAs (RFC 3261 8, 12, 17 as a UA needs them), not a model of the proxy:
//!
//! - a request the proxy relays to an address is answered by the phone
//!   there, as its behaviour script says for an INVITE ("ring 2s, answer";
//!   phones not in the scenario ring and answer), 200 for anything else,
//!   nothing at all when it is "silent"; a retransmission gets the last
//!   response again; a CANCEL gets 200 and its INVITE 487 if unanswered;
//! - a final response to a caller's INVITE is acknowledged: a non-2xx
//!   hop by hop (same branch), a 2xx end to end along its Record-Route,
//!   which also keeps the dialog for a later `hangup`.
//!
//! Everything goes through [`Endpoints::to_proxy`], which records it and
//! hands it to the core as the transports would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::script::{Action, Script};
use super::trace::{Direction, Recorder, WireMessage};
use crate::sip::{self, Method};
use crate::transport::memory::Sent;
use crate::transport::{Inbound, InboundHandler, Proto};

/// A phone of the scenario.
pub struct PhoneSpec {
    /// Its name.
    pub name: String,
    /// Its behaviour.
    pub script: Script,
}

/// The UAs of one scenario. Cheap to clone.
#[derive(Clone)]
pub struct Endpoints {
    inner: Arc<Inner>,
}

struct Inner {
    proxy: SocketAddr,
    handler: Arc<dyn InboundHandler>,
    recorder: Recorder,
    phones: HashMap<SocketAddr, PhoneSpec>,
    default_script: Script,
    state: Mutex<State>,
    /// Phone script tasks still running.
    running: AtomicUsize,
}

#[derive(Default)]
struct State {
    callers: HashMap<String, SocketAddr>,
    /// Requests received from the proxy, by (receiver, branch, method).
    received: HashMap<(SocketAddr, String, Method), Received>,
    /// Requests the callers sent, by (branch, method).
    sent: HashMap<(String, Method), SentRequest>,
    /// Named requests of the steps.
    named: HashMap<String, SentRequest>,
    /// Dialogs a named INVITE's 2xx established.
    dialogs: HashMap<String, Dialog>,
    next_tag: u64,
}

struct Received {
    request: sip::Message,
    last_response: Option<Bytes>,
    answered: bool,
    to_tag: String,
}

/// A request a caller sent.
#[derive(Clone)]
pub struct SentRequest {
    /// Its step's name.
    pub name: Option<String>,
    /// The request.
    pub msg: sip::Message,
    /// Where it was sent from.
    pub from: SocketAddr,
    /// `user:password` to answer a 401/407 with (the step's `credentials`).
    pub credentials: Option<(String, String)>,
    /// Challenges answered so far (one is answered; a second ends it).
    pub attempt: u32,
}

#[derive(Clone)]
struct Dialog {
    from: SocketAddr,
    request_uri: String,
    route: Vec<String>,
    from_header: String,
    to_header: String,
    call_id: String,
    cseq: u32,
}

impl Endpoints {
    /// UAs around a proxy at `proxy` whose inbound handler is `handler`.
    pub fn new(
        proxy: SocketAddr,
        handler: Arc<dyn InboundHandler>,
        recorder: Recorder,
        phones: HashMap<SocketAddr, PhoneSpec>,
    ) -> Endpoints {
        let default_script = Script::parse("ring, answer").unwrap_or_default();
        Endpoints {
            inner: Arc::new(Inner {
                proxy,
                handler,
                recorder,
                phones,
                default_script,
                state: Mutex::default(),
                running: AtomicUsize::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address a caller sends from: one per name, in order of first use.
    pub fn address_of(&self, caller: &str) -> SocketAddr {
        let mut state = self.state();
        let next = state.callers.len();
        *state.callers.entry(caller.to_owned()).or_insert_with(|| {
            let host = u8::try_from(10 + next % 240).unwrap_or(10);
            SocketAddr::from(([198, 51, 100, host], 5060))
        })
    }

    /// Phone script tasks still running.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// A request sent by a step (named or not).
    pub fn send_request(&self, name: Option<String>, msg: sip::Message, from: SocketAddr) {
        self.send_with(SentRequest { name, msg, from, credentials: None, attempt: 0 });
    }

    /// As [`send_request`](Self::send_request), with everything the caller knows.
    pub fn send_with(&self, sent: SentRequest) {
        let SentRequest { name, msg, from, .. } = sent.clone();
        if let (Some(branch), Some(method)) = (branch_of(&msg), msg.method().cloned()) {
            let mut state = self.state();
            state.sent.insert((branch, method), sent.clone());
            if let Some(name) = name {
                state.named.insert(name, sent);
            }
        }
        self.to_proxy(from, msg);
    }

    /// The request a step named `name`.
    pub fn named(&self, name: &str) -> Option<SentRequest> {
        self.state().named.get(name).cloned()
    }

    /// The caller CANCELs the named INVITE (RFC 3261 9.1).
    pub fn cancel(&self, name: &str) -> Result<(), String> {
        let invite = self.named(name).ok_or_else(|| format!("no request is named {name:?}"))?;
        let req = &invite.msg;
        if req.method() != Some(&Method::Invite) {
            return Err(format!("{name:?} is not an INVITE: only an INVITE can be cancelled"));
        }
        let mut text = format!("CANCEL {} SIP/2.0\r\n", req.request_uri().unwrap_or_default());
        for (header, value) in [("Via", req.values(sip::HeaderName::Via).first().copied())]
            .into_iter()
            .chain(copied(req, &["From", "To", "Call-ID"]))
        {
            if let Some(value) = value {
                text.push_str(&format!("{header}: {value}\r\n"));
            }
        }
        let seq = req.cseq().map(|c| c.seq).unwrap_or(1);
        text.push_str(&format!("CSeq: {seq} CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"));
        let cancel = sip::Message::parse(text.into()).map_err(|e| format!("building the CANCEL: {e}"))?;
        self.send_request(None, cancel, invite.from);
        Ok(())
    }

    /// The caller hangs up the call the named INVITE established.
    pub fn hangup(&self, name: &str) -> Result<(), String> {
        let dialog = {
            let mut state = self.state();
            let dialog = state.dialogs.get_mut(name).ok_or_else(|| format!("{name:?} established no call"))?;
            dialog.cseq += 1;
            dialog.clone()
        };
        let tag = self.tag();
        let bye = in_dialog("BYE", &dialog, &format!("z9hG4bK-bye{tag}"), dialog.cseq)?;
        self.in_dialog_to(&dialog, bye);
        Ok(())
    }

    /// An in-dialog request goes along the dialog's route set: through the
    /// proxy when it record-routed, else straight to the remote target,
    /// which the proxy never sees (RFC 3261 12.2.1.1).
    fn in_dialog_to(&self, dialog: &Dialog, msg: sip::Message) {
        if dialog.route.is_empty() {
            return;
        }
        self.send_request(None, msg, dialog.from);
    }

    fn tag(&self) -> u64 {
        let mut state = self.state();
        state.next_tag += 1;
        state.next_tag
    }

    /// Hands `msg` to the proxy as coming from `from`, recording it.
    pub fn to_proxy(&self, from: SocketAddr, msg: sip::Message) {
        let inner = &self.inner;
        let at = inner.recorder.now();
        let wire = WireMessage { at, direction: Direction::In, from, to: inner.proxy, msg: msg.clone() };
        inner.recorder.lock().wire.push(wire);
        inner.handler.on_message(Inbound { msg, src: from, proto: Proto::Udp, local: inner.proxy });
    }

    /// What the proxy sent: recorded, then answered by the UA at its destination.
    pub fn on_sent(&self, sent: Sent) {
        let recorder = &self.inner.recorder;
        let msg = match sip::Message::parse(sent.bytes.clone()) {
            Ok(msg) => msg,
            Err(e) => {
                recorder.problem(format!("the proxy sent {} a message that does not parse ({e})", sent.dst));
                return;
            }
        };
        let wire = WireMessage {
            at: recorder.now(),
            direction: Direction::Out,
            from: sent.src,
            to: sent.dst,
            msg: msg.clone(),
        };
        recorder.lock().wire.push(wire);
        if msg.is_request() {
            self.on_request(sent.dst, msg);
        } else {
            self.on_response(sent.dst, msg);
        }
    }

    fn on_request(&self, at: SocketAddr, req: sip::Message) {
        let (Some(branch), Some(method)) = (branch_of(&req), req.method().cloned()) else {
            self.inner.recorder.problem(format!("the proxy sent {at} a request without a Via branch"));
            return;
        };
        let silent = self.inner.phones.get(&at).is_some_and(|p| p.script.silent);
        if method == Method::Ack || silent {
            return;
        }
        let key = (at, branch.clone(), method.clone());
        let retransmitted = self.state().received.get(&key).map(|r| r.last_response.clone());
        if let Some(last) = retransmitted {
            if let Some(bytes) = last {
                self.respond_bytes(at, bytes);
            }
            return;
        }
        let to_tag = format!("p{}", self.tag());
        let received = Received { request: req.clone(), last_response: None, answered: false, to_tag };
        self.state().received.insert(key.clone(), received);
        match method {
            Method::Invite => self.run_script(key),
            Method::Cancel => {
                self.respond(&key, 200, "OK");
                let invite = (at, branch, Method::Invite);
                let unanswered = self.state().received.get(&invite).is_some_and(|r| !r.answered);
                if unanswered {
                    self.respond(&invite, 487, "Request Terminated");
                }
            }
            _ => self.respond(&key, 200, "OK"),
        }
    }

    fn run_script(&self, key: (SocketAddr, String, Method)) {
        let script = self.inner.phones.get(&key.0).map_or(&self.inner.default_script, |p| &p.script).clone();
        let endpoints = self.clone();
        self.inner.running.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            for action in script.actions {
                match action {
                    Action::Wait(d) => tokio::time::sleep(d).await,
                    Action::Reply { code, reason } => {
                        let answered = endpoints.state().received.get(&key).is_none_or(|r| r.answered);
                        if answered {
                            break;
                        }
                        endpoints.respond(&key, code, &reason);
                    }
                }
            }
            endpoints.inner.running.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// The phone at `key.0` answers the request `key` names.
    fn respond(&self, key: &(SocketAddr, String, Method), code: u16, reason: &str) {
        let bytes = {
            let mut state = self.state();
            let Some(received) = state.received.get_mut(key) else { return };
            let name = self.inner.phones.get(&key.0).map_or("device", |p| p.name.as_str());
            let contact = format!("<sip:{name}@{}>", key.0);
            let dialog = key.2 == Method::Invite && code > 100 && code < 300;
            let mut extra: Vec<(&str, &str)> = Vec::new();
            let record_routes = received.request.values(sip::HeaderName::RecordRoute);
            if dialog {
                extra.push(("Contact", &contact));
                extra.extend(record_routes.iter().map(|rr| ("Record-Route", *rr)));
            }
            let bytes = sip::response(&received.request, code, reason, Some(&received.to_tag), &extra, None);
            received.last_response = Some(bytes.clone());
            received.answered |= code >= 200;
            bytes
        };
        self.respond_bytes(key.0, bytes);
    }

    fn respond_bytes(&self, from: SocketAddr, bytes: Bytes) {
        match sip::Message::parse(bytes) {
            Ok(msg) => self.to_proxy(from, msg),
            Err(e) => self.inner.recorder.problem(format!("a phone's response does not parse: {e}")),
        }
    }

    fn on_response(&self, at: SocketAddr, resp: sip::Message) {
        let Some(code) = resp.status() else { return };
        let (Some(branch), Ok(cseq)) = (branch_of(&resp), resp.cseq()) else { return };
        if matches!(code, 401 | 407) {
            self.answer_challenge(&branch, &cseq.method, &resp);
        }
        if cseq.method != Method::Invite || code < 200 {
            return;
        }
        let Some(invite) = self.state().sent.get(&(branch.clone(), Method::Invite)).cloned() else {
            // A response for a request no caller here sent: nothing to acknowledge.
            return;
        };
        let result = if code < 300 { self.ack_2xx(&invite, &resp) } else { self.ack_non_2xx(&invite, &resp) };
        if let Err(e) = result {
            self.inner.recorder.problem(format!("{at} could not acknowledge a {code}: {e}"));
        }
    }

    /// A caller with credentials sends its challenged request again, once,
    /// answering the challenge; the new request takes over the step's name.
    fn answer_challenge(&self, branch: &str, method: &Method, resp: &sip::Message) {
        let Some(sent) = self.state().sent.get(&(branch.to_owned(), method.clone())).cloned() else { return };
        let Some((user, password)) = sent.credentials.clone() else { return };
        if sent.attempt > 0 {
            return;
        }
        match super::credentials::answer(&sent.msg, resp, &user, &password, sent.attempt + 1) {
            Ok(msg) => self.send_with(SentRequest { msg, attempt: sent.attempt + 1, ..sent }),
            Err(e) => self.inner.recorder.problem(format!("{} could not answer a challenge: {e}", sent.from)),
        }
    }

    /// RFC 3261 17.1.1.3: same branch, same Request-URI, the response's To.
    fn ack_non_2xx(&self, invite: &SentRequest, resp: &sip::Message) -> Result<(), String> {
        let req = &invite.msg;
        let mut text = format!("ACK {} SIP/2.0\r\n", req.request_uri().unwrap_or_default());
        let via = req.values(sip::HeaderName::Via).first().copied().unwrap_or_default();
        text.push_str(&format!("Via: {via}\r\n"));
        for (name, value) in copied(req, &["From", "Call-ID"]).into_iter().chain(copied(resp, &["To"])) {
            if let Some(value) = value {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        let seq = req.cseq().map(|c| c.seq).unwrap_or(1);
        text.push_str(&format!("CSeq: {seq} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"));
        let ack = sip::Message::parse(text.into()).map_err(|e| e.to_string())?;
        self.to_proxy(invite.from, ack);
        Ok(())
    }

    /// RFC 3261 13.2.2.4: a new transaction in the dialog the 2xx made.
    fn ack_2xx(&self, invite: &SentRequest, resp: &sip::Message) -> Result<(), String> {
        let req = &invite.msg;
        let contact = match resp.contacts() {
            Ok(sip::Contacts::List(list)) => list.first().map(|c| c.uri.to_owned()),
            _ => None,
        }
        .ok_or("the 2xx has no Contact")?;
        let mut route: Vec<String> = resp.values(sip::HeaderName::RecordRoute).iter().map(|s| s.to_string()).collect();
        route.reverse();
        let dialog = Dialog {
            from: invite.from,
            request_uri: contact,
            route,
            from_header: req.header(sip::HeaderName::From).unwrap_or_default().to_owned(),
            to_header: resp.header(sip::HeaderName::To).unwrap_or_default().to_owned(),
            call_id: req.call_id().unwrap_or_default().to_owned(),
            cseq: req.cseq().map(|c| c.seq).unwrap_or(1),
        };
        let tag = self.tag();
        let ack = in_dialog("ACK", &dialog, &format!("z9hG4bK-ack{tag}"), dialog.cseq)?;
        if let Some(name) = &invite.name {
            self.state().dialogs.insert(name.clone(), dialog.clone());
        }
        self.in_dialog_to(&dialog, ack);
        Ok(())
    }
}

/// A request in `dialog`, sent from the caller to the proxy.
fn in_dialog(method: &str, dialog: &Dialog, branch: &str, seq: u32) -> Result<sip::Message, String> {
    let mut text = format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
        dialog.request_uri, dialog.from
    );
    for r in &dialog.route {
        text.push_str(&format!("Route: {r}\r\n"));
    }
    text.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n",
        dialog.from_header, dialog.to_header, dialog.call_id
    ));
    sip::Message::parse(text.into()).map_err(|e| format!("building the {method}: {e}"))
}

fn branch_of(msg: &sip::Message) -> Option<String> {
    msg.top_via().ok().and_then(|v| v.branch.map(str::to_owned))
}

fn copied<'m>(msg: &'m sip::Message, names: &[&'static str]) -> Vec<(&'static str, Option<&'m str>)> {
    names.iter().map(|n| (*n, msg.header_by_name(n))).collect()
}
