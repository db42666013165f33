//! The TCP transport's read-side loop (`drain` in host/src/transport/tcp.rs), restated over
//! the public `sip` API so the `framing` target can feed one byte stream in arbitrary pieces
//! and compare the messages with whole-buffer framing. Keep it in step with tcp.rs: skip
//! keep-alive CRLFs (a CRLFCRLF ping asks for a pong), cut with `frame_len`, parse each frame,
//! close the stream on a framing error or an oversized partial message.

use bytes::{Buf, Bytes, BytesMut};

use crate::sip::{self, Message, ParseError};

/// What the transport does with the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A framed message that parsed (handed to the core).
    Message(Bytes),
    /// A framed message that did not parse (answered with a 400 when possible).
    Malformed(Bytes, ParseError),
    /// Framing lost: the buffered bytes go to the malformed handler, the connection closes.
    Close(Bytes, ParseError),
    /// The partial message exceeds the size limit: the connection closes.
    TooLarge,
}

/// One connection's read buffer.
#[derive(Default)]
pub struct Framer {
    buf: BytesMut,
    closed: bool,
    /// Number of reads that answered a keep-alive ping.
    pub pongs: usize,
}

impl Framer {
    /// Whether the connection was closed (nothing more is read).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Bytes buffered and not framed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// One read of `data`: appends it and frames every complete message, as tcp.rs does.
    pub fn read(&mut self, data: &[u8], out: &mut Vec<Event>) {
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(data);
        loop {
            let k = sip::skip_keepalive(&self.buf);
            if k > 0 {
                if k >= 4 && self.buf.get(..4) == Some(b"\r\n\r\n".as_slice()) {
                    self.pongs += 1;
                }
                self.buf.advance(k);
            }
            if self.buf.is_empty() {
                return;
            }
            match sip::frame_len(&self.buf) {
                Ok(Some(n)) if n > 0 && n <= self.buf.len() => {
                    let raw = self.buf.split_to(n).freeze();
                    match Message::parse(raw.clone()) {
                        Ok(_) => out.push(Event::Message(raw)),
                        Err(e) => out.push(Event::Malformed(raw, e)),
                    }
                }
                Ok(Some(_)) | Ok(None) => {
                    if self.buf.len() > sip::MAX_MESSAGE_SIZE {
                        self.closed = true;
                        out.push(Event::TooLarge);
                    }
                    return;
                }
                Err(e) => {
                    self.closed = true;
                    out.push(Event::Close(self.buf.split().freeze(), e));
                    return;
                }
            }
        }
    }
}
