//! Authorization as a UA would go through it: challenged, answering with a
//! response computed from the challenge (the client side below is written
//! from RFC 7616, not from the server code).

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::sip::{Bytes, Message};

const SRC: &str = "198.51.100.7";

fn auth_with(cfg: AuthConfig) -> Auth {
    let store = Arc::new(RedbSubscribers::in_memory());
    store.put(Subscriber::with_password("alice", &cfg.realm, "correct horse")).unwrap();
    Auth::with_store(&cfg, true, store).unwrap()
}

fn auth() -> Auth {
    auth_with(AuthConfig { db_path: None, ..AuthConfig::default() })
}

fn request(method: &str, ruri: &str, extra: &str) -> Message {
    let text = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1\r\n\
         CSeq: 2 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

/// The UA side: picks the challenge of `algorithm` and answers it.
fn answer(
    challenge: &Challenge,
    algorithm: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let (_, value) = challenge
        .headers
        .iter()
        .find(|(_, v)| v.contains(&format!("algorithm={algorithm},")))
        .unwrap_or_else(|| panic!("no {algorithm} challenge in {challenge:?}"));
    let param = |name: &str| {
        let start = value.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        value[start..].split('"').next().unwrap().to_owned()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let alg: Algorithm = algorithm.parse().unwrap();
    let h = |s: String| alg.hex_hash(s.as_bytes());
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = h(format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algorithm}, cnonce=\"0a4f113b\", qop=auth, nc={nc}"
    )
}

fn src() -> IpAddr {
    SRC.parse().unwrap()
}

#[test]
fn register_is_challenged_with_one_header_per_algorithm_and_then_authorized() {
    let auth = auth();
    let first = request("REGISTER", "sip:example.com", "");
    assert_eq!(auth.authorize(&first, src()), Err(AuthFailure::NoCredentials));
    let challenge = auth.challenge(&first, false);
    assert_eq!((challenge.code, challenge.reason), (401, "Unauthorized"));
    let names: Vec<&str> = challenge.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["WWW-Authenticate", "WWW-Authenticate"]);
    assert!(challenge.headers[0].1.contains("algorithm=MD5") && challenge.headers[1].1.contains("algorithm=SHA-256"));
    assert!(challenge.headers.iter().all(|(_, v)| v.contains("realm=\"sipbox\"") && v.contains("qop=\"auth\"")));
    for alg in ["SHA-256", "MD5"] {
        let creds = answer(&challenge, alg, "alice", "correct horse", "REGISTER", "sip:example.com", 1);
        let req = request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"));
        let id = auth.authorize(&req, src()).unwrap();
        assert_eq!(id, Identity { user: "alice".into(), realm: "sipbox".into() });
        assert!(identity_matches(&id, req.to().ok().and_then(|t| t.parsed_uri().ok())));
    }
}

#[test]
fn an_invite_uses_the_proxy_headers() {
    let auth = auth();
    let invite = request("INVITE", "sip:bob@example.com", "");
    let challenge = auth.challenge(&invite, false);
    assert_eq!(challenge.code, 407);
    assert!(challenge.headers.iter().all(|(n, _)| n == "Proxy-Authenticate"));
    let creds = answer(&challenge, "MD5", "alice", "correct horse", "INVITE", "sip:bob@example.com", 1);
    // Credentials in Authorization are not a proxy's to take.
    let wrong_header = request("INVITE", "sip:bob@example.com", &format!("Authorization: {creds}\r\n"));
    assert_eq!(auth.authorize(&wrong_header, src()), Err(AuthFailure::NoCredentials));
    let req = request("INVITE", "sip:bob@example.com", &format!("Proxy-Authorization: {creds}\r\n"));
    assert_eq!(auth.authorize(&req, src()).unwrap().user, "alice");
}

#[test]
fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let auth = auth();
    let challenge = auth.challenge(&request("REGISTER", "sip:example.com", ""), false);
    for (user, password) in [("alice", "wrong"), ("mallory", "correct horse"), ("", "")] {
        let creds = answer(&challenge, "MD5", user, password, "REGISTER", "sip:example.com", 1);
        let req = request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"));
        assert_eq!(auth.authorize(&req, src()), Err(AuthFailure::Invalid), "{user}/{password}");
    }
}

#[test]
fn a_replayed_nonce_count_is_refused_and_a_higher_one_accepted() {
    let auth = auth();
    let challenge = auth.challenge(&request("REGISTER", "sip:example.com", ""), false);
    let with = |nc| {
        let creds = answer(&challenge, "MD5", "alice", "correct horse", "REGISTER", "sip:example.com", nc);
        request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"))
    };
    assert!(auth.authorize(&with(1), src()).is_ok());
    assert_eq!(auth.authorize(&with(1), src()), Err(AuthFailure::Replayed));
    assert!(auth.authorize(&with(2), src()).is_ok());
    assert_eq!(auth.stats().replayed.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_nonce_is_stale_only_with_the_right_password() {
    let auth = auth_with(AuthConfig { nonce_lifetime_s: 10, db_path: None, ..AuthConfig::default() });
    let challenge = auth.challenge(&request("REGISTER", "sip:example.com", ""), false);
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    let req = |password| {
        let creds = answer(&challenge, "MD5", "alice", password, "REGISTER", "sip:example.com", 1);
        request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"))
    };
    assert_eq!(auth.authorize(&req("wrong"), src()), Err(AuthFailure::Invalid));
    assert_eq!(auth.authorize(&req("correct horse"), src()), Err(AuthFailure::Stale));
    let stale = auth.challenge(&req("correct horse"), true);
    assert!(stale.headers.iter().all(|(_, v)| v.ends_with("stale=true")));
}

#[test]
fn nonces_of_another_server_and_mismatched_credentials_are_refused() {
    let auth = auth();
    let other = auth_with(AuthConfig { db_path: None, ..AuthConfig::default() });
    let foreign = other.challenge(&request("REGISTER", "sip:example.com", ""), false);
    let creds = answer(&foreign, "MD5", "alice", "correct horse", "REGISTER", "sip:example.com", 1);
    let req = request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"));
    assert_eq!(auth.authorize(&req, src()), Err(AuthFailure::NoCredentials));

    let challenge = auth.challenge(&request("REGISTER", "sip:example.com", ""), false);
    let creds = answer(&challenge, "MD5", "alice", "correct horse", "REGISTER", "sip:other.example.com", 1);
    let req = request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"));
    assert!(matches!(auth.authorize(&req, src()), Err(AuthFailure::Malformed(why)) if why.contains("Request-URI")));

    let md5_only = auth_with(AuthConfig { algorithms: vec![Algorithm::Md5], db_path: None, ..AuthConfig::default() });
    let sha = auth.challenge(&request("REGISTER", "sip:example.com", ""), false);
    let creds = answer(&sha, "SHA-256", "alice", "correct horse", "REGISTER", "sip:example.com", 1);
    let req = request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"));
    assert!(matches!(md5_only.authorize(&req, src()), Err(AuthFailure::Malformed(why)) if why.contains("not offered")));

    let garbage = request("REGISTER", "sip:example.com", "Authorization: Digest username=\"alice\r\n");
    assert!(matches!(auth.authorize(&garbage, src()), Err(AuthFailure::Malformed(_))));
}

#[test]
fn a_source_failing_too_often_is_throttled_and_reported() {
    let blocked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = blocked.clone();
    let auth = auth_with(AuthConfig { max_failures: 3, db_path: None, ..AuthConfig::default() })
        .with_block_listener(Box::new(move |ip, failures, _| seen.lock().unwrap().push((ip, failures))));
    let challenge = auth.challenge(&request("REGISTER", "sip:example.com", ""), false);
    let req = |password| {
        let creds = answer(&challenge, "MD5", "alice", password, "REGISTER", "sip:example.com", 1);
        request("REGISTER", "sip:example.com", &format!("Authorization: {creds}\r\n"))
    };
    for _ in 0..3 {
        assert_eq!(auth.authorize(&req("guess"), src()), Err(AuthFailure::Invalid));
    }
    assert!(matches!(auth.authorize(&req("correct horse"), src()), Err(AuthFailure::Throttled(s)) if s > 0));
    assert_eq!(*blocked.lock().unwrap(), [(src(), 3)]);
    let elsewhere: IpAddr = "198.51.100.8".parse().unwrap();
    assert!(auth.authorize(&req("correct horse"), elsewhere).is_ok(), "other sources are not affected");
}
