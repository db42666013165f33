//! Fuzzes the SIP message layer: `Message::parse`, every typed view, `serialize` (which must
//! be a fixpoint of `parse`), `frame_len` and `reply_to_malformed`. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbox::sip::{Bytes, Edits, HeaderName, Message, frame_len, reply_to_malformed, serialize, skip_keepalive};

fuzz_target!(|data: &[u8]| {
    let skip = skip_keepalive(data);
    if let Ok(Some(n)) = frame_len(&data[skip..]) {
        assert!(n <= data.len() - skip);
    }
    let _ = reply_to_malformed(data, "fuzz");
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(data)) else { return };
    let _ = (msg.top_via(), msg.vias(), msg.from(), msg.to(), msg.call_id(), msg.cseq());
    let _ = (msg.contacts(), msg.routes(), msg.record_routes(), msg.max_forwards(), msg.expires());
    for h in msg.headers() {
        let _ = msg.values_by_name(h.raw_name);
    }
    let out = serialize(&msg, &Edits::default());
    let again = Message::parse(out.clone()).expect("serialised message must parse");
    assert_eq!(again.body(), msg.body());
    assert_eq!(serialize(&again, &Edits::default()), out);

    let mut edits = Edits::default();
    edits.pop_first_value(HeaderName::Route);
    edits.prepend("Via", "SIP/2.0/UDP fuzz.invalid;branch=z9hG4bKfuzz");
    edits.set(HeaderName::MaxForwards, "69");
    Message::parse(serialize(&msg, &edits)).expect("edited message must parse");
});
