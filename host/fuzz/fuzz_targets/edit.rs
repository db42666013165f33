//! Fuzzes edit-list serialisation. Input: one byte `n`, then `n` bytes from which
//! `arbitrary` builds a list of edits, then the message. For every message that parses,
//! `parse(serialize(edit(m)))` must succeed and keep every header line the edits did not
//! name byte-identical and in order (`sipbox_fuzz::props::edit_props::check`, the check of
//! the stable unit test `sip::tests_props`).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sipbox_fuzz::props::edit_props::{Op, check};
use sipbox_fuzz::sip::{Bytes, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (ops, raw) = rest.split_at(usize::from(n).min(rest.len()));
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(raw)) else { return };
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(ops)) else { return };
    if let Err(e) = check(&msg, &ops) {
        panic!("{e}");
    }
});
