//! The messages of one invocation: the request under routing and, in the
//! reply and failure hooks, a branch's reply.
//!
//! Both wrap a borrowed WIT resource handle: every accessor is one call into
//! the host, which owns the parsed message. Edits (`set_ruri`, headers) are
//! recorded by the host and applied when the request is relayed.

use crate::bindings::sipbox::route::message as raw;
use crate::{Error, Peer, Result};

/// A SIP request method. Methods are case-sensitive (RFC 3261 section 7.1):
/// "invite" is an extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// INVITE: starts a session.
    Invite,
    /// ACK: confirms a final response to an INVITE.
    Ack,
    /// BYE: ends a session.
    Bye,
    /// CANCEL: cancels a pending request.
    Cancel,
    /// REGISTER: binds an address-of-record to contacts.
    Register,
    /// OPTIONS: asks for capabilities (often a keep-alive ping).
    Options,
    /// Any other method, as sent ("SUBSCRIBE", "MESSAGE", ...). Later
    /// versions may give some of these their own variant: compare with
    /// [`Method::as_str`] to stay independent of that.
    Other(String),
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Other(m) => m,
        }
    }
}

impl From<&str> for Method {
    fn from(s: &str) -> Self {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl From<String> for Method {
    fn from(s: String) -> Self {
        match Method::from(s.as_str()) {
            // Reuse the allocation the host already made.
            Method::Other(_) => Method::Other(s),
            known => known,
        }
    }
}

impl PartialEq<str> for Method {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Method {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request under routing. Exactly one exists per invocation; the
/// [`Route`](crate::Route) functions receive it by reference.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    raw: &'a raw::Request,
}

impl<'a> Request<'a> {
    /// Wraps the raw resource handed to the generated `Guest` trait. Used by
    /// [`route!`](crate::route); not part of the stable API.
    #[doc(hidden)]
    pub fn __from_raw(raw: &'a raw::Request) -> Self {
        Request { raw }
    }

    /// The raw resource, for anything these wrappers do not cover.
    pub fn raw(&self) -> &'a raw::Request {
        self.raw
    }

    /// The method.
    pub fn method(&self) -> Method {
        Method::from(self.raw.method())
    }

    /// The current Request-URI (after any [`set_ruri`](Self::set_ruri)).
    pub fn ruri(&self) -> String {
        self.raw.ruri()
    }

    /// The user part of the Request-URI ("alice" in `sip:alice@example.com`),
    /// if it has one.
    pub fn ruri_user(&self) -> Option<String> {
        crate::uri::user(&self.ruri()).map(str::to_owned)
    }

    /// Replaces the Request-URI used by the next relay. Fails with
    /// [`MessageError::BadUri`](crate::MessageError::BadUri) if `uri` is not
    /// a SIP or SIPS URI.
    pub fn set_ruri(&self, uri: &str) -> Result<()> {
        self.raw.set_ruri(uri).map_err(Error::from)
    }

    /// The first value of a header by full or compact name, case-insensitively.
    /// For list headers (Via, Route, Contact, ...) this is the first
    /// comma-separated element.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.header(name)
    }

    /// Every value of a header in message order, list headers split at
    /// top-level commas.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.raw.headers(name)
    }

    /// Appends a header to the relayed request. Fails with
    /// [`MessageError::BadHeader`](crate::MessageError::BadHeader) on a name
    /// or value that would break the message, and
    /// [`MessageError::HostOwnedHeader`](crate::MessageError::HostOwnedHeader)
    /// for a header the host writes or that identifies the request (Via,
    /// Content-Length, From, To, Call-ID, CSeq).
    pub fn add_header(&self, name: &str, value: &str) -> Result<()> {
        self.raw.add_header(name, value).map_err(Error::from)
    }

    /// Removes every occurrence of a header from the relayed request and
    /// returns how many lines were removed (always 0 for Via and
    /// Content-Length, which belong to the host).
    pub fn remove_header(&self, name: &str) -> u32 {
        self.raw.remove_header(name)
    }

    /// The message body, unchanged.
    pub fn body(&self) -> Vec<u8> {
        self.raw.body()
    }

    /// Where the request came from.
    pub fn source(&self) -> Peer {
        self.raw.source()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> String {
        self.raw.call_id()
    }

    /// The From URI.
    pub fn from_uri(&self) -> String {
        self.raw.from_uri()
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<String> {
        self.raw.from_tag()
    }

    /// The To URI.
    pub fn to_uri(&self) -> String {
        self.raw.to_uri()
    }

    /// The To tag: present on in-dialog requests.
    pub fn to_tag(&self) -> Option<String> {
        self.raw.to_tag()
    }

    /// Whether the request belongs to an established dialog (its To header
    /// carries a tag, RFC 3261 section 12.2).
    pub fn is_in_dialog(&self) -> bool {
        self.to_tag().is_some()
    }
}

impl core::fmt::Debug for Request<'_> {
    // Printing fields would mean host calls: keep Debug free of side effects.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request").finish_non_exhaustive()
    }
}

/// A response received from a branch, given to the reply and failure hooks.
#[derive(Clone, Copy)]
pub struct Reply<'a> {
    raw: &'a raw::Reply,
}

impl<'a> Reply<'a> {
    /// Wraps the raw resource handed to the generated `Guest` trait. Used by
    /// [`route!`](crate::route); not part of the stable API.
    #[doc(hidden)]
    pub fn __from_raw(raw: &'a raw::Reply) -> Self {
        Reply { raw }
    }

    /// The raw resource, for anything these wrappers do not cover.
    pub fn raw(&self) -> &'a raw::Reply {
        self.raw
    }

    /// Status code, 100 ..= 699.
    pub fn status(&self) -> u16 {
        self.raw.status()
    }

    /// Reason phrase.
    pub fn reason(&self) -> String {
        self.raw.reason()
    }

    /// As [`Request::header`].
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.header(name)
    }

    /// As [`Request::headers`].
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.raw.headers(name)
    }

    /// Where the reply came from.
    pub fn source(&self) -> Peer {
        self.raw.source()
    }
}

impl core::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reply").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Method;

    #[test]
    fn known_methods_parse_to_their_variant_and_back() {
        for (text, method) in [
            ("INVITE", Method::Invite),
            ("ACK", Method::Ack),
            ("BYE", Method::Bye),
            ("CANCEL", Method::Cancel),
            ("REGISTER", Method::Register),
            ("OPTIONS", Method::Options),
        ] {
            assert_eq!(Method::from(text), method);
            assert_eq!(Method::from(text.to_owned()), method);
            assert_eq!(method.as_str(), text);
            assert_eq!(method.to_string(), text);
        }
    }

    #[test]
    fn methods_are_case_sensitive_and_extensions_are_kept_verbatim() {
        assert_eq!(Method::from("invite"), Method::Other("invite".into()));
        assert_eq!(Method::from("SUBSCRIBE".to_owned()), Method::Other("SUBSCRIBE".into()));
        assert_eq!(Method::from("SUBSCRIBE"), "SUBSCRIBE");
        assert!(Method::Invite != "invite");
    }
}
