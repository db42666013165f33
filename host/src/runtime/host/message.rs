//! `sipbox:route/message`: the guest's view of the request under routing and
//! of a branch's reply. Reads see the message as received (with the route's
//! own Request-URI change); writes go to the invocation's edit list.

use wasmtime::component::Resource;

use crate::runtime::bindings::message::{self, HostReply, HostRequest};
use crate::runtime::bindings::types::Peer;
use crate::runtime::state::HostState;
use crate::sip::{self, HeaderName, Message};
use crate::transport::Proto;

/// The `request` resource: the invocation's request, kept in `HostState`.
pub struct RequestHandle;
/// The `reply` resource: the invocation's reply, kept in `HostState`.
pub struct ReplyHandle;

/// Handle reps the host passes to the guest (the data is in `HostState`).
pub(crate) const REQUEST_REP: u32 = 0;
pub(crate) const REPLY_REP: u32 = 1;

impl message::Host for HostState {}

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
fn host_owned(name: &str) -> bool {
    matches!(HeaderName::from_name(name), HeaderName::Via | HeaderName::ContentLength)
}

/// A header line is safe to add: a token name and a value that cannot start a
/// new line.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("invalid header name {name:?}"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("header {name} value contains CR, LF or NUL"));
    }
    if host_owned(name) {
        return Err(format!("header {name} is managed by the host"));
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

impl HostRequest for HostState {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        let msg = self.tx()?.request();
        Ok(msg.method().map(|m| m.as_str().to_string()).unwrap_or_default())
    }

    fn ruri(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        let msg = self.tx()?.request();
        Ok(self.edits.request_uri(msg).to_string())
    }

    fn set_ruri(&mut self, _: Resource<RequestHandle>, uri: String) -> wasmtime::Result<Result<(), String>> {
        self.tx()?;
        Ok(check_sip_uri(&uri).map(|()| {
            self.ruri_next_hop = None;
            self.edits.set_request_uri(uri)
        }))
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
    ) -> wasmtime::Result<Result<(), String>> {
        self.tx()?;
        Ok(check_header(&name, &value).map(|()| self.edits.append(&name, value)))
    }

    fn remove_header(&mut self, _: Resource<RequestHandle>, name: String) -> wasmtime::Result<u32> {
        let received = self.tx()?.request().count_by_name(&name);
        if host_owned(&name) {
            return Ok(0);
        }
        // Lines of the received message plus lines the route itself added.
        Ok((received + self.edits.remove_all_by_name(&name)) as u32)
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

impl HostState {
    fn reply_msg(&self) -> wasmtime::Result<&Message> {
        self.reply.as_deref().ok_or_else(|| wasmtime::format_err!("no reply in this invocation"))
    }
}

impl HostReply for HostState {
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
        Ok(self.reply_source.map(|(proto, addr)| peer(proto, addr)).unwrap_or(Peer {
            transport: String::new(),
            ip: String::new(),
            port: 0,
        }))
    }

    fn drop(&mut self, _: Resource<ReplyHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
