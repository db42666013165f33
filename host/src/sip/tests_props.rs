//! Property test on stable: `parse(serialize(edit(m)))` keeps every header line that was not
//! edited, byte for byte and in order (the check is `edit_props::check`, which the `edit`
//! fuzz target runs too). Messages come from a small seeded generator (odd spacing, case,
//! compact names, folding, LF-only lines, lists, bodies with and without Content-Length);
//! edits from `arbitrary` over seeded bytes. Deterministic and bounded.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;

use super::Message;
use super::edit_props::{Op, check};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// One header line `name<ws>:<ws>value`, sometimes folded, ending in CRLF or (rarely) LF.
fn line(rng: &mut Rng, names: &[&str], value: &str) -> String {
    let name = rng.pick(names);
    let before = rng.pick(&["", "", " ", "\t"]);
    let after = rng.pick(&[" ", " ", "", "   "]);
    let eol = rng.pick(&["\r\n", "\r\n", "\r\n", "\n"]);
    let trail = rng.pick(&["", "", " "]);
    let value = if rng.below(8) == 0 && value.contains(' ') {
        value.replacen(' ', &format!("{eol} "), 1)
    } else {
        value.to_string()
    };
    format!("{name}{before}:{after}{value}{trail}{eol}")
}

fn message(rng: &mut Rng) -> Vec<u8> {
    let method = rng.pick(&["INVITE", "REGISTER", "OPTIONS", "BYE", "FOO"]);
    let start = if rng.below(4) == 0 {
        rng.pick(&["SIP/2.0 200 OK", "SIP/2.0 486 Busy Here", "SIP/2.0 100 ", "sip/2.0 302 Moved"]).to_string()
    } else {
        format!("{method} {} SIP/2.0", rng.pick(&["sip:bob@example.com", "sips:[2001:db8::1]:5061", "tel:+123"]))
    };
    let cseq = format!("{} {method}", rng.below(1000));
    let mut lines = vec![
        line(rng, &["Via", "v", "VIA"], "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776;rport"),
        line(rng, &["From", "f", "from"], "\"Alice\" <sip:alice@example.com>;tag=19"),
        line(rng, &["To", "t"], "Bob <sip:bob@example.com>"),
        line(rng, &["Call-ID", "i", "call-id"], "a84b4c76e66710@pc33"),
        line(rng, &["CSeq", "cseq"], &cseq),
    ];
    let optional: &[(&[&str], &[&str])] = &[
        (&["Via", "v"], &["SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKabc", "SIP/2.0/UDP a, SIP/2.0/UDP b"]),
        (&["Max-Forwards"], &["70", "0"]),
        (&["Route", "ROUTE"], &["<sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "<sip:p3;lr>"]),
        (&["Record-Route"], &["<sip:rr1;lr>", "<sip:rr2;lr> ,<sip:rr3;lr>"]),
        (&["Contact", "m"], &["<sip:alice@pc33>;expires=60, \"x,y\" <sip:a2@h>", "*"]),
        (&["Subject", "s"], &["hello there", "x"]),
        (&["X-Fuzz", "x-fuzz", "X-Other"], &["a b c", "1"]),
        (&["Allow", "Supported", "k"], &["INVITE, ACK", "timer"]),
        (&["Expires"], &["3600"]),
        (&["Content-Type", "c"], &["application/sdp"]),
    ];
    for _ in 0..rng.below(8) {
        let (names, values) = optional[rng.below(optional.len())];
        let value = rng.pick(values);
        lines.push(line(rng, names, value));
    }
    for i in (1..lines.len()).rev() {
        lines.swap(i, rng.below(i + 1));
    }
    // Max-Forwards is single: keep only the first.
    let mut seen = false;
    lines.retain(|l| !l.to_ascii_lowercase().starts_with("max-forwards") || !std::mem::replace(&mut seen, true));
    let body = rng.pick(&["", "v=0\r\n", "hello"]);
    if rng.below(2) == 0 {
        lines.push(line(rng, &["Content-Length", "l"], &body.len().to_string()));
    }
    let lead = rng.pick(&["", "", "\r\n"]);
    format!("{lead}{start}\r\n{}\r\n{body}", lines.concat()).into_bytes()
}

#[test]
fn untouched_header_lines_survive_edit_and_reparse() {
    let mut rng = Rng(0x5eed_cafe_f00d_0017);
    for case in 0..1500 {
        let raw = message(&mut rng);
        let msg = Message::parse(Bytes::from(raw.clone())).unwrap_or_else(|e| {
            panic!("case {case}: generated message does not parse: {e}\n{}", String::from_utf8_lossy(&raw))
        });
        let noise: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let ops = Vec::<Op>::arbitrary(&mut Unstructured::new(&noise)).unwrap();
        if let Err(e) = check(&msg, &ops) {
            panic!("case {case}: {e}\ninput:\n{}", String::from_utf8_lossy(&raw));
        }
    }
}
