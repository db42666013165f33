//! `sipbox:route/message`: the guest's view of the request under routing and
//! of a branch's reply. Reads see the message as received (with the route's
//! own Request-URI change); writes go to the invocation's edit list.

use std::net::SocketAddr;

use wasmtime::component::{HasData, Linker, Resource};

use crate::runtime::Services;
use crate::runtime::bindings::message::{self, HostReply, HostRequest, MessageError};
use crate::runtime::bindings::types::Peer;
use crate::runtime::budget::Budget;
use crate::runtime::state::{HostState, need_tx};
use crate::sip::{self, Edits, HeaderName, Message};
use crate::transaction::ServerTx;
use crate::transport::{NextHop, Proto};

/// The `request` resource: the invocation's request, kept in its state.
pub struct RequestHandle;
/// The `reply` resource: the invocation's reply, kept in [`MessageState`].
pub struct ReplyHandle;

/// Handle reps the host passes to the guest (the data is in the state).
pub(crate) const REQUEST_REP: u32 = 0;
pub(crate) const REPLY_REP: u32 = 1;

/// The invocation's messages beyond the request itself: the route's edits to
/// the request (which `tm` and `location` make too, and `tm.relay` applies),
/// and the reply given to `on-reply` / `on-failure`.
#[derive(Default)]
pub(crate) struct MessageState {
    /// Edits the route made to the request, applied when it is relayed.
    pub(crate) edits: Edits,
    /// The reply given to `on-reply` / `on-failure` (boxed: most invocations
    /// have none, and every instance's state holds room for it).
    pub(crate) reply: Option<Box<sip::Message>>,
    /// Where that reply came from, when known (boxed for the same reason,
    /// and so that this slice packs without the padding an unboxed address
    /// brings: `HostState` stays as small as it was in one struct).
    pub(crate) reply_source: Option<Box<(Proto, SocketAddr)>>,
}

impl MessageState {
    pub(crate) fn end(&mut self) {
        self.edits = Edits::default();
        self.reply = None;
        self.reply_source = None;
    }
}

/// What `message` reaches for one call ([`HostState::message`]).
pub(crate) struct MessageView<'a> {
    pub(crate) tx: Option<&'a ServerTx>,
    pub(crate) message: &'a mut MessageState,
    /// Cleared by `set-ruri`: a lookup's next hop was for the old Request-URI.
    pub(crate) ruri_next_hop: &'a mut Option<NextHop>,
    /// `[limits] max_edit_bytes` left: edits are held by the host.
    pub(crate) budget: &'a mut Budget,
    pub(crate) services: &'a Services,
}

/// What one queued edit is charged against `max_edit_bytes`: its bytes, and
/// at least this many, so that many tiny edits (each a list entry the next
/// one is compared with) are bounded too.
const MIN_EDIT_COST: usize = 32;

/// An edit's charge: its name and value, at least [`MIN_EDIT_COST`].
pub(crate) fn edit_cost(name: &str, value: &str) -> usize {
    (name.len() + value.len()).max(MIN_EDIT_COST)
}

impl<'a> MessageView<'a> {
    fn tx(&self) -> wasmtime::Result<&'a ServerTx> {
        need_tx(self.tx)
    }

    fn reply_msg(&self) -> wasmtime::Result<&Message> {
        self.message.reply.as_deref().ok_or_else(|| wasmtime::format_err!("no reply in this invocation"))
    }
}

struct HasMessage;

impl HasData for HasMessage {
    type Data<'a> = MessageView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    message::add_to_linker::<HostState, HasMessage>(linker, HostState::message)
}

impl message::Host for MessageView<'_> {}

fn peer(proto: Proto, addr: std::net::SocketAddr) -> Peer {
    Peer { transport: proto.to_string(), ip: addr.ip().to_string(), port: addr.port() }
}

fn first_value(msg: &Message, name: &str) -> Option<String> {
    msg.values_by_name(name).first().map(|v| v.to_string())
}

fn all_values(msg: &Message, name: &str) -> Vec<String> {
    msg.values_by_name(name).iter().map(|v| v.to_string()).collect()
}

/// Headers whose value the transport and transaction layers compute; a route
/// changing them would break framing or response routing.
/// Headers a route may not add or remove: the host writes Via and
/// Content-Length, and From, To, Call-ID and CSeq identify the request and
/// its dialog (a second one, or none, makes a message every next hop and
/// this host's own parser refuse).
fn host_owned(name: &str) -> bool {
    matches!(
        HeaderName::from_name(name),
        HeaderName::Via
            | HeaderName::ContentLength
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq
    )
}

/// A header line is safe to add: a token name and a value that cannot start a
/// new line.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), MessageError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(MessageError::BadHeader(format!("invalid header name {name:?}")));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(MessageError::BadHeader(format!("header {name} value contains CR, LF or NUL")));
    }
    if host_owned(name) {
        return Err(MessageError::HostOwnedHeader(name.to_owned()));
    }
    Ok(())
}

/// Checks `uri` is a SIP or SIPS URI the proxy can route to.
pub(crate) fn check_sip_uri(uri: &str) -> Result<(), String> {
    let parsed = sip::Uri::parse(uri).map_err(|e| format!("invalid URI {uri:?}: {e}"))?;
    if !parsed.scheme.eq_ignore_ascii_case("sip") && !parsed.scheme.eq_ignore_ascii_case("sips") {
        return Err(format!("unsupported URI scheme {:?} (sip or sips expected)", parsed.scheme));
    }
    if uri.contains(['\r', '\n', '\0', ' ']) {
        return Err(format!("invalid URI {uri:?}"));
    }
    Ok(())
}

impl HostRequest for MessageView<'_> {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        let msg = self.tx()?.request();
        Ok(msg.method().map(|m| m.as_str().to_string()).unwrap_or_default())
    }

    fn ruri(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        let msg = self.tx()?.request();
        Ok(self.message.edits.request_uri(msg).to_string())
    }

    fn set_ruri(&mut self, _: Resource<RequestHandle>, uri: String) -> wasmtime::Result<Result<(), MessageError>> {
        self.tx()?;
        // Replaced, not queued: only its own length is bounded.
        if !self.budget.fits_one(uri.len(), &self.services.limit_stats) {
            let shown: String = uri.chars().take(64).collect();
            return Ok(Err(MessageError::BadUri(format!(
                "{shown}...: {} bytes, more than [limits] max_edit_bytes",
                uri.len()
            ))));
        }
        Ok(check_sip_uri(&uri)
            .map(|()| {
                *self.ruri_next_hop = None;
                self.message.edits.set_request_uri(uri)
            })
            .map_err(MessageError::BadUri))
    }

    fn header(&mut self, _: Resource<RequestHandle>, name: String) -> wasmtime::Result<Option<String>> {
        Ok(first_value(self.tx()?.request(), &name))
    }

    fn headers(&mut self, _: Resource<RequestHandle>, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(all_values(self.tx()?.request(), &name))
    }

    fn add_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), MessageError>> {
        self.tx()?;
        if let Err(e) = check_header(&name, &value) {
            return Ok(Err(e));
        }
        if !self.budget.edit(edit_cost(&name, &value), &self.services.limit_stats) {
            return Ok(Err(MessageError::BadHeader(format!(
                "{}: the route's edits of this request reached [limits] max_edit_bytes",
                name.chars().take(64).collect::<String>()
            ))));
        }
        self.message.edits.append(&name, value);
        Ok(Ok(()))
    }

    fn remove_header(&mut self, _: Resource<RequestHandle>, name: String) -> wasmtime::Result<u32> {
        let received = self.tx()?.request().count_by_name(&name);
        if host_owned(&name) {
            return Ok(0);
        }
        // A removal is queued too (by name); past the budget, the name's
        // lines stay (the count says none were removed).
        if !self.budget.edit(edit_cost(&name, ""), &self.services.limit_stats) {
            return Ok(0);
        }
        // Lines of the received message plus lines the route itself added.
        Ok((received + self.message.edits.remove_all_by_name(&name)) as u32)
    }

    fn body(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.tx()?.request().body().to_vec())
    }

    fn source(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Peer> {
        let (proto, addr) = self.tx()?.source();
        Ok(peer(proto, addr))
    }

    fn call_id(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.tx()?.request().call_id().map(str::to_string).unwrap_or_default())
    }

    fn from_uri(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.tx()?.request().from().map(|f| f.uri.to_string()).unwrap_or_default())
    }

    fn from_tag(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.tx()?.request().from().ok().and_then(|f| f.tag().map(str::to_string)))
    }

    fn to_uri(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.tx()?.request().to().map(|t| t.uri.to_string()).unwrap_or_default())
    }

    fn to_tag(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.tx()?.request().to().ok().and_then(|t| t.tag().map(str::to_string)))
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // Only borrows are ever handed out; nothing to free.
        Ok(())
    }
}

impl HostReply for MessageView<'_> {
    fn status(&mut self, _: Resource<ReplyHandle>) -> wasmtime::Result<u16> {
        Ok(self.reply_msg()?.status().unwrap_or(0))
    }

    fn reason(&mut self, _: Resource<ReplyHandle>) -> wasmtime::Result<String> {
        Ok(self.reply_msg()?.reason().unwrap_or_default().to_string())
    }

    fn header(&mut self, _: Resource<ReplyHandle>, name: String) -> wasmtime::Result<Option<String>> {
        Ok(first_value(self.reply_msg()?, &name))
    }

    fn headers(&mut self, _: Resource<ReplyHandle>, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(all_values(self.reply_msg()?, &name))
    }

    fn source(&mut self, _: Resource<ReplyHandle>) -> wasmtime::Result<Peer> {
        self.reply_msg()?;
        Ok(self.message.reply_source.as_deref().map(|&(proto, addr)| peer(proto, addr)).unwrap_or(Peer {
            transport: String::new(),
            ip: String::new(),
            port: 0,
        }))
    }

    fn drop(&mut self, _: Resource<ReplyHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route cannot add a second From (or take the CSeq away): the relayed
    /// message would be one the next hop and this host refuse.
    #[test]
    fn identity_headers_are_the_hosts() {
        for name in ["Via", "v", "Content-Length", "l", "From", "f", "To", "t", "Call-ID", "i", "CSeq"] {
            assert!(matches!(check_header(name, "x"), Err(MessageError::HostOwnedHeader(n)) if n == name), "{name}");
        }
        assert!(check_header("X-Account", "42").is_ok());
        assert!(matches!(check_header("Bad Name", "x"), Err(MessageError::BadHeader(_))));
        assert!(matches!(check_header("X-Ok", "a\r\nVia: evil"), Err(MessageError::BadHeader(_))));
    }
}
