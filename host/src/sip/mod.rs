//! Zero-copy SIP messages: parsing, typed header views, edit-list serialisation,
//! locally generated responses and TCP framing.
//!
//! # Layout
//! - [`message`]: [`Message`], the validated index over one received message's bytes;
//! - [`header`]: header names (full and compact forms), [`Method`], comma/parameter splitting;
//! - [`typed`]: lazily parsed views that borrow the message ([`Via`], [`NameAddr`], [`Uri`], [`CSeq`]);
//! - `parsed`: the top Via, From, To and CSeq as ranges, parsed once by [`Message::parse`];
//! - [`edit`]: [`Edits`] and [`serialize`], the only way a forwarded message differs from the received one;
//! - [`response`]: [`response`], [`reply_to_malformed`], [`reason_phrase`];
//! - [`framing`]: [`frame_len`] and [`skip_keepalive`] for stream transports.
//!
//! # Design
//! A [`Message`] keeps the received [`Bytes`] and an index of ranges: the start-line
//! parts, one entry per header line (folded continuation lines belong to the line they
//! continue, RFC 3261 section 7.3.1) and the body. Nothing is copied at parse time;
//! typed views borrow the message: the four that validation parses anyway (top Via,
//! From, To, CSeq) are kept as ranges and rebuilt without scanning, the others are
//! parsed on each call. [`Message::parse`]
//! validates exactly what a proxy relies on (start line, the mandatory headers, CSeq,
//! Content-Length, Max-Forwards, the top Via, From and To) and accepts unknown headers
//! and methods. Header values are returned raw: a folded value still contains its
//! CRLF and leading whitespace, which every typed parser treats as whitespace.
//!
//! Forwarding copies the original bytes with the [`Edits`] applied, so headers
//! the proxy did not touch keep their order, case, compact names and whitespace
//! (RFC 3261 section 16.6).
//!
//! The header section (start line and headers) must be UTF-8 (RFC 3261 section 7.3.1,
//! TEXT-UTF8); the body is opaque bytes.

pub use bytes::Bytes;

mod edit;
mod error;
mod framing;
mod header;
mod message;
mod parsed;
mod response;
mod scan;
mod typed;

#[cfg(test)]
mod edit_props;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edit;
#[cfg(test)]
mod tests_props;
#[cfg(test)]
mod tests_torture;

pub use edit::{Edits, serialize};
pub use error::ParseError;
pub use framing::{frame_len, skip_keepalive};
pub use header::{Header, HeaderName, Method};
pub use message::Message;
pub use response::{reason_phrase, reply_to_malformed, response};
pub use typed::{CSeq, Contacts, NameAddr, Uri, Via};

/// Largest message accepted, in bytes (a UDP datagram's payload limit; the same cap bounds
/// a TCP message so one peer cannot make the framer buffer without limit).
pub const MAX_MESSAGE_SIZE: usize = 65_535;
