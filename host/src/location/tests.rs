//! End-to-end tests of [`Location`]: REGISTER messages written as raw text,
//! parsed with `sip::Message::parse`, through `save`, `lookup`, events,
//! expiry and persistence.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::sip::{Bytes, Message};
use crate::transport::Proto;

const UA: &str = "192.0.2.10:5060";

/// A REGISTER for `alice@example.com`, built as raw text.
struct Reg {
    user: &'static str,
    call_id: &'static str,
    cseq: u32,
    contacts: Vec<String>,
    expires: Option<String>,
}

fn reg(cseq: u32) -> Reg {
    Reg { user: "alice", call_id: "call-1@ua", cseq, contacts: Vec::new(), expires: None }
}

impl Reg {
    fn contact(mut self, c: &str) -> Reg {
        self.contacts.push(c.to_owned());
        self
    }
    fn expires(mut self, e: impl ToString) -> Reg {
        self.expires = Some(e.to_string());
        self
    }
    fn call_id(mut self, id: &'static str) -> Reg {
        self.call_id = id;
        self
    }
    fn user(mut self, user: &'static str) -> Reg {
        self.user = user;
        self
    }
    fn build(&self) -> Message {
        let mut text = format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP {UA};branch=z9hG4bK-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@example.com>;tag=f1\r\n\
             To: \"A\" <sip:{user}@example.com>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             User-Agent: test-ua/1.0\r\n",
            cseq = self.cseq,
            user = self.user,
            call_id = self.call_id
        );
        for c in &self.contacts {
            text.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = &self.expires {
            text.push_str(&format!("Expires: {e}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(text)).expect("test REGISTER parses")
    }
}

fn memory_cfg() -> LocationConfig {
    LocationConfig { db_path: None, ..LocationConfig::default() }
}

fn save(loc: &Location, r: Reg) -> RegisterOutcome {
    loc.save(&r.build(), UA.parse().unwrap(), Proto::Udp)
}

fn header<'a>(o: &'a RegisterOutcome, name: &str) -> Vec<&'a str> {
    o.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

fn contacts(loc: &Location, aor: &str) -> Vec<String> {
    loc.lookup(aor).into_iter().map(|b| b.contact).collect()
}

/// A location whose changes arrive on the receiver, as its listener gets them.
fn listened(cfg: &LocationConfig) -> (Location, mpsc::UnboundedReceiver<LocationEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = Box::new(move |change: &LocationEvent| {
        let _ = tx.send(change.clone());
    });
    (Location::open_with_listener(cfg, listener).unwrap(), rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<LocationEvent>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push(match ev {
            LocationEvent::AorInserted(a) => format!("aor+ {a}"),
            LocationEvent::AorDeleted(a) => format!("aor- {a}"),
            LocationEvent::ContactInserted(b) => format!("ins {}", b.contact),
            LocationEvent::ContactUpdated(b) => format!("upd {}", b.contact),
            LocationEvent::ContactRefreshed(b) => format!("ref {}", b.contact),
            LocationEvent::ContactDeleted(b) => format!("del {}", b.contact),
        });
    }
    out
}

#[tokio::test]
async fn save_refresh_and_unregister_with_expires_zero() {
    let loc = Location::open(&memory_cfg()).unwrap();
    let out = save(&loc, reg(1).contact("<sip:alice@192.0.2.10:5060>").expires(1800));
    assert_eq!((out.code, out.reason.as_str()), (200, "OK"));
    assert_eq!(header(&out, "Contact"), ["<sip:alice@192.0.2.10:5060>;expires=1800"]);
    let date = header(&out, "Date");
    assert!(date.len() == 1 && date[0].ends_with(" GMT"), "{date:?}");

    let b = &loc.lookup("alice")[0];
    assert_eq!((b.call_id.as_str(), b.cseq, b.received.as_ref()), ("call-1@ua", 1, None));
    assert_eq!(b.user_agent.as_deref(), Some("test-ua/1.0"));
    assert!(b.expires_at >= b.last_modified + 1800);

    let out = save(&loc, reg(2).contact("<sip:alice@192.0.2.10:5060>").expires(600));
    assert_eq!(header(&out, "Contact"), ["<sip:alice@192.0.2.10:5060>;expires=600"]);
    assert_eq!(loc.lookup("alice")[0].cseq, 2);

    let out = save(&loc, reg(3).contact("<sip:alice@192.0.2.10:5060>").expires(0));
    assert_eq!(out.code, 200);
    assert!(header(&out, "Contact").is_empty());
    assert!(loc.lookup("alice").is_empty());
    assert!(loc.dump().is_empty());
}

#[tokio::test]
async fn fetch_without_contact_lists_bindings() {
    let loc = Location::open(&memory_cfg()).unwrap();
    save(&loc, reg(1).contact("<sip:alice@192.0.2.10>").expires(300));
    let out = save(&loc, reg(2));
    assert_eq!(out.code, 200);
    assert_eq!(header(&out, "Contact"), ["<sip:alice@192.0.2.10>;expires=300"]);
    assert_eq!(loc.lookup("alice")[0].cseq, 1, "a fetch changes nothing");
}

#[tokio::test]
async fn star_removes_everything_only_with_expires_zero_and_alone() {
    let loc = Location::open(&memory_cfg()).unwrap();
    save(&loc, reg(1).contact("<sip:alice@192.0.2.10>").contact("<sip:alice@192.0.2.11>"));
    assert_eq!(loc.lookup("alice").len(), 2);

    assert_eq!(save(&loc, reg(2).contact("*")).code, 400, "no Expires");
    assert_eq!(save(&loc, reg(3).contact("*").expires(60)).code, 400, "Expires not 0");
    assert_eq!(save(&loc, reg(4).contact("*").contact("<sip:alice@192.0.2.12>").expires(0)).code, 400);
    assert_eq!(loc.lookup("alice").len(), 2, "refused requests change nothing");

    let out = save(&loc, reg(5).contact("*").expires(0));
    assert_eq!(out.code, 200);
    assert!(header(&out, "Contact").is_empty());
    assert!(loc.lookup("alice").is_empty());
}

#[tokio::test]
async fn multiple_contacts_ordered_by_q() {
    let loc = Location::open(&memory_cfg()).unwrap();
    let out = save(
        &loc,
        reg(1)
            .contact("<sip:low@192.0.2.1>;q=0.1")
            .contact("<sip:mid@192.0.2.2>;q=0.5, <sip:none@192.0.2.3>")
            .contact("sip:top@192.0.2.4;q=1.0")
            .expires(300),
    );
    assert_eq!(out.code, 200);
    assert_eq!(
        header(&out, "Contact"),
        [
            "<sip:none@192.0.2.3>;expires=300",
            "<sip:top@192.0.2.4>;expires=300;q=1",
            "<sip:mid@192.0.2.2>;expires=300;q=0.5",
            "<sip:low@192.0.2.1>;expires=300;q=0.1",
        ]
    );
    assert_eq!(
        contacts(&loc, "alice"),
        ["sip:none@192.0.2.3", "sip:top@192.0.2.4", "sip:mid@192.0.2.2", "sip:low@192.0.2.1"]
    );
    assert_eq!(loc.lookup("alice")[2].q, Some(0.5));

    for bad in ["1.5", "0.1234", "abc", "-0.5", ""] {
        let out = save(&loc, reg(2).contact(&format!("<sip:x@192.0.2.9>;q={bad}")));
        assert_eq!(out.code, 400, "q={bad}");
    }
    assert_eq!(save(&loc, reg(3).contact("<sip:x@192.0.2.9>;q")).code, 400);
    assert_eq!(loc.lookup("alice").len(), 4);
}

#[tokio::test]
async fn min_and_max_expires() {
    let loc = Location::open(&memory_cfg()).unwrap();
    let out = save(&loc, reg(1).contact("<sip:alice@192.0.2.10>").expires(30));
    assert_eq!((out.code, out.reason.as_str()), (423, "Interval Too Brief"));
    assert_eq!(header(&out, "Min-Expires"), ["60"]);
    assert!(loc.lookup("alice").is_empty());

    // One brief contact fails the whole request.
    let out = save(&loc, reg(2).contact("<sip:a@192.0.2.1>").contact("<sip:b@192.0.2.2>;expires=59").expires(300));
    assert_eq!(out.code, 423);
    assert!(loc.lookup("alice").is_empty());

    let out = save(&loc, reg(3).contact("<sip:alice@192.0.2.10>").expires(99_999_999_999u64));
    assert_eq!(header(&out, "Contact"), ["<sip:alice@192.0.2.10>;expires=3600"], "clamped to max_expires");
    let out = save(&loc, reg(4).contact("<sip:alice@192.0.2.10>").expires(60));
    assert_eq!(header(&out, "Contact"), ["<sip:alice@192.0.2.10>;expires=60"], "min_expires itself is fine");
    assert_eq!(save(&loc, reg(5).contact("<sip:alice@192.0.2.10>").expires("soon")).code, 400);
}

#[tokio::test]
async fn contact_expires_param_overrides_header() {
    let loc = Location::open(&memory_cfg()).unwrap();
    let out = save(&loc, reg(1).contact("<sip:a@192.0.2.1>;expires=120").contact("<sip:b@192.0.2.2>").expires(300));
    let mut lines = header(&out, "Contact");
    lines.sort();
    assert_eq!(lines, ["<sip:a@192.0.2.1>;expires=120", "<sip:b@192.0.2.2>;expires=300"]);

    // Without an Expires header the default applies; ;expires=0 removes just that one.
    let out = save(&loc, reg(2).contact("<sip:a@192.0.2.1>;expires=0").contact("<sip:c@192.0.2.3>"));
    let mut lines = header(&out, "Contact");
    lines.sort();
    assert_eq!(lines, ["<sip:b@192.0.2.2>;expires=300", "<sip:c@192.0.2.3>;expires=3600"]);
    assert_eq!(save(&loc, reg(3).contact("<sip:a@192.0.2.1>;expires=x")).code, 400);
}

#[tokio::test]
async fn same_call_id_needs_a_higher_cseq() {
    let loc = Location::open(&memory_cfg()).unwrap();
    assert_eq!(save(&loc, reg(5).contact("<sip:alice@192.0.2.10>").expires(300)).code, 200);

    for cseq in [5, 4] {
        let out = save(&loc, reg(cseq).contact("<sip:alice@192.0.2.10>").contact("<sip:new@192.0.2.11>").expires(900));
        assert_eq!(out.code, 500, "CSeq {cseq}");
    }
    let b = loc.lookup("alice");
    assert_eq!((b.len(), b[0].cseq, b[0].expires_at - b[0].last_modified), (1, 5, 300), "nothing changed");

    // Another Call-ID (the UA restarted) starts its own sequence.
    let out = save(&loc, reg(1).call_id("call-2@ua").contact("<sip:alice@192.0.2.10>").expires(900));
    assert_eq!(out.code, 200);
    assert_eq!(loc.lookup("alice")[0].call_id, "call-2@ua");
    assert_eq!(save(&loc, reg(6).contact("<sip:alice@192.0.2.10>")).code, 200, "old Call-ID no longer stored");
}

#[tokio::test]
async fn max_contacts_refuses_growth_with_503() {
    let loc = Location::open(&LocationConfig { max_contacts: 2, ..memory_cfg() }).unwrap();
    save(&loc, reg(1).contact("<sip:a@192.0.2.1>").contact("<sip:b@192.0.2.2>"));
    let out = save(&loc, reg(2).contact("<sip:c@192.0.2.3>"));
    assert_eq!((out.code, out.reason.as_str()), (503, "Too Many Registered Contacts"));
    assert_eq!(save(&loc, reg(3).contact("<sip:a@192.0.2.1>")).code, 200, "refresh allowed");
}

#[tokio::test]
async fn lookup_by_uri_or_aor() {
    let loc = Location::open(&memory_cfg()).unwrap();
    save(&loc, reg(1).contact("<sip:alice@192.0.2.10>"));
    for name in
        ["alice", "sip:alice@example.com", "SIP:alice@other.example:5070;user=phone", "alice@example.com", " alice "]
    {
        assert_eq!(loc.lookup(name).len(), 1, "{name}");
    }
    for name in ["Alice", "sip:bob@example.com", "", "sip:example.com", "tel:+1234"] {
        assert!(loc.lookup(name).is_empty(), "{name}");
    }

    // With use_domain the AOR is user@host, host case-insensitive, port ignored.
    let loc = Location::open(&LocationConfig { use_domain: true, ..memory_cfg() }).unwrap();
    save(&loc, reg(1).contact("<sip:alice@192.0.2.10>"));
    assert_eq!(loc.dump()[0].aor, "alice@example.com");
    for name in ["alice@example.com", "alice@EXAMPLE.com:5060", "sip:alice@Example.COM", "sips:alice@example.com:5061"]
    {
        assert_eq!(loc.lookup(name).len(), 1, "{name}");
    }
    for name in ["alice", "alice@example.org", "sip:ALICE@example.com"] {
        assert!(loc.lookup(name).is_empty(), "{name}");
    }
}

#[tokio::test]
async fn received_is_stored_when_the_source_differs() {
    let loc = Location::open(&memory_cfg()).unwrap();
    let nat: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let msg = reg(1).contact("<sip:alice@192.168.1.10:5060>").build();
    assert_eq!(loc.save(&msg, nat, Proto::Udp).code, 200);
    assert_eq!(
        loc.lookup("alice")[0].received.as_ref().map(ToString::to_string).as_deref(),
        Some("udp:203.0.113.5:40000")
    );

    // Same address and transport: nothing to record.
    let direct: SocketAddr = "192.168.1.10:5060".parse().unwrap();
    let msg = reg(2).contact("<sip:alice@192.168.1.10:5060>").build();
    loc.save(&msg, direct, Proto::Udp);
    assert_eq!(loc.lookup("alice")[0].received, None);

    // Same address but the REGISTER came over TCP while the contact implies UDP.
    let msg = reg(3).contact("<sip:alice@192.168.1.10:5060>").build();
    loc.save(&msg, direct, Proto::Tcp);
    assert_eq!(
        loc.lookup("alice")[0].received.as_ref().map(ToString::to_string).as_deref(),
        Some("tcp:192.168.1.10:5060")
    );
    // ;transport=tcp makes it another contact, and one that matches the source.
    let msg = reg(4).contact("<sip:alice@192.168.1.10:5060;transport=TCP>").build();
    loc.save(&msg, direct, Proto::Tcp);
    let bindings = loc.lookup("alice");
    assert_eq!(bindings.len(), 2);
    let tcp = bindings.iter().find(|b| b.contact.ends_with("transport=TCP")).unwrap();
    assert_eq!(tcp.received, None);

    // Same IP, another port, over UDP: a third-party registration or a UA with
    // several sockets; the Contact is where requests go.
    let other_port: SocketAddr = "192.168.1.10:5071".parse().unwrap();
    let msg = reg(5).user("carol").contact("<sip:carol@192.168.1.10:5070>").build();
    loc.save(&msg, other_port, Proto::Udp);
    assert_eq!(loc.lookup("carol")[0].received, None);

    // IPv6 sources are bracketed so the port stays unambiguous.
    let v6: SocketAddr = "[2001:db8::2]:5062".parse().unwrap();
    let msg = reg(1).user("bob").contact("<sip:bob@[2001:db8::1]:5060>").build();
    loc.save(&msg, v6, Proto::Udp);
    assert_eq!(
        loc.lookup("bob")[0].received.as_ref().map(ToString::to_string).as_deref(),
        Some("udp:[2001:db8::2]:5062")
    );
}

#[tokio::test]
async fn events_follow_the_changes_in_order() {
    let (loc, mut rx) = listened(&memory_cfg());
    save(&loc, reg(1).contact("<sip:a@192.0.2.1>").contact("<sip:b@192.0.2.2>").expires(300));
    assert_eq!(drain(&mut rx), ["aor+ alice", "ins sip:a@192.0.2.1", "ins sip:b@192.0.2.2"]);

    save(&loc, reg(2).contact("<sip:a@192.0.2.1>").expires(600));
    assert_eq!(drain(&mut rx), ["ref sip:a@192.0.2.1"]);
    save(&loc, reg(3).contact("<sip:a@192.0.2.1>;q=0.7").expires(600));
    assert_eq!(drain(&mut rx), ["upd sip:a@192.0.2.1"]);
    // Same contact, differently spelt (RFC 3261 19.1.4): an update, not a new binding.
    save(&loc, reg(4).contact("<SIP:a@192.0.2.1;lr>;q=0.7").expires(600));
    assert_eq!(drain(&mut rx), ["upd SIP:a@192.0.2.1;lr"]);
    assert_eq!(contacts(&loc, "alice").len(), 2);

    save(&loc, reg(5).contact("<sip:a@192.0.2.1>").expires(0));
    assert_eq!(drain(&mut rx), ["del SIP:a@192.0.2.1;lr"]);
    assert_eq!(loc.unregister("sip:alice@example.com", None), 1);
    assert_eq!(drain(&mut rx), ["del sip:b@192.0.2.2", "aor- alice"]);
    assert!(save(&loc, reg(6).contact("<sip:a@192.0.2.1>").expires(30)).code == 423);
    assert!(drain(&mut rx).is_empty(), "a refused REGISTER emits nothing");
}

#[tokio::test]
async fn unregister_one_contact_by_uri_comparison() {
    let loc = Location::open(&memory_cfg()).unwrap();
    save(&loc, reg(1).contact("<sip:%61lice@Host.Example>").contact("<sip:alice@192.0.2.2>"));
    assert_eq!(loc.unregister("alice", Some("sip:alice@192.0.2.3")), 0);
    assert_eq!(loc.unregister("alice", Some("not a uri")), 0);
    assert_eq!(loc.unregister("alice", Some("sip:alice@host.example")), 1);
    assert_eq!(contacts(&loc, "alice"), ["sip:alice@192.0.2.2"]);
    assert_eq!(loc.unregister("bob", None), 0);
}

#[tokio::test]
async fn bindings_expire_on_their_own() {
    // Real time, one-second intervals: the wait is bounded by a timeout on the
    // event, not a sleep.
    let cfg = LocationConfig { min_expires: 1, ..memory_cfg() };
    let (loc, mut rx) = listened(&cfg);
    save(&loc, reg(1).contact("<sip:short@192.0.2.1>").expires(1));
    save(&loc, reg(1).user("bob").contact("<sip:long@192.0.2.2>").expires(3600));
    assert_eq!(drain(&mut rx).len(), 4);

    let deleted = tokio::time::timeout(Duration::from_secs(5), async {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(rx.recv().await.expect("the location lives"));
        }
        seen
    })
    .await
    .expect("expiry within 5 s");
    assert!(matches!(&deleted[0], LocationEvent::ContactDeleted(b) if b.contact == "sip:short@192.0.2.1"));
    assert_eq!(deleted[1], LocationEvent::AorDeleted("alice".into()));
    assert!(loc.lookup("alice").is_empty());
    assert_eq!(loc.lookup("bob").len(), 1);
}

#[tokio::test]
async fn persists_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LocationConfig { db_path: Some(dir.path().join("loc.redb")), ..LocationConfig::default() };
    let before = {
        let loc = Location::open(&cfg).unwrap();
        save(&loc, reg(1).contact("<sip:a@192.0.2.1>;q=0.5").contact("<sip:b@192.0.2.2>").expires(900));
        save(&loc, reg(1).user("bob").contact("<sip:bob@192.0.2.3>"));
        save(&loc, reg(1).user("carol").contact("<sip:carol@192.0.2.4>"));
        assert_eq!(loc.unregister("carol", None), 1);
        loc.flush().unwrap();
        // A second open of the same file while this one is live must fail cleanly.
        assert!(Location::open(&cfg).is_err());
        loc.dump()
    }; // the last handle drops here: the writer commits and closes the file

    // Plant an already expired record and an unreadable one behind its back.
    {
        let db = redb::Database::create(dir.path().join("loc.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(persist::BINDINGS).unwrap();
            let mut old = before[0].clone();
            old.aor = "dave".into();
            old.expires_at = 1;
            table.insert(("dave", old.contact.as_str()), serde_json::to_vec(&old).unwrap().as_slice()).unwrap();
            table.insert(("eve", "sip:eve@x"), b"not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    let loc = Location::open(&cfg).unwrap();
    assert_eq!(loc.dump(), before);
    assert_eq!(before.len(), 3);
    assert!(loc.lookup("dave").is_empty() && loc.lookup("eve").is_empty());
    // Loaded bindings keep their Call-ID/CSeq: the same request is still out of order.
    assert_eq!(save(&loc, reg(1).contact("<sip:a@192.0.2.1>")).code, 500);
    drop(loc);

    let db = redb::Database::create(dir.path().join("loc.redb")).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let table = txn.open_table(persist::BINDINGS).unwrap();
    assert_eq!(redb::ReadableTableMetadata::len(&table).unwrap(), 3, "expired and unreadable records dropped on load");
}

#[tokio::test]
async fn rejects_bad_requests_and_config() {
    let loc = Location::open(&memory_cfg()).unwrap();
    let invite = Message::parse(Bytes::from_static(
        b"INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
          From: <sip:b@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: x\r\n\
          CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(loc.save(&invite, UA.parse().unwrap(), Proto::Udp).code, 400);
    assert_eq!(save(&loc, reg(1).contact("<tel:+15551234>")).code, 400, "contacts must be SIP URIs");

    for bad in [
        LocationConfig { min_expires: 100, max_expires: 50, default_expires: 50, ..memory_cfg() },
        LocationConfig { min_expires: 4000, max_expires: 8000, default_expires: 5000, ..memory_cfg() },
        LocationConfig { default_expires: 10, ..memory_cfg() },
        LocationConfig { max_expires: 0, min_expires: 0, default_expires: 0, ..memory_cfg() },
    ] {
        assert!(Location::open(&bad).is_err(), "{bad:?}");
    }
    let cfg: LocationConfig = toml::from_str("min_expires = 30\ndb_path = \"\"").unwrap();
    assert_eq!(cfg, LocationConfig { min_expires: 30, ..memory_cfg() });
    assert!(toml::from_str::<LocationConfig>("min_expire = 30").is_err(), "unknown keys rejected");
}
