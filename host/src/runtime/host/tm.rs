//! `sipbox:route/tm`: answering and forwarding the request. The transaction
//! machinery itself is the host's (`crate::transaction`); this file turns the
//! route's choices into a `Forward` for it.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::events::Event;
use crate::runtime::Services;
use crate::runtime::bindings::tm::{self, BranchSource, InjectFlags, TmError as WitTmError};
use crate::runtime::budget::Budget;
use crate::runtime::host::message::{check_header, check_sip_uri, edit_cost};
use crate::runtime::replay::{Import, Journal, Journaled};
use crate::runtime::state::{HostState, need_tx};
use crate::sip::{Edits, HeaderName, Uri};
use crate::transaction::{Forward, ServerTx, Target, TmError};
use crate::transport::NextHop;

/// How and where the next relay goes, as the route chose so far: its targets
/// beyond the Request-URI (which `location.lookup` sets too), Record-Route,
/// the hooks; and whether the request went on without the route.
#[derive(Default)]
pub(crate) struct TmState {
    /// Extra targets for the next relay (lookup, append-branch), each with
    /// the address to send it to when it is not the URI's own (NAT).
    pub(crate) branches: Vec<Target>,
    /// Where to send the Request-URI's branch instead of resolving it (set by
    /// `lookup` from a binding's `received`; cleared by `set-ruri`).
    pub(crate) ruri_next_hop: Option<NextHop>,
    record_route: bool,
    on_reply: Option<Arc<str>>,
    on_failure: Option<Arc<str>>,
    /// What `loose-route` returned, so a second call removes no more.
    loose_routed: Option<bool>,
    /// The route relayed the request at least once (or left it to injected
    /// branches): a failure later in the invocation does not answer it 500.
    pub(crate) relayed: bool,
}

impl TmState {
    pub(crate) fn end(&mut self) {
        self.branches.clear();
        self.ruri_next_hop = None;
        self.record_route = false;
        self.on_reply = None;
        self.on_failure = None;
        self.loose_routed = None;
        self.relayed = false;
    }
}

/// The WIT form of a transaction layer refusal.
pub(crate) fn to_wit(e: TmError) -> WitTmError {
    match e {
        TmError::AlreadyAnswered => WitTmError::AlreadyAnswered,
        TmError::Completed => WitTmError::Completed,
        TmError::TooManyHops => WitTmError::TooManyHops,
        TmError::BadTarget(why) => WitTmError::BadTarget(why),
        TmError::Transport(why) => WitTmError::Transport(why),
    }
}

/// What `tm` reaches for one call ([`HostState::tm`]).
pub(crate) struct TmView<'a> {
    pub(crate) tx: Option<&'a ServerTx>,
    pub(crate) journal: Option<&'a mut Journal>,
    /// The request's edits: a relay carries them, `loose-route` makes one.
    pub(crate) edits: &'a mut Edits,
    pub(crate) tm: &'a mut TmState,
    /// The event of an `on-notify` invocation, for `inject-branches(event-contact)`.
    pub(crate) event: Option<&'a Event>,
    /// `[limits] max_edit_bytes`, for a reply's headers.
    pub(crate) budget: &'a mut Budget,
    /// For the proxy core, to reach other transactions.
    pub(crate) services: &'a Services,
}

impl<'a> TmView<'a> {
    fn tx(&self) -> wasmtime::Result<&'a ServerTx> {
        need_tx(self.tx)
    }
}

impl Journaled for TmView<'_> {
    fn journal(&mut self) -> Option<&mut Journal> {
        self.journal.as_deref_mut()
    }
}

struct HasTm;

impl HasData for HasTm {
    type Data<'a> = TmView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    tm::add_to_linker::<HostState, HasTm>(linker, HostState::tm)
}

impl tm::Host for TmView<'_> {
    fn reply(&mut self, code: u16, reason: String) -> wasmtime::Result<Result<(), WitTmError>> {
        self.tx()?;
        if !(100..=699).contains(&code) {
            return Ok(Err(WitTmError::BadReply(format!("status code {code} is outside 100..=699"))));
        }
        if reason.contains(['\r', '\n', '\0']) {
            return Ok(Err(WitTmError::BadReply("reason phrase contains CR, LF or NUL".into())));
        }
        self.once(Import::TmReply, (code, &reason), |state| {
            Ok(state.tx()?.reply(code, &reason, &[], None).map_err(to_wit))
        })
    }

    fn reply_with_headers(
        &mut self,
        code: u16,
        reason: String,
        headers: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), WitTmError>> {
        self.tx()?;
        if !(100..=699).contains(&code) {
            return Ok(Err(WitTmError::BadReply(format!("status code {code} is outside 100..=699"))));
        }
        if reason.contains(['\r', '\n', '\0']) {
            return Ok(Err(WitTmError::BadReply("reason phrase contains CR, LF or NUL".into())));
        }
        if let Some(why) = headers.iter().find_map(|(name, value)| bad_reply_header(name, value)) {
            return Ok(Err(WitTmError::BadReply(why)));
        }
        let bytes: usize = headers.iter().map(|(name, value)| edit_cost(name, value)).sum();
        if !self.budget.fits_one(bytes, &self.services.limit_stats) {
            return Ok(Err(WitTmError::BadReply(format!(
                "{} headers of {bytes} bytes: more than [limits] max_edit_bytes",
                headers.len()
            ))));
        }
        self.once(Import::TmReplyWithHeaders, (code, &reason, &headers), |state| {
            let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            Ok(state.tx()?.reply(code, &reason, &extra, None).map_err(to_wit))
        })
    }

    fn record_route(&mut self) -> wasmtime::Result<()> {
        self.tx()?;
        self.tm.record_route = true;
        Ok(())
    }

    fn loose_route(&mut self) -> wasmtime::Result<bool> {
        // RFC 3261 16.4: a Route set means the next hop is already decided
        // upstream; when its top entry is us (our Record-Route coming back),
        // it is consumed here.
        // A top Route naming another host is the sender's choice of next
        // hop, not a route set through us: following it would relay for
        // anyone (the route decides; see the WIT).
        let tx = self.tx()?;
        if let Some(done) = self.tm.loose_routed {
            return Ok(done);
        }
        let ours = match tx.request().routes() {
            Ok(routes) => routes.first().is_some_and(|top| tx.is_local_uri(top.uri)),
            Err(_) => false,
        };
        if ours {
            self.edits.pop_first_value(HeaderName::Route);
        }
        self.tm.loose_routed = Some(ours);
        Ok(ours)
    }

    fn append_branch(&mut self, uri: String) -> wasmtime::Result<Result<(), WitTmError>> {
        let tx = self.tx()?;
        if let Err(why) = check_sip_uri(&uri) {
            return Ok(Err(WitTmError::BadTarget(why)));
        }
        // The next relay's targets (the Request-URI, those appended, this
        // one) beside the branches forked already: refused now, while the
        // route can still choose, not at the relay.
        if let Err(e) = tx.branch_room(2 + self.tm.branches.len()) {
            return Ok(Err(to_wit(e)));
        }
        self.tm.branches.push(Target::uri(uri));
        Ok(Ok(()))
    }

    fn relay(&mut self) -> wasmtime::Result<Result<(), WitTmError>> {
        self.tx()?;
        // Run on replay too: it consumes the branches, as the first run did.
        let forward = match self.forward(true)? {
            Ok(forward) => forward,
            Err(e) => return Ok(Err(e)),
        };
        let result = self.once(Import::TmRelay, (), |state| Ok(state.tx()?.relay(forward).map_err(to_wit)))?;
        if result.is_ok() {
            self.tm.relayed = true;
        }
        Ok(result)
    }

    fn on_reply(&mut self, route: String) -> wasmtime::Result<()> {
        self.tm.on_reply = Some(Arc::from(route));
        Ok(())
    }

    fn on_failure(&mut self, route: String) -> wasmtime::Result<()> {
        self.tm.on_failure = Some(Arc::from(route));
        Ok(())
    }

    fn current_tid(&mut self) -> wasmtime::Result<u64> {
        Ok(self.tx()?.id())
    }

    fn is_myself(&mut self, uri: String) -> wasmtime::Result<bool> {
        Ok(self.tx()?.is_local_uri(&uri))
    }

    fn newtran(&mut self) -> wasmtime::Result<u64> {
        Ok(self.tx()?.id())
    }

    fn wait_for_new_branches(&mut self, expected: Option<u32>) -> wasmtime::Result<Result<(), WitTmError>> {
        self.tx()?;
        // The template later injections copy: the route's edits, Record-Route
        // and hooks as they are now, without targets.
        let template = match self.forward(false)? {
            Ok(forward) => forward,
            Err(e) => return Ok(Err(e)),
        };
        let result = self.once(Import::TmWaitForNewBranches, expected, |state| {
            Ok(state.tx()?.wait_for_new_branches(template, expected).map_err(to_wit))
        })?;
        if result.is_ok() {
            // The transaction now lives on without the route: do not answer
            // it 500 if this invocation fails later.
            self.tm.relayed = true;
        }
        Ok(result)
    }

    fn wait_no_more_branches(&mut self, tid: u64) -> wasmtime::Result<Result<bool, WitTmError>> {
        self.once(Import::TmWaitNoMoreBranches, tid, |state| Ok(state.find_tx(tid).map(|tx| tx.stop_waiting())))
    }

    fn inject_branches(
        &mut self,
        tid: u64,
        source: BranchSource,
        flags: InjectFlags,
    ) -> wasmtime::Result<Result<u32, WitTmError>> {
        self.once(Import::TmInjectBranches, tid, |state| Ok(state.inject(tid, source, flags)))
    }
}

impl TmView<'_> {
    fn inject(&mut self, tid: u64, source: BranchSource, flags: InjectFlags) -> Result<u32, WitTmError> {
        let targets = match source {
            BranchSource::Uris(uris) => {
                if let Some(bad) = uris.iter().find_map(|u| check_sip_uri(u).err()) {
                    return Err(WitTmError::BadTarget(bad));
                }
                uris.into_iter().map(Target::uri).collect()
            }
            BranchSource::EventContact => vec![self.event_contact().map_err(WitTmError::BadTarget)?],
        };
        let tx = self.find_tx(tid)?;
        let cancel = flags.contains(InjectFlags::CANCEL_EXISTING);
        tx.inject(targets, cancel).map_err(to_wit)
    }

    /// A live transaction by id (this invocation's or another's).
    fn find_tx(&self, tid: u64) -> Result<ServerTx, WitTmError> {
        self.services.transactions.find(tid).ok_or(WitTmError::TransactionGone)
    }

    /// The Forward for the request as the route shaped it; with `targets`,
    /// the Request-URI and the branches (which are consumed). The outer
    /// error traps (no request in this invocation), the inner one is the
    /// route's (an unusable Request-URI).
    fn forward(&mut self, targets: bool) -> wasmtime::Result<Result<Forward, WitTmError>> {
        let tx = self.tx()?;
        let mut forward = Forward {
            edits: self.edits.clone(),
            record_route: self.tm.record_route,
            on_reply: self.tm.on_reply.clone(),
            on_failure: self.tm.on_failure.clone(),
            ..Forward::default()
        };
        if targets {
            let ruri = self.edits.request_uri(tx.request()).to_string();
            if let Err(e) = Uri::parse(&ruri) {
                return Ok(Err(WitTmError::BadTarget(format!("cannot relay to Request-URI {ruri:?}: {e}"))));
            }
            forward.targets.reserve(1 + self.tm.branches.len());
            forward.targets.push(Target { uri: ruri, next_hop: self.tm.ruri_next_hop.clone() });
            forward.targets.append(&mut self.tm.branches);
        }
        Ok(Ok(forward))
    }

    /// The contact an `E_UL_CONTACT_*` event announces: its `uri`, sent to
    /// its `received` address when there is one (as OpenSIPS writes it,
    /// "sip:IP:PORT[;transport=tcp]", or "udp:IP:PORT"). A `received` that
    /// is no next hop fails here, as a bad target of the injection.
    fn event_contact(&self) -> Result<Target, String> {
        let event = self.event.ok_or("no event in this invocation (use it from on-notify)")?;
        let text = |name: &str| match event.param(name) {
            Some(crate::events::Value::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let uri = text("uri").ok_or_else(|| format!("event {} has no uri parameter", event.name))?;
        check_sip_uri(&uri)?;
        let next_hop = match event.param("received") {
            Some(crate::events::Value::Str(s)) if !s.is_empty() => {
                Some(s.parse::<NextHop>().map_err(|e| format!("event {} has a bad received {s:?}: {e}", event.name))?)
            }
            _ => None,
        };
        Ok(Target { uri, next_hop })
    }
}

/// Why a header may not go into a route's reply: the rules of a header a
/// route adds to a request (`message.add-header`), as the response is built
/// with the same host-owned ones (RFC 3261 8.2.6.2 copies them from the request).
fn bad_reply_header(name: &str, value: &str) -> Option<String> {
    use crate::runtime::bindings::message::MessageError;
    match check_header(name, value) {
        Ok(()) => None,
        Err(MessageError::BadHeader(why)) => Some(why),
        Err(MessageError::HostOwnedHeader(name)) => Some(format!("{name} is written by the host")),
        Err(MessageError::BadUri(why)) => Some(why),
    }
}
