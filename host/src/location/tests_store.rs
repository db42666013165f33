//! Unit tests of the index and the RFC 3261 10.3 step 7 rules, on explicit time.

use super::*;

const NOW: u64 = 1_000_000;

fn contact(uri: &str, expires: u32, q: Option<f32>) -> ContactUpdate {
    ContactUpdate { uri: uri.to_owned(), key: uri.to_owned(), expires, q, received: None }
}

fn set(aor: &str, call_id: &str, cseq: u32, contacts: Vec<ContactUpdate>) -> RegisterUpdate {
    RegisterUpdate {
        aor: aor.to_owned(),
        call_id: call_id.to_owned(),
        cseq,
        user_agent: Some("test-ua".to_owned()),
        action: Action::Set(contacts),
    }
}

fn kinds(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::AorInserted(a) => format!("aor+ {a}"),
            Change::AorDeleted(a) => format!("aor- {a}"),
            Change::Inserted(b) => format!("ins {}", b.contact),
            Change::Updated { current, .. } => format!("upd {}", current.contact),
            Change::Refreshed(b) => format!("ref {}", b.contact),
            Change::Deleted(b) => format!("del {}", b.contact),
        })
        .collect()
}

#[test]
fn insert_refresh_update_and_remove_report_changes_in_order() {
    let mut store = Store::default();
    let mut ch = Vec::new();
    store.register(&set("alice", "c1", 1, vec![contact("sip:a@1", 60, None)]), NOW, 0, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["aor+ alice", "ins sip:a@1"]);

    ch.clear();
    store.register(&set("alice", "c1", 2, vec![contact("sip:a@1", 120, None)]), NOW + 10, 0, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["ref sip:a@1"]);
    assert_eq!(store.lookup("alice", NOW + 10)[0].expires_at, NOW + 130);

    ch.clear();
    store.register(&set("alice", "c1", 3, vec![contact("sip:a@1", 120, Some(0.5))]), NOW + 20, 0, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["upd sip:a@1"]);

    ch.clear();
    store.register(&set("alice", "c1", 4, vec![contact("sip:a@1", 0, None)]), NOW + 30, 0, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["del sip:a@1", "aor- alice"]);
    assert!(store.lookup("alice", NOW + 30).is_empty());
    assert_eq!(store.len(), 0, "expiry index emptied with the bindings");
}

#[test]
fn out_of_order_cseq_aborts_the_whole_request() {
    let mut store = Store::default();
    let mut ch = Vec::new();
    let two = vec![contact("sip:a@1", 60, None), contact("sip:a@2", 60, None)];
    store.register(&set("alice", "c1", 5, two), NOW, 0, &mut ch).unwrap();

    // Same Call-ID, equal CSeq: refused, and the new third contact is not added either.
    ch.clear();
    let req = set("alice", "c1", 5, vec![contact("sip:a@3", 60, None), contact("sip:a@1", 0, None)]);
    assert_eq!(store.register(&req, NOW, 0, &mut ch), Err(Rejection::OutOfOrder { stored_cseq: 5 }));
    assert!(ch.is_empty());
    assert_eq!(store.lookup("alice", NOW).len(), 2);

    // Lower CSeq with `*` is refused the same way.
    let mut star = set("alice", "c1", 4, vec![]);
    star.action = Action::RemoveAll;
    assert!(matches!(store.register(&star, NOW, 0, &mut ch), Err(Rejection::OutOfOrder { .. })));

    // A different Call-ID (UA restarted) may use any CSeq.
    store.register(&set("alice", "other", 1, vec![contact("sip:a@1", 60, None)]), NOW, 0, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["upd sip:a@1"], "a new Call-ID is a material change");
}

#[test]
fn remove_all_and_max_contacts() {
    let mut store = Store::default();
    let mut ch = Vec::new();
    let two = vec![contact("sip:a@1", 60, None), contact("sip:a@2", 60, None)];
    store.register(&set("alice", "c1", 1, two), NOW, 2, &mut ch).unwrap();

    let third = set("alice", "c1", 2, vec![contact("sip:a@3", 60, None)]);
    assert_eq!(store.register(&third, NOW, 2, &mut ch), Err(Rejection::TooManyContacts { max: 2 }));
    // Swapping one contact for another keeps the count and is allowed.
    ch.clear();
    let swap = set("alice", "c1", 3, vec![contact("sip:a@1", 0, None), contact("sip:a@3", 60, None)]);
    store.register(&swap, NOW, 2, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["del sip:a@1", "ins sip:a@3"]);
    // Refreshing is allowed even when the limit was lowered below the current count.
    store.register(&set("alice", "c1", 4, vec![contact("sip:a@2", 60, None)]), NOW, 1, &mut ch).unwrap();

    ch.clear();
    let mut star = set("alice", "c1", 5, vec![]);
    star.action = Action::RemoveAll;
    store.register(&star, NOW, 0, &mut ch).unwrap();
    assert_eq!(kinds(&ch), ["del sip:a@2", "del sip:a@3", "aor- alice"]);
}

#[test]
fn expiry_purges_in_deadline_order_and_lookup_hides_expired() {
    let mut store = Store::default();
    let mut ch = Vec::new();
    store.register(&set("alice", "c1", 1, vec![contact("sip:a@1", 60, None)]), NOW, 0, &mut ch).unwrap();
    store.register(&set("bob", "c2", 1, vec![contact("sip:b@1", 30, None)]), NOW, 0, &mut ch).unwrap();
    store.register(&set("alice", "c1", 2, vec![contact("sip:a@2", 90, None)]), NOW, 0, &mut ch).unwrap();
    assert_eq!(store.next_expiry(), Some(NOW + 30));

    // Expired but not yet purged: invisible to lookups.
    assert!(store.lookup("bob", NOW + 30).is_empty());
    ch.clear();
    store.purge_expired(NOW + 60, &mut ch);
    assert_eq!(kinds(&ch), ["del sip:b@1", "aor- bob", "del sip:a@1"]);
    assert_eq!(store.next_expiry(), Some(NOW + 90));
    assert_eq!(store.lookup("alice", NOW + 60).len(), 1);

    // A refresh moves the deadline; the old one no longer fires.
    store.register(&set("alice", "c1", 3, vec![contact("sip:a@2", 200, None)]), NOW + 60, 0, &mut ch).unwrap();
    ch.clear();
    store.purge_expired(NOW + 100, &mut ch);
    assert!(ch.is_empty());
    assert_eq!(store.next_expiry(), Some(NOW + 260));
}

#[test]
fn lookup_orders_by_q_then_newest() {
    let mut store = Store::default();
    let mut ch = Vec::new();
    store.register(&set("a", "c", 1, vec![contact("sip:low", 60, Some(0.1))]), NOW, 0, &mut ch).unwrap();
    store.register(&set("a", "c", 2, vec![contact("sip:none-old", 60, None)]), NOW + 1, 0, &mut ch).unwrap();
    store.register(&set("a", "c", 3, vec![contact("sip:mid", 60, Some(0.5))]), NOW + 2, 0, &mut ch).unwrap();
    store.register(&set("a", "c", 4, vec![contact("sip:none-new", 60, None)]), NOW + 3, 0, &mut ch).unwrap();
    let order: Vec<String> = store.lookup("a", NOW + 3).into_iter().map(|b| b.contact).collect();
    assert_eq!(order, ["sip:none-new", "sip:none-old", "sip:mid", "sip:low"]);
}

#[test]
fn remove_by_key_or_all() {
    let mut store = Store::default();
    let mut ch = Vec::new();
    let two = vec![contact("sip:a@1", 60, None), contact("sip:a@2", 60, None)];
    store.register(&set("alice", "c1", 1, two), NOW, 0, &mut ch).unwrap();
    ch.clear();
    assert_eq!(store.remove("alice", Some("sip:nope"), &mut ch), 0);
    assert_eq!(store.remove("alice", Some("sip:a@2"), &mut ch), 1);
    assert_eq!(kinds(&ch), ["del sip:a@2"]);
    assert_eq!(store.remove("alice", None, &mut ch), 1);
    assert_eq!(store.remove("nobody", None, &mut ch), 0);
    assert_eq!(store.len(), 0);
}
