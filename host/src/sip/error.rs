//! [`ParseError`]: why a message, header value or URI was rejected.

use super::MAX_MESSAGE_SIZE;

/// Why a message (or one header value) could not be parsed. Each variant names what is wrong,
/// so the text can go into a `400` reason or a log line as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is larger than [`MAX_MESSAGE_SIZE`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit")]
    TooLarge(usize),
    /// Nothing but (optional) CRLF keep-alives.
    #[error("empty message")]
    Empty,
    /// The start line or a header is not UTF-8.
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    /// A NUL byte (outside a quoted-pair) or a bare CR in the header section.
    #[error("forbidden control character in header section")]
    ControlChar,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// The SIP version is not SIP/2.0.
    #[error("unsupported SIP version (SIP/2.0 expected)")]
    Version,
    /// The request method is not a token.
    #[error("malformed method")]
    Method,
    /// The status code is not three digits in 100..=699.
    #[error("status code not in 100..=699")]
    Status,
    /// The Request-URI is malformed.
    #[error("malformed Request-URI: {0}")]
    RequestUri(&'static str),
    /// No empty line ends the header section.
    #[error("header section not terminated by an empty line")]
    Unterminated,
    /// A header line is not `token ":" value`.
    #[error("malformed header line: {0}")]
    HeaderLine(&'static str),
    /// A mandatory header is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A header that may appear once appears several times.
    #[error("more than one {0} header")]
    Duplicate(&'static str),
    /// A header value is malformed.
    #[error("bad {header}: {reason}")]
    BadHeader {
        /// Canonical name of the header.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CSeq method differs from the request method (RFC 3261 section 8.1.1.5).
    #[error("CSeq method {cseq:?} does not match request method {method:?}")]
    CSeqMismatch {
        /// Method in the CSeq header.
        cseq: String,
        /// Method of the Request-Line.
        method: String,
    },
    /// Content-Length announces more bytes than the message holds (RFC 3261 section 18.3).
    #[error("Content-Length {declared} exceeds the {available} body bytes received")]
    BodyTruncated {
        /// Declared Content-Length.
        declared: usize,
        /// Bytes present after the header section.
        available: usize,
    },
    /// A URI is malformed.
    #[error("malformed URI: {0}")]
    Uri(&'static str),
}

impl ParseError {
    /// Shorthand for [`ParseError::BadHeader`].
    pub(crate) fn bad(header: &'static str, reason: &'static str) -> ParseError {
        ParseError::BadHeader { header, reason }
    }
}
