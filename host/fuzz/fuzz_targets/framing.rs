//! Fuzzes TCP stream framing. The input is one byte stream (after a one-byte seed): fed to
//! the transport's read loop (`sipbox_fuzz::stream`, a restatement of tcp.rs) whole, one
//! byte at a time, and in seeded random pieces, it must give the same messages, the same
//! malformed frames and the same close (on a close, the bytes handed over may be a prefix:
//! how much had arrived depends on the reads). Every frame is checked too: it frames as exactly
//! itself, a parsed frame's body is its Content-Length, and its serialisation frames as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbox_fuzz::sip::{Bytes, Edits, HeaderName, Message, frame_len, serialize};
use sipbox_fuzz::stream::{Event, Framer};

/// Runs `stream` through a framer in pieces of the given lengths (the last takes the rest).
fn feed(stream: &[u8], mut sizes: impl FnMut() -> usize) -> (Vec<Event>, Vec<u8>, bool) {
    let (mut f, mut out, mut at) = (Framer::default(), Vec::new(), 0);
    while at < stream.len() && !f.closed() {
        let n = sizes().clamp(1, stream.len() - at);
        f.read(&stream[at..at + n], &mut out);
        at += n;
    }
    (out, f.pending().to_vec(), f.closed())
}

/// Same events, except that on a framing error the connection hands over what it had
/// buffered, which depends on how much of the stream had arrived: a prefix of the bytes the
/// whole-buffer run hands over, at least up to the end of the head.
fn same(split: &(Vec<Event>, Vec<u8>, bool), whole: &(Vec<Event>, Vec<u8>, bool), how: &str) {
    assert_eq!((split.0.len(), &split.1, split.2), (whole.0.len(), &whole.1, whole.2), "{how} differs: {split:?}");
    for (a, b) in split.0.iter().zip(&whole.0) {
        match (a, b) {
            (Event::Close(x, e), Event::Close(y, f)) => {
                assert_eq!(e, f, "{how}: different framing error");
                assert!(y.starts_with(x), "{how}: closed with other bytes");
            }
            _ => assert_eq!(a, b, "{how} differs from whole-buffer framing"),
        }
    }
}

fn check_frame(raw: &[u8]) {
    // A frame is cut where frame_len says, so framing it again gives all of it.
    assert_eq!(frame_len(raw), Ok(Some(raw.len())), "frame does not re-frame as itself");
    let Ok(m) = Message::parse(Bytes::copy_from_slice(raw)) else { return };
    if let Ok(Some(cl)) = m.content_length() {
        assert_eq!(m.body().len(), cl);
    }
    let mut edits = Edits::default();
    edits.set(HeaderName::MaxForwards, "1");
    for out in [serialize(&m, &Edits::default()), serialize(&m, &edits)] {
        assert_eq!(frame_len(&out), Ok(Some(out.len())), "serialised message does not frame as itself");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let whole = feed(stream, || usize::MAX);
    for e in &whole.0 {
        match e {
            Event::Message(raw) => check_frame(raw),
            Event::Malformed(raw, _) => check_frame(raw),
            Event::Close(..) | Event::TooLarge => {}
        }
    }
    if stream.len() <= 700 {
        let bytewise = feed(stream, || 1);
        same(&bytewise, &whole, "byte-at-a-time framing");
    }
    // Seeded piece sizes: mostly small, sometimes large, so splits land anywhere.
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let pieces = feed(stream, || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 4 == 0 { (x >> 8) as usize % 512 } else { (x >> 8) as usize % 16 }
    });
    same(&pieces, &whole, "framing in pieces");
});
