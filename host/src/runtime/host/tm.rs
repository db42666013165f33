//! `sipbox:route/tm`: answering and forwarding the request. The transaction
//! machinery itself is the host's (`crate::transaction`); this file turns the
//! route's choices into a `Forward` for it.

use std::sync::Arc;

use crate::runtime::bindings::tm;
use crate::runtime::host::message::check_sip_uri;
use crate::runtime::state::HostState;
use crate::sip::{HeaderName, Uri};
use crate::transaction::Forward;

impl tm::Host for HostState {
    fn reply(&mut self, code: u16, reason: String) -> wasmtime::Result<Result<(), String>> {
        let tx = self.tx()?;
        if !(100..=699).contains(&code) {
            return Ok(Err(format!("status code {code} is outside 100..=699")));
        }
        if reason.contains(['\r', '\n', '\0']) {
            return Ok(Err("reason phrase contains CR, LF or NUL".into()));
        }
        Ok(tx.reply(code, &reason, &[], None).map_err(|e| e.to_string()))
    }

    fn record_route(&mut self) -> wasmtime::Result<()> {
        self.tx()?;
        self.record_route = true;
        Ok(())
    }

    fn loose_route(&mut self) -> wasmtime::Result<bool> {
        // RFC 3261 16.4: a Route set means the next hop is already decided
        // upstream; when its top entry is us (our Record-Route coming back),
        // it is consumed here.
        let tx = self.tx()?;
        let routes = match tx.request().routes() {
            Ok(routes) => routes,
            Err(_) => return Ok(false),
        };
        let Some(top) = routes.first() else { return Ok(false) };
        if tx.is_local_uri(top.uri) {
            self.edits.pop_first_value(HeaderName::Route);
        }
        Ok(true)
    }

    fn append_branch(&mut self, uri: String) -> wasmtime::Result<Result<(), String>> {
        self.tx()?;
        Ok(check_sip_uri(&uri).map(|()| self.branches.push(uri)))
    }

    fn relay(&mut self) -> wasmtime::Result<Result<(), String>> {
        let tx = self.tx()?.clone();
        let ruri = self.edits.request_uri(tx.request()).to_string();
        if let Err(e) = Uri::parse(&ruri) {
            return Ok(Err(format!("cannot relay to Request-URI {ruri:?}: {e}")));
        }
        let mut targets = Vec::with_capacity(1 + self.branches.len());
        targets.push(ruri);
        targets.append(&mut self.branches);
        let forward = Forward {
            edits: self.edits.clone(),
            targets,
            record_route: self.record_route,
            on_reply: self.on_reply.clone(),
            on_failure: self.on_failure.clone(),
        };
        let result = tx.relay(forward).map_err(|e| e.to_string());
        if result.is_ok() {
            self.relayed = true;
        }
        Ok(result)
    }

    fn on_reply(&mut self, route: String) -> wasmtime::Result<()> {
        self.on_reply = Some(Arc::from(route));
        Ok(())
    }

    fn on_failure(&mut self, route: String) -> wasmtime::Result<()> {
        self.on_failure = Some(Arc::from(route));
        Ok(())
    }

    fn current_tid(&mut self) -> wasmtime::Result<u64> {
        Ok(self.tx()?.id())
    }

    fn is_myself(&mut self, uri: String) -> wasmtime::Result<bool> {
        Ok(self.tx()?.is_local_uri(&uri))
    }
}
