#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into corpus/<target>/ (run from host/fuzz).

Sources: the RFC 4475 torture messages (host/testdata/torture) and hand-written URIs,
header values and TCP streams. Torture files keep their names, the others are named by content,
so running it again changes nothing (docs/FUZZING.md, "Corpus").
"""
import hashlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
TORTURE = ROOT.parent / "testdata" / "torture"


def write(target, data, name=None):
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / (name or "seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def torture(kind):
    return [p.read_bytes() for p in sorted((TORTURE / kind).glob("*.sip"))]


def torture_named(kind):
    return [(p.name, p.read_bytes()) for p in sorted((TORTURE / kind).glob("*.sip"))]


INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKabc;received=192.0.2.9\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Route: <sip:p3.example.com;lr>\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"From: \"Alice, A.\" <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.com;transport=tcp>;expires=60, \"x,y\" <sip:a2@h>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 5\r\n\r\nv=0\r\n"
)
REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/TCP h:5060 ;branch=z9hG4bK1\r\n"
    b"f: <sip:a@example.com>;tag=1\r\nt: <sip:a@example.com>\r\ni: r1\r\nCSeq: 2 REGISTER\r\n"
    b"m: *\r\nExpires: 0\r\nl: 0\r\n\r\n"
)
RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;received=192.0.2.1;rport=5070\r\n"
    b"Record-Route: <sip:rr1;lr>,<sip:rr2;lr>\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
    b"Call-ID: x\r\nCSeq: 1 INVITE\r\nX-Folded: one\r\n  two\r\nContent-Length: 0\r\n\r\n"
)
NO_CL = INVITE.replace(b"Content-Length: 5\r\n", b"")
MESSAGES = [INVITE, REGISTER, RESPONSE, NO_CL]


def main():
    for name, m in torture_named("valid") + torture_named("invalid"):
        write("parse", m, name)
    for m in MESSAGES:
        write("parse", m)

    uris = [
        "sip:bob@example.com", "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y",
        "sip:p1.example.com;lr", "sip:+1-212-555-1212:1234@gateway.com;user=phone", "tel:+358-555-1234567;postd=pp22",
        "sip:host:0", "sip:%61lice@atlanta.com;transport=TCP", "SIP:user@HOST.example.COM;maddr=239.255.255.1;ttl=15",
        "mailto:someone@example.com", "sip:[::1]", "sip:a@b?", "sip:a;b@c", "urn:service:sos", "sip:1.2.3.4:65535",
        "sip:user;par=u%40example.net@example.com", "sip:a@b;x=\"q\"", "sips:h;transport=tls;lr;maddr=[2001:db8::9]",
    ]
    for u in uris:
        write("uri", u.encode())

    headers = {
        0: ["SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776;rport", "SIP / 2.0 / TCP [2001:db8::1] : 5070 ;branch=x;received=1.2.3.4",
            "SIP/2.0/UDP a;rport=5060;maddr=x, SIP/2.0/TCP b", "SIP/2.0/SCTP h:1;branch=\"q;r\""],
        1: ["\"Alice, A.\" <sip:alice@example.com>;tag=1928301774", "sip:a@b;tag=x", "Bob <sip:bob@b;lr>;x=\"y;z\"",
            "\"\\\"esc\\\"\" <tel:+1>"],
        2: ["Bob <sip:bob@example.com>", "<sip:c@d>;tag=2;other"],
        3: ["314159 INVITE", "0000001 FOO", "4294967295 ACK"],
        4: ["*", "<sip:a@pc33;transport=tcp>;expires=60, \"x,y\" <sip:a2@h>;q=0.5", "sip:a@b;expires=0,<sip:c@d?Subject=x&h=1>"],
        5: ["<sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "<sip:p3;lr;transport=tcp>"],
        6: ["<sip:rr1;lr>,<sip:rr2;lr>"],
        7: ["70", "0", "4294967295", "4294967296", " 007 "],
        8: ["3600", "0", "99999999999999"],
    }
    for which, values in headers.items():
        for v in values:
            write("headers", bytes([which]) + v.encode())

    streams = [
        INVITE + REGISTER + RESPONSE,
        b"\r\n\r\n" + INVITE + b"\r\n" + REGISTER,
        NO_CL,
        INVITE.replace(b"Content-Length: 5", b"Content-Length: 70000"),
        INVITE.replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 5"),
        INVITE.replace(b"Content-Length: 5", b"Content-Length: x5"),
        INVITE.replace(b"Content-Length: 5", b"Content-Length: 5\r\n 0"),
        INVITE.replace(b"Content-Length: 5", b"Content-Length: 50"),
        INVITE.replace(b"\r\n", b"\n"),
        b"GARBAGE\r\n\r\n" + REGISTER,
        REGISTER[:40],
    ]
    for i, s in enumerate(streams):
        write("framing", bytes([i * 37 % 256]) + s)

    for m in torture("valid")[:8] + MESSAGES:
        write("edit", b"\x00" + m)
        for op_bytes in [b"\x02\x05hello\x01\x03\x07", b"\x07\x00\x09\x01\x08\x02\x03\x04", b"\x0a\x04body\x01\x00text/plain"]:
            write("edit", bytes([len(op_bytes)]) + op_bytes + m)


if __name__ == "__main__":
    main()
