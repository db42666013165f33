//! The typed views [`Message::parse`](super::Message::parse) has already
//! validated (top Via, From, To, CSeq), kept as byte ranges into each
//! header's value.
//!
//! A proxy reads these headers many times per message (transaction key,
//! reply destination, dialog identifiers, the route's getters). Parsing them
//! once and rebuilding the borrowed view from ranges makes those reads
//! allocation- and scan-free; `vias()`, `contacts()` and the other lists are
//! still parsed on demand.

use super::Method;
use super::message::Span;
use super::typed::{CSeq, NameAddr, Via};

/// A [`Via`] as ranges into the Via header's value.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ViaSpans {
    transport: Span,
    host: Span,
    port: Option<u16>,
    branch: Option<Span>,
    received: Option<Span>,
    rport: Option<Option<u16>>,
    params: Span,
}

/// A [`NameAddr`] as ranges into its header's value.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NameAddrSpans {
    display: Option<Span>,
    uri: Span,
    params: Span,
}

/// The parsed mandatory headers of one message.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) top_via: ViaSpans,
    pub(crate) from: NameAddrSpans,
    pub(crate) to: NameAddrSpans,
    pub(crate) cseq_seq: u32,
    pub(crate) cseq_method: Span,
}

/// The range `part` occupies in `base`. Every view is parsed from `base`'s
/// own text, so the pointer arithmetic stays in bounds; anything else maps
/// to an empty range rather than a panic.
pub(crate) fn span_of(base: &str, part: &str) -> Span {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => Span::new((start, end)),
        _ => Span::default(),
    }
}

fn text(base: &str, span: Span) -> &str {
    base.get(span.range()).unwrap_or("")
}

impl ViaSpans {
    pub(crate) fn of(base: &str, via: &Via<'_>) -> ViaSpans {
        ViaSpans {
            transport: span_of(base, via.transport),
            host: span_of(base, via.host),
            port: via.port,
            branch: via.branch.map(|b| span_of(base, b)),
            received: via.received.map(|r| span_of(base, r)),
            rport: via.rport,
            params: span_of(base, via.params),
        }
    }

    pub(crate) fn view<'a>(&self, base: &'a str) -> Via<'a> {
        Via {
            transport: text(base, self.transport),
            host: text(base, self.host),
            port: self.port,
            branch: self.branch.map(|b| text(base, b)),
            received: self.received.map(|r| text(base, r)),
            rport: self.rport,
            params: text(base, self.params),
        }
    }
}

impl NameAddrSpans {
    pub(crate) fn of(base: &str, na: &NameAddr<'_>) -> NameAddrSpans {
        NameAddrSpans {
            display: na.display.map(|d| span_of(base, d)),
            uri: span_of(base, na.uri),
            params: span_of(base, na.params),
        }
    }

    pub(crate) fn view<'a>(&self, base: &'a str) -> NameAddr<'a> {
        NameAddr {
            display: self.display.map(|d| text(base, d)),
            uri: text(base, self.uri),
            params: text(base, self.params),
        }
    }
}

impl Parsed {
    pub(crate) fn cseq<'a>(&self, base: &'a str) -> CSeq<'a> {
        let method_str = text(base, self.cseq_method);
        CSeq { seq: self.cseq_seq, method: Method::from_token(method_str), method_str }
    }
}
