//! `sipbox:route/location`: the registrar (`save`) and the location service
//! (`lookup`) as a route sees them. Bindings live in `crate::location`.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::component::{HasData, Linker};

use crate::location::{Binding, Location};
use crate::runtime::bindings::location::{self, LocationError};
use crate::runtime::bindings::types::Contact;
use crate::runtime::replay::{Import, Journal, Journaled};
use crate::runtime::state::{HostState, need_tx};
use crate::sip::{Edits, Method};
use crate::transaction::{ServerTx, Target, TmError};
use crate::transport::NextHop;

/// What `location` reaches for one call ([`HostState::location`]): besides
/// the location service, the request's targets, which `lookup` sets.
pub(crate) struct LocationView<'a> {
    pub(crate) tx: Option<&'a ServerTx>,
    pub(crate) journal: Option<&'a mut Journal>,
    pub(crate) edits: &'a mut Edits,
    pub(crate) ruri_next_hop: &'a mut Option<NextHop>,
    pub(crate) branches: &'a mut Vec<Target>,
    pub(crate) location: &'a Location,
}

impl<'a> LocationView<'a> {
    fn tx(&self) -> wasmtime::Result<&'a ServerTx> {
        need_tx(self.tx)
    }
}

impl Journaled for LocationView<'_> {
    fn journal(&mut self) -> Option<&mut Journal> {
        self.journal.as_deref_mut()
    }
}

struct HasLocation;

impl HasData for HasLocation {
    type Data<'a> = LocationView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    location::add_to_linker::<HostState, HasLocation>(linker, HostState::location)
}

/// How long a REGISTER's 200 may wait for its commit: far above a healthy
/// fsync (milliseconds), below a phone's retransmission give-up (32 s).
const DURABLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn contact(binding: &Binding, now: u64) -> Contact {
    Contact {
        uri: binding.contact.clone(),
        q: binding.q,
        expires: binding.expires_at.saturating_sub(now).min(u32::MAX as u64) as u32,
        received: binding.received.as_ref().map(NextHop::to_string),
    }
}

impl location::Host for LocationView<'_> {
    async fn save(&mut self) -> wasmtime::Result<Result<u16, LocationError>> {
        // As `once`, around an await.
        if self.journal.is_none() {
            return self.save_live().await;
        }
        let args = crate::runtime::replay::fingerprint(());
        if let Some(recorded) = self.replayed(Import::LocationSave, args) {
            return recorded;
        }
        let result = self.save_live().await?;
        self.record(Import::LocationSave, args, result.clone());
        Ok(result)
    }

    fn lookup(&mut self) -> wasmtime::Result<u32> {
        let tx = self.tx()?;
        let ruri = self.edits.request_uri(tx.request()).to_string();
        let found: Vec<Target> = self.once(Import::LocationLookup, &ruri, |state| {
            let bindings = state.location.lookup(&ruri).into_iter();
            Ok(bindings.map(|b| Target { uri: b.contact, next_hop: b.received }).collect())
        })?;
        // Each contact is sent where its REGISTER came from when that differs
        // from the Contact (NAT), as OpenSIPS does with `received`. Applied on
        // replay too: the branches are the invocation's own state.
        let count = found.len() as u32;
        let mut contacts = found.into_iter();
        if let Some(Target { uri: best, next_hop }) = contacts.next() {
            self.edits.set_request_uri(best);
            *self.ruri_next_hop = next_hop;
            // Within `[server] max_branches` (a lookup called in a loop adds
            // nothing past it); the relay would refuse more anyway.
            let room = tx.branch_limit().saturating_sub(tx.branches_started() + 1 + self.branches.len());
            self.branches.extend(contacts.take(room));
        }
        Ok(count)
    }

    fn lookup_aor(&mut self, aor: String) -> wasmtime::Result<Vec<Contact>> {
        self.once(Import::LocationLookupAor, &aor, |state| {
            let now = now_unix();
            Ok(state.location.lookup(&aor).iter().map(|b| contact(b, now)).collect())
        })
    }

    fn unregister(&mut self, aor: String, contact_uri: Option<String>) -> wasmtime::Result<u32> {
        self.once(Import::LocationUnregister, (&aor, &contact_uri), |state| {
            Ok(state.location.unregister(&aor, contact_uri.as_deref()) as u32)
        })
    }
}

impl LocationView<'_> {
    /// `save`: stores the REGISTER's bindings and answers it once they are
    /// durable (a 500 when the database does not commit in time: the phone
    /// retries; the binding serves meanwhile).
    async fn save_live(&mut self) -> wasmtime::Result<Result<u16, LocationError>> {
        let tx = self.tx()?;
        let req = tx.request();
        if req.method() != Some(&Method::Register) {
            return Ok(Err(LocationError::NotRegister));
        }
        let (proto, src) = tx.source();
        let mut outcome = self.location.save(req, src, proto);
        if outcome.code == 200
            && let Err(err) = self.location.durable(DURABLE_WITHIN).await
        {
            tracing::error!(error = %format!("{err:#}"), "REGISTER answered 500: its bindings are not durable");
            outcome = crate::location::RegisterOutcome {
                code: 500,
                reason: "Registration Not Stored".into(),
                headers: vec![("Retry-After".into(), "5".into())],
            };
        }
        let headers: Vec<(&str, &str)> = outcome.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        Ok(tx.reply(outcome.code, &outcome.reason, &headers, None).map(|()| outcome.code).map_err(|e| match e {
            TmError::AlreadyAnswered | TmError::Completed => LocationError::AlreadyAnswered,
            // The registrar's own codes are valid and a REGISTER is not forwarded:
            // what is left is the transport.
            other => LocationError::Transport(other.to_string()),
        }))
    }
}
