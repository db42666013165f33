//! Malformed input over UDP: a request the parser rejects but whose Via is
//! usable gets `400 Bad Request` (to the Via's branch); anything without a
//! usable Via gets no reply at all; and the server keeps serving.

use std::time::Duration;

use crate::harness::{RawUdp, Server, ServerConfig, TestEnv, status_of};

/// A request from `raw`'s port with a valid Via and `broken` in place of the
/// usual CSeq/Call-ID/body lines.
fn request(server: &Server, raw: &RawUdp, branch: &str, broken: &str) -> String {
    format!(
        "INVITE sip:alice@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:mallory@127.0.0.1:{local}>;tag=e2e-{branch}\r\n\
         To: <sip:alice@127.0.0.1:{port}>\r\n\
         {broken}",
        port = server.port(),
        local = raw.port(),
    )
}

#[test]
fn broken_requests_with_a_via_get_400() {
    let env = TestEnv::new("malformed_400");
    let server = Server::start(&env, ServerConfig::default());
    let raw = RawUdp::new();
    let cases: [(&str, &str); 3] = [
        ("CSeq without a number", "Call-ID: bad-cseq@e2e\r\nCSeq: abc INVITE\r\nContent-Length: 0\r\n\r\n"),
        ("no Call-ID", "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
        (
            "body shorter than Content-Length (RFC 3261 18.3)",
            "Call-ID: short-body@e2e\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 300\r\n\r\nv=0\r\n",
        ),
    ];
    for (what, broken) in cases {
        let branch = raw.branch();
        raw.send(server.addr(), request(&server, &raw, &branch, broken).as_bytes());
        let reply = raw.recv_within(Duration::from_secs(5)).unwrap_or_else(|| panic!("{what}: no reply within 5 s"));
        assert_eq!(status_of(&reply), Some(400), "{what}: expected 400, got:\n{reply}");
        assert!(reply.contains(&branch), "{what}: the 400 must carry the request's Via branch:\n{reply}");
    }
    let mut others = Vec::new();
    assert!(raw.options(server.addr(), Duration::from_secs(5), &mut others).is_some(), "server stopped answering");
    assert!(others.is_empty(), "unexpected extra datagrams: {others:#?}");
}

#[test]
fn garbage_without_a_via_gets_no_reply() {
    let env = TestEnv::new("malformed_silent");
    let mut server = Server::start(&env, ServerConfig::default());
    let raw = RawUdp::new();
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(1500).collect();
    binary[0] = 0;
    let big = vec![b'x'; 60_000];
    let garbage: [(&str, &[u8]); 5] = [
        ("text", b"hello sipbox, this is not SIP\r\n\r\n"),
        ("binary", &binary),
        ("request without Via", b"INVITE sip:alice@127.0.0.1 SIP/2.0\r\nCSeq: abc INVITE\r\nContent-Length: 0\r\n\r\n"),
        ("start line only", b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n"),
        ("60 kB of junk", &big),
    ];
    for (_, bytes) in garbage {
        raw.send(server.addr(), bytes);
    }
    // Nothing may come back for any of them. A reply would arrive within
    // milliseconds on loopback; half a second is a generous window.
    if let Some(reply) = raw.recv_within(Duration::from_millis(500)) {
        panic!("garbage got a reply:\n{reply}");
    }
    let mut others = Vec::new();
    let pong = raw.options(server.addr(), Duration::from_secs(5), &mut others);
    assert!(pong.is_some(), "the server stopped answering OPTIONS after garbage\n{}", server.log());
    assert!(others.is_empty(), "garbage got a reply: {others:#?}");
    assert!(server.is_running(), "the server exited\n{}", server.log());
}
