//! The one test suite every backend passes. Each test is a function over `&dyn Store`; the
//! `backends!` macro instantiates it for SQLite and for PostgreSQL.

use serde_json::json;
use siyu_domain::{Event, parse_event};

use crate::{AppendBatch, Appended, Encoded, KeyRole, NewDecision, Store, StoreError};

const NOW: i64 = 1_793_000_000_000;

fn ev(id: &str, ty: &str, phone: &str) -> Event {
    let mut v = json!({"id": id, "type": ty, "ts": "2026-10-01T00:00:00Z",
                       "identities": {"phone": phone}, "source": "test"});
    if ty == "order" {
        v["props"] = json!({"order_id": id, "amount": 99.9});
    }
    parse_event(&v.to_string(), NOW).unwrap()
}

fn append_one(s: &dyn Store, tenant: i64, events: &[Event]) -> Vec<Appended> {
    let encoded = Encoded::all(events);
    s.append(
        &[AppendBatch {
            tenant,
            events,
            encoded: &encoded,
        }],
        NOW,
    )
    .unwrap()
    .remove(0)
}

fn tenants_and_keys(s: &dyn Store) {
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap();
    assert_eq!(t.name, "acme");
    assert_eq!(t.custom_domain, "private");
    assert!(matches!(
        s.create_tenant("acme", "wh2", "ah2", NOW),
        Err(StoreError::TenantExists(_))
    ));
    let found = s.key_lookup("wh").unwrap().unwrap();
    assert_eq!((found.tenant.id, found.role), (t.id, KeyRole::Write));
    assert_eq!(found.expires_at, None);
    assert_eq!(s.key_lookup("ah").unwrap().unwrap().role, KeyRole::Admin);
    assert!(s.key_lookup("nope").unwrap().is_none());
    s.set_custom_domain(t.id, siyu_domain::Domain::Commercial)
        .unwrap();
    assert_eq!(
        s.key_lookup("wh").unwrap().unwrap().tenant.custom_domain,
        "commercial"
    );
    assert!(matches!(
        s.set_custom_domain(12345, siyu_domain::Domain::Public),
        Err(StoreError::NoSuchTenant(_))
    ));
    let t2 = s.create_tenant("beta", "wh3", "ah3", NOW).unwrap();
    let names: Vec<_> = s.tenants().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["acme", "beta"]);
    assert_ne!(t.id, t2.id);
}

fn rotated_keys_expire_and_are_deleted(s: &dyn Store) {
    let t = s.create_tenant("acme", "w0", "a0", NOW).unwrap().id;
    let other = s.create_tenant("beta", "bw", "ba", NOW).unwrap().id;
    let expiry = |h: &str| s.key_lookup(h).unwrap().map(|k| k.expires_at);

    // At once: the old key is gone, the new one never expires, the admin key is untouched.
    s.rotate_key(t, KeyRole::Write, "w1", NOW, NOW).unwrap();
    assert_eq!(expiry("w0"), None);
    assert_eq!(expiry("w1"), Some(None));
    assert_eq!(s.key_lookup("w1").unwrap().unwrap().role, KeyRole::Write);
    assert_eq!(expiry("a0"), Some(None));

    // With a grace: the old key stays until then.
    s.rotate_key(t, KeyRole::Write, "w2", NOW + 10, NOW + 1_000)
        .unwrap();
    assert_eq!(expiry("w1"), Some(Some(NOW + 1_000)));
    assert_eq!(expiry("w2"), Some(None));
    // A longer grace later does not lengthen w1's; w2 gets the new one.
    s.rotate_key(t, KeyRole::Write, "w3", NOW + 20, NOW + 5_000)
        .unwrap();
    assert_eq!(expiry("w1"), Some(Some(NOW + 1_000)));
    assert_eq!(expiry("w2"), Some(Some(NOW + 5_000)));
    // A rotation past w1's expiry deletes it; one at once ends every older key.
    s.rotate_key(t, KeyRole::Write, "w4", NOW + 1_000, NOW + 9_000)
        .unwrap();
    assert_eq!(expiry("w1"), None);
    s.rotate_key(t, KeyRole::Write, "w5", NOW + 1_001, NOW + 1_001)
        .unwrap();
    assert_eq!(
        (expiry("w2"), expiry("w3"), expiry("w4")),
        (None, None, None)
    );
    assert_eq!(expiry("w5"), Some(None));

    // The admin key rotates on its own; other tenants are untouched.
    s.rotate_key(t, KeyRole::Admin, "a1", NOW, NOW).unwrap();
    assert_eq!((expiry("a0"), expiry("a1")), (None, Some(None)));
    assert_eq!((expiry("bw"), expiry("ba")), (Some(None), Some(None)));
    assert_eq!(s.key_lookup("bw").unwrap().unwrap().tenant.id, other);
    assert!(matches!(
        s.rotate_key(12345, KeyRole::Write, "x", NOW, NOW),
        Err(StoreError::NoSuchTenant(_))
    ));
    assert_eq!(expiry("x"), None);
}

fn append_is_idempotent_per_tenant(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    let events = [
        ev("e1", "follow", "13800138000"),
        ev("e2", "order", "13800138000"),
    ];
    let first = append_one(s, a, &events);
    assert!(matches!(
        first[..],
        [Appended::Stored(_), Appended::Stored(_)]
    ));
    // Same ids again, and one repeated within the batch.
    let again = append_one(
        s,
        a,
        &[
            ev("e2", "order", "13800138000"),
            ev("e3", "follow", "13900139000"),
            ev("e3", "follow", "13900139000"),
        ],
    );
    assert_eq!(again[0], Appended::Duplicate);
    assert!(matches!(again[1], Appended::Stored(_)));
    assert_eq!(again[2], Appended::Duplicate);
    // Another tenant may use the same ids.
    assert!(matches!(
        append_one(s, b, &events)[..],
        [Appended::Stored(_), Appended::Stored(_)]
    ));
    assert_eq!(s.event_count(a).unwrap(), 3);
    assert_eq!(s.event_count(b).unwrap(), 2);
    // The last seq is that of the last stored event (seqs may skip, never go back).
    let Appended::Stored(last) = again[1] else {
        unreachable!()
    };
    assert_eq!(s.last_seq(a).unwrap(), last);
    assert!(s.last_seq(b).unwrap() >= 2);
    assert_eq!(s.last_seq(999_999).unwrap(), 0, "no events: 0");
}

fn scan_returns_events_in_arrival_order_exactly(s: &dyn Store) {
    let t = s.create_tenant("a", "w", "a", NOW).unwrap().id;
    let events = vec![
        ev("e1", "follow", "13800138000"),
        ev("e2", "order", "+8613900139000"),
    ];
    append_one(s, t, &events);
    append_one(s, t, &[ev("e3", "video_like", "13700137000")]);
    let mut got = Vec::new();
    s.scan(t, 0, &mut |e| {
        got.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(got[0].event, events[0]);
    assert_eq!(got[1].event, events[1]);
    assert_eq!(got[1].received_at, NOW);
    let mut later = 0;
    s.scan(t, got[1].seq, &mut |_| {
        later += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(later, 1);
}

fn group_commit_spans_tenants(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    let ea = [ev("x", "follow", "13800138000")];
    let eb = [
        ev("x", "follow", "13800138000"),
        ev("y", "follow", "13800138000"),
    ];
    let (xa, xb) = (Encoded::all(&ea), Encoded::all(&eb));
    let out = s
        .append(
            &[
                AppendBatch {
                    tenant: a,
                    events: &ea,
                    encoded: &xa,
                },
                AppendBatch {
                    tenant: b,
                    events: &eb,
                    encoded: &xb,
                },
            ],
            NOW,
        )
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].len(), 2);
    assert!(matches!(
        s.append(
            &[AppendBatch {
                tenant: 999,
                events: &ea,
                encoded: &xa,
            }],
            NOW
        ),
        Err(StoreError::NoSuchTenant(_))
    ));
    // The failed call stored nothing.
    assert_eq!(s.event_count(a).unwrap(), 1);
}

fn reopening_keeps_everything(open: &dyn Fn() -> std::sync::Arc<dyn Store>) {
    let s = open();
    let t = s.create_tenant("a", "w", "a", NOW).unwrap().id;
    append_one(&*s, t, &[ev("e1", "follow", "13800138000")]);
    drop(s);
    let s = open();
    assert_eq!(s.event_count(t).unwrap(), 1);
    assert_eq!(
        append_one(&*s, t, &[ev("e1", "follow", "13800138000")]),
        [Appended::Duplicate]
    );
    // Sequence numbers keep growing across reopenings (gaps are allowed: PostgreSQL reserves
    // a range per batch, duplicates included).
    let r = append_one(&*s, t, &[ev("e2", "follow", "13800138000")]);
    assert!(matches!(r[..], [Appended::Stored(n)] if n >= 2), "{r:?}");
}

fn dec<'a>(
    kind: &'a str,
    fan_a: i64,
    fan_b: i64,
    after_seq: i64,
    value: Option<&'a str>,
) -> NewDecision<'a> {
    NewDecision {
        kind,
        fan_a,
        fan_b,
        after_seq,
        value,
        created_at: NOW,
    }
}

fn decisions_are_kept_in_order_per_tenant(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    assert_eq!(
        s.add_decision(a, &dec("distinct", 3, 7, 10, None)).unwrap(),
        1
    );
    assert_eq!(
        s.add_decision(a, &dec("confirm", 1, 2, 4, None)).unwrap(),
        2
    );
    assert_eq!(
        s.add_decision(b, &dec("shared", 0, 0, 0, Some("phone:+8613800138000")))
            .unwrap(),
        1
    );
    let d = s.decisions(a, 0).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0].kind.as_str(), d[0].fan_a, d[0].fan_b, d[0].after_seq),
        ("distinct", 3, 7, 10)
    );
    assert_eq!(s.decisions(a, 1).unwrap().len(), 1);
    assert_eq!(
        s.decisions(b, 0).unwrap()[0].value.as_deref(),
        Some("phone:+8613800138000")
    );
    assert!(
        s.add_decision(a, &dec("maybe", 1, 2, 4, None)).is_err(),
        "kind is checked"
    );
    append_one(s, a, &[ev("e1", "follow", "13800138000")]);
    let got = s.event_at(a, 1).unwrap().unwrap();
    assert_eq!(got.event.id.as_str(), "e1");
    assert!(s.event_at(a, 99).unwrap().is_none());
    // Many at once: in seq order, repeats and numbers not stored left out, another tenant's
    // events never.
    let many: Vec<_> = (2..=600)
        .map(|i| ev(&format!("m{i}"), "follow", "13800138000"))
        .collect();
    append_one(s, a, &many);
    append_one(s, b, &[ev("other", "follow", "13800138000")]);
    let got: Vec<i64> = s
        .events_at(a, &[600, 3, 3, 1, 9999, 257, 256])
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, [1, 3, 256, 257, 600]);
    let all: Vec<i64> = (1..=2000).collect();
    let got = s.events_at(a, &all).unwrap();
    assert_eq!(got.len(), 600);
    assert!(got.iter().all(|e| e.event.id.as_str() != "other"));
    assert!(s.events_at(a, &[]).unwrap().is_empty());
}

fn rules_are_versioned(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    assert_eq!(s.rules(a).unwrap(), None);
    assert_eq!(s.set_rules(a, "x = 1").unwrap(), 1);
    assert_eq!(s.set_rules(a, "x = 2").unwrap(), 2);
    assert_eq!(s.rules(a).unwrap(), Some((2, "x = 2".to_string())));
}

fn transitions_are_appended_and_read_in_order(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let row = |fan: i64, from: Option<&str>, to: &str, cause: &str, seq: Option<i64>| {
        crate::StoredTransition {
            id: 0,
            fan,
            from: from.map(str::to_string),
            to: to.to_string(),
            at: NOW,
            cause: cause.to_string(),
            seq,
            event_id: seq.map(|s| format!("e{s}")),
        }
    };
    let mark = |clock: i64, seq: i64| crate::LiveMark {
        clock,
        seq,
        rules_version: 0,
    };
    assert_eq!(s.live_mark(a).unwrap(), None);
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[
                row(1, None, "passerby", "event", Some(1)),
                row(2, None, "potential", "event", Some(2)),
            ],
            ..Default::default()
        },
        &mark(NOW, 2),
    )
    .unwrap();
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[row(1, Some("passerby"), "favorable", "event", Some(3))],
            ..Default::default()
        },
        &mark(NOW + 1, 3),
    )
    .unwrap();
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[row(1, Some("favorable"), "passerby", "decay", None)],
            ..Default::default()
        },
        &mark(NOW + 2, 3),
    )
    .unwrap();
    // Rebuild causes; and an empty append still moves the mark.
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[
                row(3, None, "favorable", "identity", None),
                row(2, Some("potential"), "passerby", "rules", None),
            ],
            ..Default::default()
        },
        &mark(NOW + 3, 3),
    )
    .unwrap();
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[],
            ..Default::default()
        },
        &mark(NOW + 9, 4),
    )
    .unwrap();
    assert_eq!(s.live_mark(a).unwrap(), Some(mark(NOW + 9, 4)));
    let all = s.transitions(a, None, 0, 100).unwrap();
    // Ids are stream positions: after the event each record's mark had reached.
    let p = siyu_domain::trigger::event_position;
    let ids = [p(2) + 1, p(2) + 2, p(3) + 1, p(3) + 2, p(3) + 3, p(3) + 4];
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    let mine = s.transitions(a, Some(&[1]), 0, 100).unwrap();
    assert_eq!(mine.len(), 3);
    assert_eq!((mine[2].cause.as_str(), mine[2].seq), ("decay", None));
    assert_eq!(mine[1].event_id.as_deref(), Some("e3"));
    let two = s.transitions(a, Some(&[1, 3]), 0, 100).unwrap();
    assert_eq!(
        two.iter().map(|t| t.id).collect::<Vec<_>>(),
        [ids[0], ids[2], ids[3], ids[4]]
    );
    assert!(s.transitions(a, Some(&[]), 0, 100).unwrap().is_empty());
    assert_eq!(s.transitions(a, None, ids[1], 1).unwrap()[0].id, ids[2]);
    let mut recorded = s.recorded_layers(a).unwrap();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            (1, "passerby".to_string()),
            (2, "passerby".to_string()),
            (3, "favorable".to_string())
        ]
    );
    // Another tenant's mark and transitions are its own.
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    assert_eq!(s.live_mark(b).unwrap(), None);
    assert!(s.recorded_layers(b).unwrap().is_empty());
}

/// The trigger stream: events and the three derived logs in one order, by position.
fn triggers_are_one_stream_of_events_and_what_they_caused(s: &dyn Store) {
    use crate::StoredTrigger;
    use crate::triggers::{TriggerQuery, read};
    use siyu_domain::trigger::{TriggerType, TypeSet, event_position as p};
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    append_one(
        s,
        a,
        &[
            ev("e1", "follow", "13800000001"),
            ev("e2", "order", "13800000002"),
        ],
    );
    append_one(s, b, &[ev("x1", "follow", "13800000009")]);
    let t = |fan: i64, seq: Option<i64>| crate::StoredTransition {
        id: 0,
        fan,
        from: None,
        to: "passerby".into(),
        at: NOW,
        cause: if seq.is_some() { "event" } else { "decay" }.into(),
        seq,
        event_id: seq.map(|s| format!("e{s}")),
    };
    let c = |fan: i64, entered: bool, seq: Option<i64>| crate::StoredSegmentChange {
        id: 0,
        segment: 7,
        fan,
        entered,
        at: NOW,
        cause: if seq.is_some() { "event" } else { "time" }.into(),
        seq,
        event_id: None,
    };
    let tag = |fan: i64, added: bool, source: &str| crate::StoredTagChange {
        id: 0,
        fan,
        tag: "vip".into(),
        added,
        at: NOW,
        source: source.into(),
    };
    let mark = |seq: i64| crate::LiveMark {
        clock: NOW,
        seq,
        rules_version: 0,
    };
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[t(2, Some(2)), t(1, Some(1))],
            segment_changes: &[c(2, true, Some(2)), c(1, false, None)],
            tag_changes: &[tag(2, true, "segment:7")],
        },
        &mark(2),
    )
    .unwrap();
    // A manual tag is placed after the last event stored (3, not applied by the mark yet).
    append_one(s, a, &[ev("e3", "follow", "13800000003")]);
    s.add_tag_changes(a, &[tag(1, true, "manual")]).unwrap();
    let q = |after: i64, types: TypeSet, limit: usize| TriggerQuery {
        after,
        before: i64::MAX,
        types,
        fans: None,
        seqs: None,
        limit,
    };
    let all = read(s, a, &q(0, TypeSet::ALL, 100)).unwrap();
    let shape: Vec<(i64, &str)> = all
        .triggers
        .iter()
        .map(|r| {
            let kind = match r {
                StoredTrigger::Event(e) => e.id.as_str(),
                StoredTrigger::Transition(_) => "layer",
                StoredTrigger::Segment(s) if s.entered => "entered",
                StoredTrigger::Segment(_) => "exited",
                StoredTrigger::Tag(t) => t.source.as_str(),
            };
            (r.position(), kind)
        })
        .collect();
    assert_eq!(
        shape,
        [
            (p(1), "e1"),
            (p(2), "e2"),
            (p(2) + 1, "layer"),
            (p(2) + 2, "layer"),
            (p(2) + 3, "entered"),
            (p(2) + 4, "exited"),
            (p(2) + 5, "segment:7"),
            (p(3), "e3"),
            (p(3) + 1, "manual"),
        ]
    );
    assert_eq!(all.scanned_to, i64::MAX - 1, "nothing more up to the end");
    // Within a record, each log keeps the order the engine derived it in.
    let StoredTrigger::Transition(first) = &all.triggers[2] else {
        panic!("{:?}", all.triggers[2])
    };
    assert_eq!(first.seq, Some(2));
    // Paging: a full page ends at its last row, and the next page starts after it.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = read(s, a, &q(after, TypeSet::ALL, 2)).unwrap();
        assert!(page.triggers.len() <= 2);
        seen.extend(page.triggers.iter().map(StoredTrigger::position));
        if page.triggers.is_empty() {
            break;
        }
        assert!(page.scanned_to > after);
        after = page.scanned_to;
    }
    assert_eq!(
        seen,
        shape.iter().map(|s| s.0).collect::<Vec<_>>(),
        "pages see everything once"
    );
    // Types: the log filters, and the direction of a change.
    let entered = read(s, a, &q(0, TypeSet::of([TriggerType::SegmentEntered]), 100)).unwrap();
    assert_eq!(entered.triggers.len(), 1);
    let tags = read(
        s,
        a,
        &q(
            0,
            TypeSet::of([TriggerType::TagAdded, TriggerType::Event]),
            100,
        ),
    )
    .unwrap();
    assert_eq!(tags.triggers.len(), 5);
    assert!(
        read(s, a, &q(0, TypeSet::of([TriggerType::TagRemoved]), 100))
            .unwrap()
            .triggers
            .is_empty()
    );
    // A reader's view ends where the engine stands.
    let upto2 = read(
        s,
        a,
        &TriggerQuery {
            before: p(3),
            ..q(0, TypeSet::ALL, 100)
        },
    )
    .unwrap();
    assert_eq!(upto2.triggers.len(), 7);
    assert_eq!(upto2.scanned_to, p(3) - 1);
    // One fan: its derived rows, and the events the caller names as its own.
    let fan2 = read(
        s,
        a,
        &TriggerQuery {
            fans: Some(&[2]),
            seqs: Some(&[2]),
            ..q(0, TypeSet::ALL, 100)
        },
    )
    .unwrap();
    assert_eq!(
        fan2.triggers
            .iter()
            .map(StoredTrigger::position)
            .collect::<Vec<_>>(),
        [p(2), p(2) + 1, p(2) + 3, p(2) + 5]
    );
    // Another tenant's stream is its own.
    let other = read(s, b, &q(0, TypeSet::ALL, 100)).unwrap();
    assert_eq!(other.triggers.len(), 1);
    assert_eq!(s.event_heads(b, 0, 10, None, 10).unwrap()[0].id, "x1");
    // Cursors: per consumer, moved either way, listed by name.
    assert_eq!(s.trigger_cursor(a, "journeys").unwrap(), None);
    s.set_trigger_cursor(a, "journeys", p(2) + 3, NOW).unwrap();
    s.set_trigger_cursor(a, "console", 5, NOW).unwrap();
    s.set_trigger_cursor(a, "journeys", p(2), NOW + 1).unwrap();
    let got = s.trigger_cursor(a, "journeys").unwrap().unwrap();
    assert_eq!((got.after, got.updated_at), (p(2), NOW + 1));
    let names: Vec<String> = s
        .trigger_cursors(a)
        .unwrap()
        .into_iter()
        .map(|c| c.consumer)
        .collect();
    assert_eq!(names, ["console", "journeys"]);
    assert!(s.trigger_cursors(b).unwrap().is_empty());
}

fn connectors_keep_settings_and_checkpoints_per_tenant(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    assert!(s.connector(a, "douyin").unwrap().is_none());
    assert!(matches!(
        s.set_connector_state(a, "douyin", "{}"),
        Err(StoreError::NoSuchConnector { .. })
    ));
    s.set_connector(a, "douyin", r#"{"client_secret":"s1"}"#, NOW)
        .unwrap();
    s.set_connector(b, "douyin", r#"{"client_secret":"s2"}"#, NOW)
        .unwrap();
    s.set_connector(a, "oceanengine", r#"{"advertiser_id":"1"}"#, NOW)
        .unwrap();
    s.set_connector_state(a, "oceanengine", r#"{"page":2}"#)
        .unwrap();
    // Replacing the settings keeps the poller's position.
    s.set_connector(a, "oceanengine", r#"{"advertiser_id":"2"}"#, NOW + 1)
        .unwrap();
    let got = s.connector(a, "oceanengine").unwrap().unwrap();
    assert_eq!(got.config, r#"{"advertiser_id":"2"}"#);
    assert_eq!(got.state.as_deref(), Some(r#"{"page":2}"#));
    assert_eq!(got.updated_at, NOW + 1);
    assert!(
        !format!("{got:?}").contains("advertiser_id"),
        "Debug hides the settings"
    );
    let all = s.connectors("douyin").unwrap();
    assert_eq!(
        all.iter()
            .map(|(t, c)| (*t, c.config.as_str()))
            .collect::<Vec<_>>(),
        [
            (a, r#"{"client_secret":"s1"}"#),
            (b, r#"{"client_secret":"s2"}"#)
        ]
    );
    assert!(s.connector(b, "oceanengine").unwrap().is_none());
}

fn segments_their_changes_and_tags(s: &dyn Store) {
    let a = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let b = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    let one = s
        .create_segment(a, "高意向", "layer >= favorable", Some("高意向"), NOW)
        .unwrap();
    assert_eq!(one.id, 1);
    assert!(matches!(
        s.create_segment(a, "高意向", "follows", None, NOW),
        Err(crate::StoreError::SegmentExists(_))
    ));
    let two = s
        .create_segment(a, "buyers", "count(order, 30d) >= 1", None, NOW)
        .unwrap();
    assert_eq!(
        s.create_segment(b, "buyers", "follows", None, NOW)
            .unwrap()
            .id,
        1
    );
    assert_eq!(
        s.segments(a)
            .unwrap()
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["高意向", "buyers"]
    );
    assert!(s.delete_segment(a, two.id, NOW + 1).unwrap());
    assert!(
        !s.delete_segment(a, two.id, NOW + 1).unwrap(),
        "already gone"
    );
    assert_eq!(s.segments(a).unwrap().len(), 1);
    // The name is free again, under a new id.
    assert_eq!(
        s.create_segment(a, "buyers", "follows", None, NOW)
            .unwrap()
            .id,
        3
    );

    let change = |segment: i64, fan: i64, entered: bool, cause: &str| crate::StoredSegmentChange {
        id: 0,
        segment,
        fan,
        entered,
        at: NOW,
        cause: cause.into(),
        seq: (cause == "event").then_some(9),
        event_id: (cause == "event").then(|| "e9".into()),
    };
    let tag = |fan: i64, added: bool, source: &str| crate::StoredTagChange {
        id: 0,
        fan,
        tag: "高意向".into(),
        added,
        at: NOW,
        source: source.into(),
    };
    let mark = crate::LiveMark {
        clock: NOW,
        seq: 9,
        rules_version: 0,
    };
    s.record_live(
        a,
        &crate::LiveRecord {
            transitions: &[],
            segment_changes: &[change(1, 5, true, "created"), change(1, 6, true, "event")],
            tag_changes: &[tag(5, true, "segment:1"), tag(6, true, "segment:1")],
        },
        &mark,
    )
    .unwrap();
    s.record_live(
        a,
        &crate::LiveRecord {
            segment_changes: &[change(1, 5, false, "time")],
            tag_changes: &[tag(5, false, "segment:1")],
            ..Default::default()
        },
        &mark,
    )
    .unwrap();
    s.add_tag_changes(a, &[tag(7, true, "manual")]).unwrap();
    let all = s.segment_changes(a, None, None, 0, 100).unwrap();
    // Stream positions after the mark's event, in the order derived.
    let p9 = siyu_domain::trigger::event_position(9);
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
        [p9 + 1, p9 + 2, p9 + 5]
    );
    assert_eq!(
        (
            all[1].cause.as_str(),
            all[1].seq,
            all[1].event_id.as_deref()
        ),
        ("event", Some(9), Some("e9"))
    );
    assert_eq!(
        s.segment_changes(a, Some(1), Some(&[5]), 0, 100)
            .unwrap()
            .len(),
        2
    );
    assert!(
        s.segment_changes(a, Some(2), None, 0, 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.segment_changes(a, None, None, p9 + 1, 1).unwrap()[0].id,
        p9 + 2
    );
    assert_eq!(s.recorded_members(a).unwrap(), [(1, 6)]);
    let tags = s.tag_changes(a, None, 0, 100).unwrap();
    assert_eq!(
        tags.iter().map(|t| t.id).collect::<Vec<_>>(),
        [p9 + 3, p9 + 4, p9 + 6, p9 + 7]
    );
    assert_eq!((tags[3].fan, tags[3].source.as_str()), (7, "manual"));
    assert_eq!(s.tag_changes(a, Some(&[5]), 0, 100).unwrap().len(), 2);
    assert!(s.tag_changes(b, None, 0, 100).unwrap().is_empty());
    assert!(s.recorded_members(b).unwrap().is_empty());
}

fn snapshots_keep_the_furthest_along(s: &dyn Store) {
    use crate::StoredSnapshot;
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap();
    let other = s.create_tenant("beta", "wh2", "ah2", NOW).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap(), None);
    let snap = |format, last_seq, decisions_seen, data: &[u8]| StoredSnapshot {
        format,
        last_seq,
        decisions_seen,
        created_at: NOW,
        data: data.to_vec(),
    };
    let first = snap(1, 100, 2, &[0, 1, 2, 255]);
    s.put_snapshot(t.id, &first).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap().as_ref(), Some(&first));
    assert_eq!(s.snapshot(other.id).unwrap(), None, "per tenant");
    // An older one does not replace it...
    s.put_snapshot(t.id, &snap(1, 99, 5, b"old")).unwrap();
    s.put_snapshot(t.id, &snap(1, 100, 1, b"old")).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap().as_ref(), Some(&first));
    // ...a later one does (the same event with later decisions too)...
    let later = snap(1, 100, 3, b"later");
    s.put_snapshot(t.id, &later).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap().as_ref(), Some(&later));
    // ...and so does one of another format, whatever its position.
    let other_format = snap(2, 10, 0, &vec![7u8; 1 << 20]);
    s.put_snapshot(t.id, &other_format).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap().as_ref(), Some(&other_format));
    // One larger than a part is stored in parts and read back whole.
    let mut big = vec![0u8; crate::SNAPSHOT_PART_BYTES * 2 + 3];
    for (i, b) in big.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let big = snap(2, 20, 0, &big);
    s.put_snapshot(t.id, &big).unwrap();
    assert!(
        s.snapshot(t.id).unwrap().as_ref() == Some(&big),
        "three parts, in order"
    );
    // A smaller one after it leaves no part of the bigger behind.
    let small = snap(2, 30, 0, b"small");
    s.put_snapshot(t.id, &small).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap().as_ref(), Some(&small));
    s.drop_snapshot(t.id).unwrap();
    assert_eq!(s.snapshot(t.id).unwrap(), None);
    s.put_snapshot(t.id, &first).unwrap();
    assert_eq!(
        s.snapshot(t.id).unwrap().as_ref(),
        Some(&first),
        "anything after a drop"
    );
}

/// Two handles on one database, as two nodes: a lease is held by one at a time, passes on
/// expiry or release with a greater token, and the stale holder's writes are refused.
fn leases_pass_between_nodes_and_fence_stale_writes(open: &dyn Fn() -> std::sync::Arc<dyn Store>) {
    use crate::{LiveMark, LiveRecord, Node};
    let (a, b) = (open(), open());
    let t = a.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    let node = |id: &str, until| Node {
        id: id.into(),
        addr: format!("{id}:1"),
        secret: "s".into(),
        expires_at: until,
    };
    a.heartbeat(&node("a", NOW + 10)).unwrap();
    b.heartbeat(&node("b", NOW + 5)).unwrap();
    let ids = |now| -> Vec<String> { a.nodes(now).unwrap().into_iter().map(|n| n.id).collect() };
    assert_eq!(ids(NOW), ["a", "b"]);
    assert_eq!(ids(NOW + 5), ["a"], "b's heartbeat expired");
    b.remove_node("b").unwrap();
    a.require_leases();
    b.require_leases();
    // Without a lease, nothing is written.
    let e = ev("e1", "live_watch", "13800138000");
    assert!(matches!(
        a.append(&[AppendBatch { tenant: t, events: std::slice::from_ref(&e), encoded: &Encoded::all(std::slice::from_ref(&e)) }], NOW),
        Err(StoreError::NotOwner(x)) if x == t
    ));
    let la = a.acquire_lease(t, "a", NOW, NOW + 100).unwrap().unwrap();
    assert_eq!(la.token, 1);
    assert!(
        b.acquire_lease(t, "b", NOW + 50, NOW + 150)
            .unwrap()
            .is_none(),
        "a holds it"
    );
    assert_eq!(
        append_one(&*a, t, std::slice::from_ref(&e)),
        [Appended::Stored(1)]
    );
    assert!(a.renew_lease(t, "a", 1, NOW + 200).unwrap());
    // a stalls past its lease; b takes over with a greater token.
    let lb = b
        .acquire_lease(t, "b", NOW + 200, NOW + 300)
        .unwrap()
        .unwrap();
    assert_eq!(lb.token, 2);
    let mark = LiveMark {
        clock: NOW,
        seq: 1,
        rules_version: 0,
    };
    assert!(matches!(
        a.record_live(t, &LiveRecord::default(), &mark),
        Err(StoreError::NotOwner(_))
    ));
    assert!(matches!(
        a.append(
            &[AppendBatch {
                tenant: t,
                events: std::slice::from_ref(&e),
                encoded: &Encoded::all(std::slice::from_ref(&e))
            }],
            NOW
        ),
        Err(StoreError::NotOwner(_))
    ));
    assert!(
        !a.renew_lease(t, "a", 1, NOW + 400).unwrap(),
        "a's lease is gone"
    );
    b.record_live(t, &LiveRecord::default(), &mark).unwrap();
    assert_eq!(b.live_mark(t).unwrap(), Some(mark));
    // Released, it is free at once; the same node taking it again keeps its token.
    b.release_lease(t, "b", 2).unwrap();
    assert!(matches!(
        b.record_live(t, &LiveRecord::default(), &mark),
        Err(StoreError::NotOwner(_))
    ));
    let again = a
        .acquire_lease(t, "a", NOW + 201, NOW + 500)
        .unwrap()
        .unwrap();
    assert_eq!(again.token, 3);
    assert_eq!(
        a.acquire_lease(t, "a", NOW + 202, NOW + 600)
            .unwrap()
            .unwrap()
            .token,
        3
    );
    let leases = b.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].node.as_str(), leases[0].token), ("a", 3));
    assert!(leases[0].live(NOW + 599) && !leases[0].live(NOW + 600));
}

// Journeys (see `crate::journeys`).

mod j {
    //! Rows for the journeys tests: only what a test looks at is an argument.
    use crate::journeys::*;

    pub fn run(id: i64, journey: &str, fan: i64, key: &str) -> StoredRun {
        StoredRun {
            id,
            journey: journey.into(),
            version: 1,
            fan,
            entry_key: key.into(),
            state: 0,
            step: 0,
            wake_at: None,
            entered_at: super::NOW,
            goal_by: None,
            updated_at: super::NOW,
            data: "{}".into(),
        }
    }

    pub fn line(
        run: i64,
        n: i32,
        step: Option<&str>,
        kind: i16,
        reason: Option<&str>,
    ) -> StoredRunEvent {
        StoredRunEvent {
            run,
            n,
            at: super::NOW + i64::from(n),
            step: step.map(Into::into),
            kind,
            reason: reason.map(Into::into),
            detail: None,
        }
    }

    pub fn send(id: i64, channel: &str, run: i64, key: &str, next_at: i64) -> StoredOutbox {
        StoredOutbox {
            id,
            channel: channel.into(),
            run,
            step: "hello".into(),
            fan: 10,
            key: key.into(),
            payload: r#"{"text":"hi"}"#.into(),
            state: 0,
            attempts: 0,
            next_at,
            created_at: super::NOW,
            settled_at: None,
            answer: None,
        }
    }

    pub fn task(id: i64, team: &str) -> StoredTask {
        StoredTask {
            id,
            team: team.into(),
            text: "call back".into(),
            fan: Some(10),
            run: Some(1),
            step: Some("call".into()),
            state: 0,
            agent: None,
            outcome: None,
            created_at: super::NOW,
            due_at: Some(super::NOW + 1000),
            updated_at: super::NOW,
        }
    }

    pub fn variant(step: &str, arm: &str, sent: i64, converted: i64, failed: i64) -> VariantDelta {
        VariantDelta {
            journey: "welcome".into(),
            version: 1,
            step: step.into(),
            arm: arm.into(),
            sent,
            converted,
            failed,
        }
    }

    pub fn sends(fan: i64, channel: &str, day: i32, count: i32) -> FanSends {
        FanSends {
            fan,
            channel: channel.into(),
            day,
            count,
        }
    }
}

fn journeys_are_versioned_and_paused(s: &dyn Store) {
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let other = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    assert!(s.journeys(t).unwrap().is_empty());
    assert_eq!(s.put_journey(t, "welcome", "v1", 40, NOW).unwrap(), 1);
    assert_eq!(s.put_journey(t, "nurture", "n1", 0, NOW).unwrap(), 1);
    assert!(s.set_journey_paused(t, "welcome", true, NOW + 5).unwrap());
    // A new version is current and stays paused.
    assert_eq!(s.put_journey(t, "welcome", "v2", 99, NOW + 10).unwrap(), 2);
    let all = s.journeys(t).unwrap();
    assert_eq!(
        all.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["nurture", "welcome"]
    );
    let w = &all[1];
    assert_eq!(
        (
            w.version,
            w.definition.as_str(),
            w.paused,
            w.applied_at,
            w.updated_at,
            w.starts_after
        ),
        (2, "v2", true, NOW + 10, NOW + 10, 40)
    );
    assert!(!all[0].paused);
    // Runs finish on the version they started.
    assert_eq!(
        s.journey_version(t, "welcome", 1).unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(s.journey_version(t, "welcome", 3).unwrap(), None);
    assert!(s.set_journey_paused(t, "welcome", false, NOW + 20).unwrap());
    let w = s.journeys(t).unwrap().remove(1);
    assert_eq!(
        (w.paused, w.applied_at, w.updated_at),
        (false, NOW + 10, NOW + 20)
    );
    assert!(!s.set_journey_paused(t, "nope", true, NOW).unwrap());
    // Per tenant.
    assert!(s.journeys(other).unwrap().is_empty());
    assert_eq!(s.put_journey(other, "welcome", "x", 0, NOW).unwrap(), 1);
    assert_eq!(s.journey_version(other, "welcome", 2).unwrap(), None);
}

fn a_batch_stores_every_row_type(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let other = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    assert_eq!(s.journey_ids(t).unwrap(), JourneyIds::default());
    let mut r1 = j::run(1, "welcome", 10, "welcome:10:e1");
    r1.wake_at = Some(NOW + 60_000);
    r1.goal_by = Some(NOW + 86_400_000);
    let r2 = j::run(2, "welcome", 11, "welcome:11:e2");
    let r3 = j::run(3, "nurture", 10, "nurture:10:d1");
    let history = [
        j::line(1, 1, None, 0, None),
        j::line(1, 2, Some("hello"), 1, None),
        j::line(2, 1, None, 0, None),
        j::line(2, 2, Some("hello"), 2, Some("opted_out")),
        j::line(3, 1, None, 0, None),
    ];
    let mut history = history.to_vec();
    history[1].detail = Some(r#"{"arm":"a"}"#.into());
    let outbox = [
        j::send(1, "webhook", 1, "k1", NOW),
        j::send(2, "douyin_im", 3, "k2", NOW),
    ];
    let tasks = [j::task(1, "sales")];
    let fans = [StoredFanState {
        fan: 10,
        opted_out_at: Some(NOW),
        opt_out_reason: Some("im:退订".into()),
        authorized_at: Some(NOW - 1),
        im_in_at: Some(NOW - 2),
        im_conversation: Some("c1".into()),
        im_message: Some("m1".into()),
        im_replies: 2,
        last_send_at: Some(NOW),
        last_send_run: Some(1),
        last_send_step: Some("hello".into()),
    }];
    let variants = [j::variant("hello", "a", 1, 0, 0)];
    let sends = [j::sends(10, "webhook", 20_000, 1)];
    s.commit_runs(
        t,
        &RunBatch {
            new_runs: &[r1.clone(), r2.clone(), r3.clone()],
            history: &history,
            outbox: &outbox,
            tasks: &tasks,
            variants: &variants,
            fan_states: &fans,
            fan_sends: &sends,
            cursor: Some(("journeys", 42)),
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    // A second batch replaces a run (its identity kept) and adds to its history.
    let mut r2b = r2.clone();
    r2b.state = 100;
    r2b.step = 3;
    r2b.updated_at = NOW + 1;
    r2b.data = r#"{"done":true}"#.into();
    r2b.entry_key = "ignored".into();
    s.commit_runs(
        t,
        &RunBatch {
            updated_runs: std::slice::from_ref(&r2b),
            history: &[j::line(2, 3, None, 3, None)],
            now: NOW + 1,
            ..RunBatch::default()
        },
    )
    .unwrap();
    r2b.entry_key = r2.entry_key.clone();
    assert_eq!(
        s.journey_ids(t).unwrap(),
        JourneyIds {
            run: 3,
            outbox: 2,
            task: 1
        }
    );
    assert_eq!(s.journey_ids(other).unwrap(), JourneyIds::default());
    assert_eq!(s.run(t, 1).unwrap(), Some(r1.clone()));
    assert_eq!(s.run(t, 2).unwrap(), Some(r2b.clone()));
    assert_eq!(s.run(t, 9).unwrap(), None);
    assert_eq!(s.run(other, 1).unwrap(), None);
    assert_eq!(s.run_history(t, 1).unwrap(), history[..2]);
    assert_eq!(s.run_history(t, 2).unwrap().len(), 3);
    assert_eq!(
        s.runs_of(t, &[10, 11], false).unwrap(),
        [r1.clone(), r2b.clone(), r3.clone()]
    );
    assert_eq!(
        s.runs_of(t, &[10, 11], true).unwrap(),
        [r1.clone(), r3.clone()]
    );
    assert!(s.runs_of(t, &[], false).unwrap().is_empty());
    let count = |version, step: Option<&str>, kind, reason: Option<&str>, count| StepCount {
        version,
        step: step.map(Into::into),
        kind,
        reason: reason.map(Into::into),
        count,
    };
    assert_eq!(
        s.step_counts(t, "welcome").unwrap(),
        [
            count(1, None, 0, None, 2),
            count(1, None, 3, None, 1),
            count(1, Some("hello"), 1, None, 1),
            count(1, Some("hello"), 2, Some("opted_out"), 1),
        ]
    );
    assert_eq!(
        s.run_counts(t, "welcome").unwrap(),
        [
            RunCount {
                version: 1,
                state: 0,
                step: 0,
                count: 1
            },
            RunCount {
                version: 1,
                state: 100,
                step: 3,
                count: 1
            },
        ]
    );
    assert_eq!(
        s.variants(t, "welcome").unwrap(),
        [StoredVariant {
            version: 1,
            step: "hello".into(),
            arm: "a".into(),
            sent: 1,
            converted: 0,
            failed: 0
        }]
    );
    assert!(s.variants(t, "nurture").unwrap().is_empty());
    assert_eq!(s.fan_states(t, &[10, 11]).unwrap(), fans);
    assert!(s.fan_states(other, &[10]).unwrap().is_empty());
    assert_eq!(s.fan_sends(t, &[10, 11], 20_000).unwrap(), sends);
    assert!(s.fan_sends(t, &[10], 20_001).unwrap().is_empty());
    let all = |f: OutboxFilter<'_>| -> Vec<i64> {
        s.outbox(t, &OutboxFilter { limit: 10, ..f })
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect()
    };
    assert_eq!(all(OutboxFilter::default()), [2, 1], "newest first");
    assert_eq!(
        s.outbox(
            t,
            &OutboxFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap()[1],
        outbox[0]
    );
    assert_eq!(
        all(OutboxFilter {
            journey: Some("nurture"),
            ..Default::default()
        }),
        [2]
    );
    assert_eq!(
        all(OutboxFilter {
            channel: Some("webhook"),
            ..Default::default()
        }),
        [1]
    );
    assert_eq!(
        all(OutboxFilter {
            fan: Some(11),
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        all(OutboxFilter {
            state: Some(1),
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        s.outbox(
            t,
            &OutboxFilter {
                limit: 1,
                ..Default::default()
            }
        )
        .unwrap()
        .len(),
        1
    );
    assert_eq!(s.task(t, 1).unwrap(), Some(tasks[0].clone()));
    assert_eq!(s.task(other, 1).unwrap(), None);
    assert_eq!(
        s.tasks(
            t,
            &TaskFilter {
                team: Some("sales"),
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap(),
        tasks
    );
    assert!(
        s.tasks(
            t,
            &TaskFilter {
                team: Some("ops"),
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap()
        .is_empty()
    );
    let cursor = s.trigger_cursor(t, "journeys").unwrap().unwrap();
    assert_eq!(
        (cursor.after, cursor.updated_at),
        (42, NOW),
        "the second batch had no cursor"
    );
    // A replaced run that is not stored fails its batch.
    let e = s
        .commit_runs(
            t,
            &RunBatch {
                updated_runs: &[j::run(7, "welcome", 1, "x")],
                history: &[j::line(1, 3, None, 0, None)],
                now: NOW,
                ..RunBatch::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert_eq!(s.run_history(t, 1).unwrap().len(), 2);
}

/// A batch whose entry key or outbox key is already stored (or twice in it) stores nothing.
fn a_duplicate_key_fails_the_whole_batch(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    s.commit_runs(
        t,
        &RunBatch {
            new_runs: &[j::run(1, "welcome", 10, "e1")],
            history: &[j::line(1, 1, None, 0, None)],
            outbox: &[j::send(1, "webhook", 1, "k1", NOW)],
            cursor: Some(("journeys", 5)),
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let before = |s: &dyn Store| {
        (
            s.journey_ids(t).unwrap(),
            s.runs_of(t, &[10, 11, 12], false).unwrap(),
            s.run_history(t, 1).unwrap(),
            s.run_history(t, 2).unwrap(),
            s.outbox(
                t,
                &OutboxFilter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap(),
            s.tasks(
                t,
                &TaskFilter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap(),
            s.fan_sends(t, &[10], 1).unwrap(),
            s.trigger_cursor(t, "journeys").unwrap(),
        )
    };
    let held = before(s);
    let attempt = |runs: &[StoredRun], outbox: &[StoredOutbox]| {
        s.commit_runs(
            t,
            &RunBatch {
                new_runs: runs,
                updated_runs: &[j::run(1, "welcome", 10, "e1")],
                history: &[j::line(1, 2, None, 0, None), j::line(2, 1, None, 0, None)],
                outbox,
                tasks: &[j::task(1, "sales")],
                fan_sends: &[j::sends(10, "webhook", 1, 1)],
                cursor: Some(("journeys", 9)),
                now: NOW + 1,
                ..RunBatch::default()
            },
        )
        .unwrap_err()
    };
    let named = |e: StoreError, key: &str| match e {
        StoreError::Corrupt(m) => assert!(m.contains(&format!("{key:?}")), "{m}"),
        e => panic!("{e}"),
    };
    // An entry key already stored.
    named(
        attempt(
            &[
                j::run(2, "welcome", 11, "e2"),
                j::run(3, "welcome", 12, "e1"),
            ],
            &[],
        ),
        "e1",
    );
    assert_eq!(before(s), held);
    // An outbox key already stored.
    named(
        attempt(
            &[j::run(2, "welcome", 11, "e2")],
            &[
                j::send(2, "webhook", 2, "k2", NOW),
                j::send(3, "webhook", 2, "k1", NOW),
            ],
        ),
        "k1",
    );
    assert_eq!(before(s), held);
    // Twice in one batch.
    named(
        attempt(
            &[
                j::run(2, "welcome", 11, "e2"),
                j::run(3, "welcome", 12, "e2"),
            ],
            &[],
        ),
        "e2",
    );
    named(
        attempt(
            &[j::run(2, "welcome", 11, "e2")],
            &[
                j::send(2, "webhook", 2, "k2", NOW),
                j::send(3, "webhook", 2, "k2", NOW),
            ],
        ),
        "k2",
    );
    assert_eq!(before(s), held);
    // The same batch without the duplicate commits.
    s.commit_runs(
        t,
        &RunBatch {
            new_runs: &[j::run(2, "welcome", 11, "e2")],
            outbox: &[j::send(2, "webhook", 2, "k2", NOW)],
            cursor: Some(("journeys", 9)),
            now: NOW + 1,
            ..RunBatch::default()
        },
    )
    .unwrap();
    assert_eq!(s.trigger_cursor(t, "journeys").unwrap().unwrap().after, 9);
    assert_eq!(s.journey_ids(t).unwrap().run, 2);
}

fn due_runs_come_by_wake_time_then_id(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let other = s.create_tenant("b", "w2", "a2", NOW).unwrap().id;
    assert_eq!(s.next_wake(t).unwrap(), None);
    let wake = [
        Some(NOW + 30),
        Some(NOW + 10),
        None,
        Some(NOW + 10),
        Some(NOW + 20),
    ];
    let runs: Vec<StoredRun> = wake
        .iter()
        .enumerate()
        .map(|(i, w)| StoredRun {
            wake_at: *w,
            ..j::run(i as i64 + 1, "welcome", i as i64, &format!("e{i}"))
        })
        .collect();
    s.commit_runs(
        t,
        &RunBatch {
            new_runs: &runs,
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let due = |now, limit| -> Vec<i64> {
        s.due_runs(t, now, limit)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(s.next_wake(t).unwrap(), Some(NOW + 10));
    assert_eq!(due(NOW + 9, 10), Vec::<i64>::new());
    assert_eq!(due(NOW + 10, 10), [2, 4]);
    assert_eq!(due(NOW + 100, 10), [2, 4, 5, 1]);
    assert_eq!(due(NOW + 100, 3), [2, 4, 5]);
    assert_eq!(due(NOW + 100, usize::MAX), [2, 4, 5, 1]);
    // A run whose timer is cleared is no longer due.
    let mut r2 = runs[1].clone();
    r2.wake_at = None;
    let mut r4 = runs[3].clone();
    r4.wake_at = Some(NOW + 40);
    s.commit_runs(
        t,
        &RunBatch {
            updated_runs: &[r2, r4],
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    assert_eq!(s.next_wake(t).unwrap(), Some(NOW + 20));
    assert_eq!(due(NOW + 100, 10), [5, 1, 4]);
    assert_eq!(s.next_wake(other).unwrap(), None);
    assert!(s.due_runs(other, NOW + 100, 10).unwrap().is_empty());
}

fn settling_the_outbox(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let rows: Vec<StoredOutbox> = (1..=4)
        .map(|i| j::send(i, "webhook", 1, &format!("k{i}"), NOW + 10 - i))
        .chain([j::send(5, "douyin_im", 1, "k5", NOW)])
        .collect();
    s.commit_runs(
        t,
        &RunBatch {
            outbox: &rows,
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let due = |now| -> Vec<i64> {
        s.outbox_due(t, "webhook", now, 10)
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect()
    };
    assert_eq!(due(NOW + 7), [4, 3]);
    assert_eq!(due(NOW + 100), [4, 3, 2, 1]);
    assert_eq!(s.outbox_due(t, "webhook", NOW + 100, 2).unwrap().len(), 2);
    assert_eq!(s.outbox_next_at(t, "webhook").unwrap(), Some(NOW + 6));
    assert_eq!(s.outbox_next_at(t, "wecom_robot").unwrap(), None);
    let settle = [
        Settle::Delivered {
            id: 1,
            at: NOW + 20,
            answer: Some("200".into()),
        },
        Settle::Retry {
            id: 2,
            attempts: 1,
            next_at: NOW + 500,
            answer: "503".into(),
        },
        Settle::Dead {
            id: 3,
            attempts: 5,
            at: NOW + 21,
            answer: "400 bad".into(),
        },
    ];
    // The settling's outcome rows go in with it; negative ids are the outbox's own.
    let outcome = |id: i64, key: &str| j::send(id, "siyu.events", 1, key, NOW + 20);
    s.settle_outbox(t, &settle, &[outcome(-2, "o1"), outcome(-7, "o3")])
        .unwrap();
    let events = || -> Vec<(i64, String)> {
        s.outbox_due(t, "siyu.events", NOW + 100, 10)
            .unwrap()
            .into_iter()
            .map(|o| (o.id, o.key))
            .collect()
    };
    assert_eq!(events(), [(-7, "o3".to_string()), (-2, "o1".to_string())]);
    let row = |id| {
        s.outbox(
            t,
            &OutboxFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap()
        .into_iter()
        .find(|o| o.id == id)
        .unwrap()
    };
    let r1 = row(1);
    assert_eq!(
        (
            r1.state,
            r1.attempts,
            r1.settled_at,
            r1.answer.as_deref(),
            r1.next_at
        ),
        (1, 0, Some(NOW + 20), Some("200"), NOW + 9)
    );
    let r2 = row(2);
    assert_eq!(
        (
            r2.state,
            r2.attempts,
            r2.settled_at,
            r2.answer.as_deref(),
            r2.next_at
        ),
        (0, 1, None, Some("503"), NOW + 500)
    );
    let r3 = row(3);
    assert_eq!(
        (r3.state, r3.attempts, r3.settled_at, r3.answer.as_deref()),
        (2, 5, Some(NOW + 21), Some("400 bad"))
    );
    assert_eq!(due(NOW + 100), [4]);
    assert_eq!(s.outbox_next_at(t, "webhook").unwrap(), Some(NOW + 6));
    // Settled rows are not changed again; a pending one still is.
    s.settle_outbox(
        t,
        &[
            Settle::Dead {
                id: 1,
                attempts: 9,
                at: NOW + 30,
                answer: "late".into(),
            },
            Settle::Delivered {
                id: 3,
                at: NOW + 30,
                answer: None,
            },
            Settle::Delivered {
                id: 2,
                at: NOW + 31,
                answer: None,
            },
        ],
        // A repeated outcome (by id, or by key) is skipped; a new one goes in.
        &[outcome(-2, "o1"), outcome(-9, "o3"), outcome(-4, "o2")],
    )
    .unwrap();
    assert_eq!(
        events(),
        [
            (-7, "o3".to_string()),
            (-4, "o2".to_string()),
            (-2, "o1".to_string())
        ]
    );
    assert_eq!(row(1), r1);
    assert_eq!(row(3), r3);
    let r2 = row(2);
    assert_eq!(
        (r2.state, r2.attempts, r2.settled_at, r2.answer),
        (1, 1, Some(NOW + 31), None)
    );
    let states = |state| -> Vec<i64> {
        s.outbox(
            t,
            &OutboxFilter {
                state: Some(state),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect()
    };
    assert_eq!(
        (states(0), states(1), states(2)),
        (vec![5, 4, -2, -4, -7], vec![2, 1], vec![3])
    );
    s.settle_outbox(t, &[], &[]).unwrap();
}

fn dead_rows_are_retried(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let rows: Vec<StoredOutbox> = (1..=4)
        .map(|i| j::send(i, "webhook", 1, &format!("k{i}"), NOW))
        .collect();
    s.commit_runs(
        t,
        &RunBatch {
            outbox: &rows,
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let dead = |id| Settle::Dead {
        id,
        attempts: 3,
        at: NOW + 1,
        answer: "500".into(),
    };
    s.settle_outbox(
        t,
        &[
            dead(1),
            dead(2),
            dead(3),
            Settle::Delivered {
                id: 4,
                at: NOW,
                answer: None,
            },
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        s.retry_dead(t, Some(&[1, 4, 99]), NOW + 100).unwrap(),
        1,
        "only dead rows"
    );
    let got = s.outbox_due(t, "webhook", NOW + 100, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            got[0].id,
            got[0].state,
            got[0].attempts,
            got[0].next_at,
            got[0].settled_at
        ),
        (1, 0, 0, NOW + 100, None)
    );
    assert_eq!(s.retry_dead(t, None, NOW + 200).unwrap(), 2);
    assert_eq!(s.retry_dead(t, None, NOW + 200).unwrap(), 0);
    let due: Vec<i64> = s
        .outbox_due(t, "webhook", NOW + 200, 10)
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(due, [1, 2, 3]);
}

fn tasks_are_claimed_and_done_from_the_right_states(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let tasks = [j::task(1, "sales"), j::task(2, "sales"), j::task(3, "ops")];
    s.commit_runs(
        t,
        &RunBatch {
            tasks: &tasks,
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let claim = |id, agent: &str| {
        s.update_task(
            t,
            id,
            &TaskChange::Claim {
                agent: agent.into(),
            },
            NOW + 10,
        )
        .unwrap()
    };
    let done = |id, agent: &str| {
        s.update_task(
            t,
            id,
            &TaskChange::Done {
                agent: agent.into(),
                outcome: "reached".into(),
            },
            NOW + 20,
        )
        .unwrap()
    };
    let c = claim(1, "li").unwrap();
    assert_eq!(
        (c.state, c.agent.as_deref(), c.updated_at),
        (1, Some("li"), NOW + 10)
    );
    // A second claim finds it claimed and changes nothing.
    assert_eq!(claim(1, "wang"), Some(c.clone()));
    // Done from claimed keeps the claimer.
    let d = done(1, "wang").unwrap();
    assert_eq!(
        (
            d.state,
            d.agent.as_deref(),
            d.outcome.as_deref(),
            d.updated_at
        ),
        (2, Some("li"), Some("reached"), NOW + 20)
    );
    assert_eq!(claim(1, "wang"), Some(d.clone()));
    assert_eq!(done(1, "zhao"), Some(d.clone()));
    // Done from open takes the agent given.
    let d2 = done(2, "wang").unwrap();
    assert_eq!((d2.state, d2.agent.as_deref()), (2, Some("wang")));
    assert_eq!(claim(99, "li"), None);
    assert_eq!(done(99, "li"), None);
    assert_eq!(s.task(t, 1).unwrap(), Some(d));
    let ids = |f: TaskFilter<'_>| -> Vec<i64> {
        s.tasks(t, &TaskFilter { limit: 10, ..f })
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(ids(TaskFilter::default()), [1, 2, 3], "oldest first");
    assert_eq!(
        ids(TaskFilter {
            state: Some(2),
            ..Default::default()
        }),
        [1, 2]
    );
    assert_eq!(
        ids(TaskFilter {
            state: Some(0),
            ..Default::default()
        }),
        [3]
    );
    assert_eq!(
        ids(TaskFilter {
            agent: Some("wang"),
            ..Default::default()
        }),
        [2]
    );
    assert_eq!(
        ids(TaskFilter {
            team: Some("sales"),
            state: Some(2),
            ..Default::default()
        }),
        [1, 2]
    );
    let page = TaskFilter {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(s.tasks(t, &page).unwrap().len(), 2);
}

fn counters_add_up_across_batches(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    let fan = |fan, replies| StoredFanState {
        fan,
        im_replies: replies,
        ..Default::default()
    };
    s.commit_runs(
        t,
        &RunBatch {
            variants: &[
                j::variant("hello", "a", 1, 0, 0),
                j::variant("hello", "b", 1, 0, 0),
                j::variant("hello", "a", 1, 0, 0),
            ],
            fan_sends: &[
                j::sends(10, "webhook", 7, 1),
                j::sends(10, "webhook", 7, 1),
                j::sends(11, "webhook", 7, 1),
            ],
            fan_states: &[fan(10, 1), fan(11, 1), fan(10, 2)],
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    s.commit_runs(
        t,
        &RunBatch {
            variants: &[
                j::variant("hello", "a", 0, 1, 0),
                j::variant("hello", "b", 0, 0, 1),
            ],
            fan_sends: &[
                j::sends(10, "webhook", 7, 1),
                j::sends(10, "douyin_im", 7, 1),
                j::sends(10, "webhook", 8, 1),
            ],
            fan_states: &[StoredFanState {
                opted_out_at: Some(NOW),
                ..fan(11, 0)
            }],
            now: NOW,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let got: Vec<_> = s
        .variants(t, "welcome")
        .unwrap()
        .into_iter()
        .map(|v| (v.arm, v.sent, v.converted, v.failed))
        .collect();
    assert_eq!(
        got,
        [("a".to_string(), 2, 1, 0), ("b".to_string(), 1, 0, 1)]
    );
    assert_eq!(
        s.fan_sends(t, &[10, 11], 7).unwrap(),
        [
            j::sends(10, "douyin_im", 7, 1),
            j::sends(10, "webhook", 7, 3),
            j::sends(11, "webhook", 7, 1)
        ]
    );
    assert_eq!(
        s.fan_sends(t, &[10], 8).unwrap(),
        [j::sends(10, "webhook", 8, 1)]
    );
    // Fans' facts are replaced whole, the last of a batch winning.
    assert_eq!(
        s.fan_states(t, &[10, 11, 12]).unwrap(),
        [
            fan(10, 2),
            StoredFanState {
                opted_out_at: Some(NOW),
                ..fan(11, 0)
            }
        ]
    );
}

fn the_cursor_is_stored_with_its_batch(s: &dyn Store) {
    use crate::journeys::*;
    let t = s.create_tenant("a", "w1", "a1", NOW).unwrap().id;
    s.set_trigger_cursor(t, "journeys", 3, NOW).unwrap();
    s.commit_runs(
        t,
        &RunBatch {
            new_runs: &[j::run(1, "welcome", 10, "e1")],
            cursor: Some(("journeys", 17)),
            now: NOW + 5,
            ..RunBatch::default()
        },
    )
    .unwrap();
    let c = s.trigger_cursor(t, "journeys").unwrap().unwrap();
    assert_eq!((c.after, c.updated_at), (17, NOW + 5));
    // A batch that fails leaves the cursor where it was: its triggers are taken again.
    assert!(
        s.commit_runs(
            t,
            &RunBatch {
                new_runs: &[j::run(2, "welcome", 10, "e1")],
                cursor: Some(("journeys", 30)),
                now: NOW + 6,
                ..RunBatch::default()
            },
        )
        .is_err()
    );
    assert_eq!(s.trigger_cursor(t, "journeys").unwrap().unwrap(), c);
    // Other consumers' cursors are their own.
    s.commit_runs(
        t,
        &RunBatch {
            cursor: Some(("other", 1)),
            now: NOW + 7,
            ..RunBatch::default()
        },
    )
    .unwrap();
    assert_eq!(s.trigger_cursor(t, "journeys").unwrap().unwrap(), c);
    assert_eq!(s.trigger_cursors(t).unwrap().len(), 2);
}

/// Two handles as two nodes: the journey worker's writes of a node whose lease passed on are
/// refused and store nothing.
fn journey_writes_of_a_stale_node_are_refused(open: &dyn Fn() -> std::sync::Arc<dyn Store>) {
    use crate::journeys::*;
    let (a, b) = (open(), open());
    let t = a.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    a.require_leases();
    b.require_leases();
    let batch = |id: i64| {
        (
            [j::run(id, "welcome", 10, &format!("e{id}"))],
            [j::send(id, "webhook", id, &format!("k{id}"), NOW)],
        )
    };
    let (runs, outbox) = batch(1);
    let commit = |s: &dyn Store, runs: &[StoredRun], outbox: &[StoredOutbox]| {
        s.commit_runs(
            t,
            &RunBatch {
                new_runs: runs,
                outbox,
                cursor: Some(("journeys", runs[0].id)),
                now: NOW,
                ..RunBatch::default()
            },
        )
    };
    assert!(matches!(commit(&*a, &runs, &outbox), Err(StoreError::NotOwner(x)) if x == t));
    a.acquire_lease(t, "a", NOW, NOW + 100).unwrap().unwrap();
    commit(&*a, &runs, &outbox).unwrap();
    // a stalls past its lease; b takes over.
    b.acquire_lease(t, "b", NOW + 200, NOW + 300)
        .unwrap()
        .unwrap();
    let (runs2, outbox2) = batch(2);
    assert!(matches!(
        commit(&*a, &runs2, &outbox2),
        Err(StoreError::NotOwner(_))
    ));
    assert!(matches!(
        a.settle_outbox(
            t,
            &[Settle::Delivered {
                id: 1,
                at: NOW,
                answer: None
            }],
            &[]
        ),
        Err(StoreError::NotOwner(_))
    ));
    assert_eq!(b.run(t, 2).unwrap(), None);
    assert_eq!(b.trigger_cursor(t, "journeys").unwrap().unwrap().after, 1);
    assert_eq!(
        b.outbox_due(t, "webhook", NOW, 10).unwrap().len(),
        1,
        "still pending"
    );
    // The new owner's go through.
    commit(&*b, &runs2, &outbox2).unwrap();
    b.settle_outbox(
        t,
        &[Settle::Delivered {
            id: 1,
            at: NOW,
            answer: None,
        }],
        &[],
    )
    .unwrap();
    assert_eq!(b.journey_ids(t).unwrap().run, 2);
    assert_eq!(b.outbox_due(t, "webhook", NOW, 10).unwrap().len(), 1);
}

/// Rows of the leads capability for the tests.
mod l {
    use crate::leads::*;

    pub fn team(name: &str) -> StoredTeam {
        StoredTeam {
            name: name.to_string(),
            strategy: "round_robin".to_string(),
            first_contact_ms: Some(3_600_000),
            recycle_ms: None,
            lead_agent: Some("boss".to_string()),
            escalate: "reassign".to_string(),
            last_agent: None,
            created_at: super::NOW,
            updated_at: super::NOW,
        }
    }

    pub fn agent(name: &str, team: &str) -> StoredAgent {
        StoredAgent {
            name: name.to_string(),
            team: team.to_string(),
            capacity: Some(20),
            daily_cap: None,
            hours: Some((540, 1080)),
            weight: 1,
            active: true,
            created_at: super::NOW,
            updated_at: super::NOW,
        }
    }

    pub fn lead(id: i64, fan: i64, state: &str, owner: Option<&str>) -> StoredLead {
        StoredLead {
            id,
            fan,
            state: state.to_string(),
            team: Some("sales".to_string()),
            owner: owner.map(str::to_string),
            created_at: super::NOW + id,
            assigned_at: owner.map(|_| super::NOW + id),
            first_contact_due: owner.map(|_| super::NOW + id + 3_600_000),
            channel: "live_form".to_string(),
            province: Some("浙江".to_string()),
            city: Some("杭州".to_string()),
            updated_at: super::NOW + id,
            ..StoredLead::default()
        }
    }

    pub fn arrival(lead: i64, event_id: &str, ts: i64) -> StoredArrival {
        StoredArrival {
            lead,
            event_id: event_id.to_string(),
            channel: "live_form".to_string(),
            ts,
            repeat: false,
        }
    }

    pub fn log(id: i64, lead: i64, kind: &str, agent: Option<&str>) -> StoredLeadLog {
        StoredLeadLog {
            id,
            lead,
            at: super::NOW + id,
            kind: kind.to_string(),
            agent: agent.map(str::to_string),
            result: None,
            detail: Some(r#"{"why":"test"}"#.to_string()),
        }
    }

    pub fn day(agent: &str, day: i32, count: i32) -> AgentDay {
        AgentDay {
            agent: agent.to_string(),
            day,
            count,
        }
    }

    pub fn group(id: i64, template: &str) -> StoredGroup {
        StoredGroup {
            id,
            name: format!("{template} #{id}"),
            template: template.to_string(),
            capacity: 500,
            owner: Some("amy".to_string()),
            members: 0,
            created_at: super::NOW,
        }
    }

    pub fn member(group: i64, fan: i64, joined_at: i64) -> StoredMember {
        StoredMember {
            group,
            fan,
            joined_at,
            left_at: None,
            active_at: None,
        }
    }
}

fn teams_agents_and_rules_round_trip(s: &dyn Store) {
    use crate::leads::*;
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    let other = s.create_tenant("other", "wh2", "ah2", NOW).unwrap().id;
    assert!(s.teams(t).unwrap().is_empty());
    assert!(s.agents(t).unwrap().is_empty());
    assert!(s.lead_rules(t).unwrap().is_empty());

    s.put_team(t, &l::team("sales")).unwrap();
    let mut support = l::team("support");
    support.strategy = "least_loaded".to_string();
    support.first_contact_ms = None;
    support.recycle_ms = Some(86_400_000);
    support.lead_agent = None;
    support.escalate = "task".to_string();
    support.last_agent = Some("first".to_string());
    s.put_team(t, &support).unwrap();
    assert_eq!(s.teams(t).unwrap(), vec![l::team("sales"), support.clone()]);
    assert!(s.teams(other).unwrap().is_empty());

    // A batch moves the pointer; replacing the team keeps it.
    s.commit_leads(
        t,
        &LeadBatch {
            pointers: &[("sales".to_string(), "amy".to_string())],
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    let mut sales = l::team("sales");
    sales.strategy = "weighted".to_string();
    sales.last_agent = Some("ignored".to_string());
    sales.updated_at = NOW + 5;
    s.put_team(t, &sales).unwrap();
    let teams = s.teams(t).unwrap();
    assert_eq!(teams[0].strategy, "weighted");
    assert_eq!(teams[0].updated_at, NOW + 5);
    assert_eq!(teams[0].last_agent.as_deref(), Some("amy"), "kept");
    assert_eq!(
        teams[1].last_agent.as_deref(),
        Some("first"),
        "a new row's is stored"
    );

    s.put_agent(t, &l::agent("bob", "sales")).unwrap();
    let mut amy = l::agent("amy", "sales");
    amy.capacity = None;
    amy.daily_cap = Some(30);
    amy.hours = None;
    amy.weight = 3;
    amy.active = false;
    s.put_agent(t, &amy).unwrap();
    assert_eq!(
        s.agents(t).unwrap(),
        vec![amy.clone(), l::agent("bob", "sales")]
    );
    amy.team = "support".to_string();
    amy.hours = Some((1320, 360));
    amy.active = true;
    amy.updated_at = NOW + 9;
    s.put_agent(t, &amy).unwrap();
    assert_eq!(s.agents(t).unwrap()[0], amy, "replaced");
    assert_eq!(s.agents(t).unwrap().len(), 2);

    let rule = |id: i64, expr: &str, team: &str| StoredRule {
        id,
        position: 0,
        expr: expr.to_string(),
        team: team.to_string(),
        created_at: NOW,
    };
    s.put_lead_rules(
        t,
        &[
            rule(1, "region = '浙江'", "sales"),
            rule(2, "true", "support"),
        ],
    )
    .unwrap();
    let got = s.lead_rules(t).unwrap();
    assert_eq!(
        got.iter().map(|r| (r.id, r.position)).collect::<Vec<_>>(),
        [(1, 1), (2, 2)]
    );
    assert_eq!(got[0].expr, "region = '浙江'");
    // Replaced, in the new order.
    s.put_lead_rules(
        t,
        &[
            rule(5, "tag:vip", "support"),
            rule(3, "layer = 'hot'", "sales"),
            rule(4, "true", "sales"),
        ],
    )
    .unwrap();
    let got = s.lead_rules(t).unwrap();
    assert_eq!(
        got.iter()
            .map(|r| (r.id, r.position, r.team.as_str()))
            .collect::<Vec<_>>(),
        [(5, 1, "support"), (3, 2, "sales"), (4, 3, "sales")]
    );
    assert!(s.lead_rules(other).unwrap().is_empty());
    s.put_lead_rules(t, &[]).unwrap();
    assert!(s.lead_rules(t).unwrap().is_empty());
}

fn lead_batches_commit_whole(s: &dyn Store) {
    use crate::leads::*;
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    let other = s.create_tenant("other", "wh2", "ah2", NOW).unwrap().id;
    assert_eq!(s.lead_ids(t).unwrap(), LeadIds::default());
    s.put_team(t, &l::team("sales")).unwrap();

    let new_leads = [
        l::lead(1, 100, "new", Some("amy")),
        l::lead(2, 200, "new", None),
        l::lead(3, 300, "contacted", Some("bob")),
        l::lead(4, 100, "won", Some("amy")),
    ];
    let arrivals = [
        l::arrival(1, "ev-b", NOW + 20),
        l::arrival(1, "ev-a", NOW + 10),
        l::arrival(2, "ev-c", NOW + 5),
        l::arrival(3, "ev-d", NOW + 5),
        l::arrival(4, "ev-e", NOW + 1),
    ];
    let log = [
        l::log(1, 1, "assigned", Some("amy")),
        l::log(2, 1, "repeat", None),
        l::log(3, 3, "assigned", Some("bob")),
    ];
    let days = [
        l::day("amy", 20_400, 2),
        l::day("bob", 20_400, 1),
        l::day("amy", 20_400, 1),
    ];
    s.commit_leads(
        t,
        &LeadBatch {
            new_leads: &new_leads,
            arrivals: &arrivals,
            log: &log,
            agent_days: &days,
            pointers: &[("sales".to_string(), "bob".to_string())],
            cursor: Some(("leads", 7)),
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.lead_ids(t).unwrap(),
        LeadIds {
            lead: 4,
            log: 3,
            group: 0
        }
    );
    assert_eq!(s.lead(t, 1).unwrap(), Some(new_leads[0].clone()));
    assert_eq!(s.lead(t, 9).unwrap(), None);
    assert_eq!(s.lead(other, 1).unwrap(), None);
    assert_eq!(s.teams(t).unwrap()[0].last_agent.as_deref(), Some("bob"));
    assert_eq!(s.trigger_cursor(t, "leads").unwrap().unwrap().after, 7);
    assert_eq!(s.lead_log(t, 1).unwrap(), log[..2].to_vec());
    assert_eq!(s.lead_log(t, 3).unwrap(), log[2..].to_vec());
    // Arrivals in time order; of several leads, by lead then time.
    assert_eq!(
        s.arrivals(t, 1).unwrap(),
        vec![arrivals[1].clone(), arrivals[0].clone()]
    );
    assert_eq!(
        s.arrivals_of(t, &[3, 1, 9]).unwrap(),
        vec![
            arrivals[1].clone(),
            arrivals[0].clone(),
            arrivals[3].clone()
        ]
    );
    assert!(s.arrivals_of(t, &[]).unwrap().is_empty());
    assert!(s.arrivals_of(other, &[1]).unwrap().is_empty());
    // Day counts add up, within a batch and across batches.
    assert_eq!(
        s.agent_days(t, 20_400).unwrap(),
        vec![l::day("amy", 20_400, 3), l::day("bob", 20_400, 1)]
    );
    s.commit_leads(
        t,
        &LeadBatch {
            agent_days: &[l::day("amy", 20_400, 4), l::day("amy", 20_401, 1)],
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.agent_days(t, 20_400).unwrap(),
        vec![l::day("amy", 20_400, 7), l::day("bob", 20_400, 1)]
    );
    assert_eq!(
        s.agent_days(t, 20_401).unwrap(),
        vec![l::day("amy", 20_401, 1)]
    );
    assert!(s.agent_days(other, 20_400).unwrap().is_empty());

    // Filters, oldest first.
    let ids = |f: LeadFilter<'_>| {
        s.leads(t, &LeadFilter { limit: 100, ..f })
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(LeadFilter::default()), [1, 2, 3, 4]);
    assert_eq!(
        ids(LeadFilter {
            open: true,
            ..LeadFilter::default()
        }),
        [1, 2, 3]
    );
    assert_eq!(
        ids(LeadFilter {
            pooled: true,
            ..LeadFilter::default()
        }),
        [2]
    );
    assert_eq!(
        ids(LeadFilter {
            owner: Some("amy"),
            ..LeadFilter::default()
        }),
        [1, 4]
    );
    assert_eq!(
        ids(LeadFilter {
            owner: Some("amy"),
            open: true,
            ..LeadFilter::default()
        }),
        [1]
    );
    assert_eq!(
        ids(LeadFilter {
            state: Some("contacted"),
            ..LeadFilter::default()
        }),
        [3]
    );
    assert_eq!(
        ids(LeadFilter {
            team: Some("sales"),
            ..LeadFilter::default()
        }),
        [1, 2, 3, 4]
    );
    assert_eq!(
        ids(LeadFilter {
            team: Some("none"),
            ..LeadFilter::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(LeadFilter {
            fan: Some(100),
            ..LeadFilter::default()
        }),
        [1, 4]
    );
    assert_eq!(
        s.leads(
            t,
            &LeadFilter {
                limit: 2,
                ..LeadFilter::default()
            }
        )
        .unwrap()
        .len(),
        2
    );
    assert!(
        s.leads(
            other,
            &LeadFilter {
                limit: 100,
                ..LeadFilter::default()
            }
        )
        .unwrap()
        .is_empty()
    );

    let open_of = |fans: &[i64]| {
        s.open_leads_of(t, fans)
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(open_of(&[100, 300, 999]), [1, 3], "lead 4 is won");
    assert_eq!(open_of(&[]), Vec::<i64>::new());
    assert_eq!(
        s.open_per_owner(t).unwrap(),
        vec![("amy".to_string(), 1), ("bob".to_string(), 1)]
    );
    assert_eq!(
        s.arrivals_known(t, &["ev-a", "ev-x", "ev-d"]).unwrap(),
        vec!["ev-a".to_string(), "ev-d".to_string()]
    );
    assert!(s.arrivals_known(other, &["ev-a"]).unwrap().is_empty());
    assert!(s.arrivals_known(t, &[]).unwrap().is_empty());

    // A duplicate event id stores nothing of its batch, and names the id.
    let fresh = [l::lead(5, 500, "new", None)];
    let cursor_before = s.trigger_cursor(t, "leads").unwrap().unwrap().after;
    for dup in [
        vec![l::arrival(5, "ev-z", NOW), l::arrival(5, "ev-z", NOW)],
        vec![l::arrival(5, "ev-a", NOW)],
    ] {
        let err = s
            .commit_leads(
                t,
                &LeadBatch {
                    new_leads: &fresh,
                    arrivals: &dup,
                    log: &[l::log(9, 5, "assigned", None)],
                    agent_days: &[l::day("amy", 20_400, 100)],
                    cursor: Some(("leads", 99)),
                    now: NOW,
                    ..LeadBatch::default()
                },
            )
            .unwrap_err();
        let name = &dup[0].event_id;
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(name.as_str())),
            "{err}"
        );
        assert_eq!(
            s.leads(
                t,
                &LeadFilter {
                    limit: 100,
                    ..LeadFilter::default()
                }
            )
            .unwrap()
            .len(),
            4
        );
        assert_eq!(s.lead(t, 5).unwrap(), None);
        assert!(s.lead_log(t, 5).unwrap().is_empty());
        assert_eq!(s.agent_days(t, 20_400).unwrap()[0].count, 7);
        assert_eq!(
            s.trigger_cursor(t, "leads").unwrap().unwrap().after,
            cursor_before
        );
        assert_eq!(s.lead_ids(t).unwrap().lead, 4);
    }
    // A lead id stored already, or twice in the batch, likewise.
    for dup in [
        vec![l::lead(2, 9, "new", None)],
        vec![l::lead(6, 9, "new", None), l::lead(6, 9, "new", None)],
    ] {
        let err = s
            .commit_leads(
                t,
                &LeadBatch {
                    new_leads: &dup,
                    now: NOW,
                    ..LeadBatch::default()
                },
            )
            .unwrap_err();
        let name = dup[0].id.to_string();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(&name)),
            "{err}"
        );
    }
    assert_eq!(s.lead(t, 2).unwrap().unwrap().fan, 200);
    assert_eq!(s.lead(t, 6).unwrap(), None);

    // Updating a lead not stored fails the batch.
    let err = s
        .commit_leads(
            t,
            &LeadBatch {
                new_leads: &fresh,
                updated_leads: &[l::lead(77, 1, "contacted", None)],
                now: NOW,
                ..LeadBatch::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("77")),
        "{err}"
    );
    assert_eq!(s.lead(t, 5).unwrap(), None);

    // Updates replace all but the id and the creation time; arrivals move to another lead.
    let mut two = l::lead(2, 200, "contacted", Some("bob"));
    two.created_at = 1;
    two.first_contact_at = Some(NOW + 50);
    two.last_follow_up_at = Some(NOW + 50);
    two.escalated_at = Some(NOW + 40);
    two.clue_state = Some("1".to_string());
    two.intention = Some("high".to_string());
    two.province = None;
    two.updated_at = NOW + 50;
    let mut one = l::lead(1, 100, "won", Some("amy"));
    one.closed_at = Some(NOW + 60);
    s.commit_leads(
        t,
        &LeadBatch {
            updated_leads: &[two.clone(), one.clone()],
            moved_arrivals: &[("ev-b".to_string(), 2)],
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    let stored = s.lead(t, 2).unwrap().unwrap();
    assert_eq!(stored.created_at, NOW + 2, "kept");
    assert_eq!(
        stored,
        StoredLead {
            created_at: NOW + 2,
            ..two
        }
    );
    assert_eq!(s.lead(t, 1).unwrap().unwrap().state, "won");
    assert_eq!(s.open_per_owner(t).unwrap(), vec![("bob".to_string(), 2)]);
    assert_eq!(
        s.arrivals(t, 2)
            .unwrap()
            .iter()
            .map(|a| a.event_id.as_str())
            .collect::<Vec<_>>(),
        ["ev-c", "ev-b"]
    );
    assert_eq!(s.arrivals(t, 1).unwrap(), vec![arrivals[1].clone()]);
}

fn groups_members_and_days(s: &dyn Store) {
    use crate::leads::*;
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    let other = s.create_tenant("other", "wh2", "ah2", NOW).unwrap().id;
    assert!(s.groups(t).unwrap().is_empty());
    let gday = |group: i64, day: i32, joins: i32, leaves: i32, messages: i32| GroupDay {
        group,
        day,
        joins,
        leaves,
        messages,
    };
    s.commit_leads(
        t,
        &LeadBatch {
            new_groups: &[l::group(1, "vip"), l::group(2, "vip")],
            members: &[
                l::member(1, 10, NOW + 2),
                l::member(1, 11, NOW + 1),
                l::member(2, 10, NOW + 3),
            ],
            group_sizes: &[(1, 2), (2, 1)],
            group_days: &[
                gday(1, 100, 1, 0, 0),
                gday(1, 100, 1, 0, 3),
                gday(2, 100, 1, 0, 0),
            ],
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    assert_eq!(s.lead_ids(t).unwrap().group, 2);
    let groups = s.groups(t).unwrap();
    assert_eq!(
        groups,
        vec![
            StoredGroup {
                members: 2,
                ..l::group(1, "vip")
            },
            StoredGroup {
                members: 1,
                ..l::group(2, "vip")
            },
        ]
    );
    assert!(s.groups(other).unwrap().is_empty());
    // By join time.
    assert_eq!(
        s.members(t, 1, None).unwrap(),
        vec![l::member(1, 11, NOW + 1), l::member(1, 10, NOW + 2)]
    );
    assert_eq!(s.groups_of(t, 10).unwrap(), [1, 2]);
    assert!(s.groups_of(other, 10).unwrap().is_empty());

    // Fan 10 leaves group 1 and speaks in group 2; fan 12 joins group 1.
    s.commit_leads(
        t,
        &LeadBatch {
            members: &[
                StoredMember {
                    left_at: Some(NOW + 10),
                    ..l::member(1, 10, NOW + 2)
                },
                StoredMember {
                    active_at: Some(NOW + 9),
                    ..l::member(2, 10, NOW + 3)
                },
                l::member(1, 12, NOW + 8),
            ],
            group_sizes: &[(1, 2)],
            group_days: &[
                gday(1, 100, 0, 1, 0),
                gday(1, 101, 1, 0, 0),
                gday(2, 101, 0, 0, 1),
            ],
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    assert_eq!(s.groups_of(t, 10).unwrap(), [2], "only current memberships");
    assert_eq!(s.groups_of(t, 12).unwrap(), [1]);
    let members = s.members(t, 1, None).unwrap();
    assert_eq!(members.len(), 3, "past members stay");
    assert_eq!(members[1].fan, 10);
    assert_eq!(members[1].left_at, Some(NOW + 10));
    assert_eq!(s.members(t, 2, None).unwrap()[0].active_at, Some(NOW + 9));
    // Only the fans asked for, past members included; none asked, none found.
    let some = s.members(t, 1, Some(&[10, 12, 99])).unwrap();
    assert_eq!(some.iter().map(|m| m.fan).collect::<Vec<_>>(), [10, 12]);
    assert_eq!(some[0].left_at, Some(NOW + 10));
    assert!(s.members(t, 1, Some(&[])).unwrap().is_empty());
    assert!(s.members(other, 1, Some(&[10])).unwrap().is_empty());
    assert_eq!(s.groups(t).unwrap()[0].members, 2);
    // Day counts add up, from the day asked.
    assert_eq!(
        s.group_days(t, 1, 0).unwrap(),
        vec![gday(1, 100, 2, 1, 3), gday(1, 101, 1, 0, 0)]
    );
    assert_eq!(
        s.group_days(t, 1, 101).unwrap(),
        vec![gday(1, 101, 1, 0, 0)]
    );
    assert_eq!(
        s.group_days(t, 2, 0).unwrap(),
        vec![gday(2, 100, 1, 0, 0), gday(2, 101, 0, 0, 1)]
    );
    assert!(s.group_days(other, 1, 0).unwrap().is_empty());
}

fn group_invites_hold_seats_and_lead_tasks(s: &dyn Store) {
    use crate::journeys::StoredTask;
    use crate::leads::*;
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    let other = s.create_tenant("other", "wh2", "ah2", NOW).unwrap().id;
    let inv = |group: i64, fan: i64, invited_at: i64| StoredInvite {
        group,
        fan,
        invited_at,
    };
    let task = StoredTask {
        id: 1,
        team: "sales".into(),
        text: "lead 2 merged into 1".into(),
        fan: Some(10),
        run: None,
        step: None,
        state: 1,
        agent: Some("amy".into()),
        outcome: None,
        created_at: NOW,
        due_at: None,
        updated_at: NOW,
    };
    s.commit_leads(
        t,
        &LeadBatch {
            new_groups: &[l::group(1, "vip"), l::group(2, "vip")],
            invites: &[inv(1, 10, NOW), inv(1, 11, NOW + 5), inv(2, 12, NOW - 100)],
            tasks: std::slice::from_ref(&task),
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.invites_held(t, NOW).unwrap(),
        [(1, 2)],
        "old invitations hold no seat"
    );
    assert_eq!(s.invites_held(t, 0).unwrap(), [(1, 2), (2, 1)]);
    assert!(s.invites_held(other, 0).unwrap().is_empty());
    assert_eq!(
        s.invites_of(t, &[12, 10]).unwrap(),
        [inv(1, 10, NOW), inv(2, 12, NOW - 100)]
    );
    assert!(s.invites_of(t, &[]).unwrap().is_empty());
    // The lead worker's tasks are the journeys' tasks: one inbox, one id space.
    assert_eq!(s.task(t, 1).unwrap(), Some(task.clone()));
    assert_eq!(s.journey_ids(t).unwrap().task, 1);
    // Invited again: the seat is renewed, not doubled. Fan 10 joins: their seat is freed;
    // fan 11 leaves without ever having joined — a leave frees nothing.
    s.commit_leads(
        t,
        &LeadBatch {
            invites: &[inv(2, 12, NOW + 7)],
            members: &[
                l::member(1, 10, NOW + 8),
                StoredMember {
                    left_at: Some(NOW + 9),
                    ..l::member(2, 11, NOW + 8)
                },
            ],
            now: NOW,
            ..LeadBatch::default()
        },
    )
    .unwrap();
    assert_eq!(s.invites_held(t, 0).unwrap(), [(1, 1), (2, 1)]);
    assert_eq!(s.invites_of(t, &[12]).unwrap(), [inv(2, 12, NOW + 7)]);
    assert_eq!(s.invites_of(t, &[10]).unwrap(), []);
}

fn spend_is_replaced_by_day_channel_and_domain(s: &dyn Store) {
    use crate::spend::StoredSpend;
    let t = s.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    let other = s.create_tenant("other", "wh2", "ah2", NOW).unwrap().id;
    let row = |day: i32, channel: &str, domain: &str, amount_fen: i64| StoredSpend {
        day,
        channel: channel.into(),
        domain: domain.into(),
        amount_fen,
    };
    let file = [
        row(20_400, "qianchuan", "commercial", 120_000),
        row(20_400, "live", "public", 5_000),
        row(20_401, "qianchuan", "commercial", 80_000),
    ];
    assert_eq!(s.put_spend(t, &file, NOW).unwrap(), 0);
    assert_eq!(
        s.spend(t, 20_400, 20_402).unwrap(),
        vec![file[1].clone(), file[0].clone(), file[2].clone()]
    );
    // The end day is excluded; other tenants see nothing.
    assert_eq!(s.spend(t, 20_401, 20_402).unwrap(), vec![file[2].clone()]);
    assert!(s.spend(other, 0, i32::MAX).unwrap().is_empty());
    // Imported again, corrected: replaced, not added.
    let fixed = [
        row(20_401, "qianchuan", "commercial", 90_000),
        row(20_402, "ad", "commercial", 1),
    ];
    assert_eq!(s.put_spend(t, &fixed, NOW + 1).unwrap(), 1);
    let all = s.spend(t, 0, i32::MAX).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[2], fixed[0]);
}

fn lead_writes_of_a_stale_node_are_refused(open: &dyn Fn() -> std::sync::Arc<dyn Store>) {
    use crate::leads::*;
    let (a, b) = (open(), open());
    let t = a.create_tenant("acme", "wh", "ah", NOW).unwrap().id;
    a.require_leases();
    b.require_leases();
    let commit = |s: &dyn Store, id: i64| {
        s.commit_leads(
            t,
            &LeadBatch {
                new_leads: &[l::lead(id, id * 10, "new", None)],
                arrivals: &[l::arrival(id, &format!("ev{id}"), NOW)],
                cursor: Some(("leads", id)),
                now: NOW,
                ..LeadBatch::default()
            },
        )
    };
    assert!(matches!(commit(&*a, 1), Err(StoreError::NotOwner(x)) if x == t));
    assert!(matches!(
        a.put_team(t, &l::team("sales")),
        Err(StoreError::NotOwner(_))
    ));
    a.acquire_lease(t, "a", NOW, NOW + 100).unwrap().unwrap();
    commit(&*a, 1).unwrap();
    a.put_team(t, &l::team("sales")).unwrap();
    // a stalls past its lease; b takes over.
    b.acquire_lease(t, "b", NOW + 200, NOW + 300)
        .unwrap()
        .unwrap();
    assert!(matches!(commit(&*a, 2), Err(StoreError::NotOwner(_))));
    assert!(matches!(
        a.put_agent(t, &l::agent("amy", "sales")),
        Err(StoreError::NotOwner(_))
    ));
    assert!(matches!(
        a.put_lead_rules(t, &[]),
        Err(StoreError::NotOwner(_))
    ));
    assert_eq!(b.lead(t, 2).unwrap(), None);
    assert_eq!(b.trigger_cursor(t, "leads").unwrap().unwrap().after, 1);
    assert!(b.agents(t).unwrap().is_empty());
    // The new owner's go through.
    commit(&*b, 2).unwrap();
    b.put_agent(t, &l::agent("amy", "sales")).unwrap();
    assert_eq!(b.lead_ids(t).unwrap().lead, 2);
    assert_eq!(b.trigger_cursor(t, "leads").unwrap().unwrap().after, 2);
}

macro_rules! backends {
    ($($name:ident),* ; reopened: $($open:ident),*) => {
        mod sqlite {
            $(#[test] fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let s = crate::SqliteStore::open(dir.path(), crate::Durability::Normal).unwrap();
                super::$name(&s);
            })*
            $(#[test] fn $open() {
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().to_path_buf();
                super::$open(&|| crate::open(&crate::Location::Sqlite(p.clone()), crate::Durability::Full).unwrap());
            })*
        }
        mod postgres {
            $(#[test] fn $name() {
                let schema = crate::testing::fresh_postgres();
                let s = crate::PostgresStore::open(&schema.url).unwrap();
                super::$name(&s);
            })*
            $(#[test] fn $open() {
                let schema = crate::testing::fresh_postgres();
                let url = schema.url.clone();
                super::$open(&|| crate::open(&crate::Location::Postgres(url.clone()), crate::Durability::Full).unwrap());
            })*
        }
    };
}

backends!(
    tenants_and_keys,
    rotated_keys_expire_and_are_deleted,
    append_is_idempotent_per_tenant,
    scan_returns_events_in_arrival_order_exactly,
    group_commit_spans_tenants,
    decisions_are_kept_in_order_per_tenant,
    rules_are_versioned,
    transitions_are_appended_and_read_in_order,
    triggers_are_one_stream_of_events_and_what_they_caused,
    connectors_keep_settings_and_checkpoints_per_tenant,
    segments_their_changes_and_tags,
    snapshots_keep_the_furthest_along,
    journeys_are_versioned_and_paused,
    a_batch_stores_every_row_type,
    a_duplicate_key_fails_the_whole_batch,
    due_runs_come_by_wake_time_then_id,
    settling_the_outbox,
    dead_rows_are_retried,
    tasks_are_claimed_and_done_from_the_right_states,
    counters_add_up_across_batches,
    the_cursor_is_stored_with_its_batch,
    teams_agents_and_rules_round_trip,
    lead_batches_commit_whole,
    groups_members_and_days,
    group_invites_hold_seats_and_lead_tasks,
    spend_is_replaced_by_day_channel_and_domain;
    reopened:
    reopening_keeps_everything,
    leases_pass_between_nodes_and_fence_stale_writes,
    journey_writes_of_a_stale_node_are_refused,
    lead_writes_of_a_stale_node_are_refused
);
