//! Nothing lost, nothing twice across a PostgreSQL outage: the services run a fixed set of
//! batches (follows, unfollows, orders, comments, subscriptions; two saved segments) on
//! `PostgresStore`, while PostgreSQL is stopped in the middle of the run and, later, restarted
//! between two requests. While it is down every call fails at once with `store_unavailable`
//! (no hang, no panic); once it is back the failed batch is sent again with the same event ids,
//! and at the end the stored layer transitions and segment entries and exits equal, row for
//! row, those of a run on a fresh schema that had no outage.
//!
//! A test binary of its own: cargo runs test binaries one after another, so no other test of
//! this workspace uses PostgreSQL while this one stops it. It only runs with
//! `SIYU_TEST_DATABASE_URL` set (as in CI), since it stops the machine's PostgreSQL; see
//! `siyu_store::testing::Cluster`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use siyu_app::{App, AppError, BatchOutcome, EngineMode};
use siyu_domain::Millis;
use siyu_store::testing::{Cluster, TestSchema, fresh_postgres};
use siyu_store::{PostgresStore, Store, TenantId};

/// A call on a store that is down must fail within this.
const FAILS_WITHIN: Duration = Duration::from_secs(5);

/// The batch before which PostgreSQL is stopped, and the one before which it is restarted.
const STOP_BEFORE: usize = 3;
const RESTART_BEFORE: usize = 5;

/// Eight batches of six events, one per fan, minutes apart and ten days ago: far from any
/// window's edge, so that two runs a few seconds apart derive the same.
fn batches(base: Millis) -> Vec<Vec<Value>> {
    const TYPES: [&str; 11] = [
        "follow",
        "video_comment",
        "order",
        "subscribe",
        "video_share",
        "unfollow",
        "follow",
        "order",
        "video_comment",
        "coupon_claim",
        "unfollow",
    ];
    (0..8)
        .map(|b| {
            (0..6)
                .map(|i| {
                    let ty = if b == 0 {
                        "follow"
                    } else {
                        TYPES[(b * 3 + i * 5) % TYPES.len()]
                    };
                    let ts = base + ((b * 6 + i) as Millis) * 60_000;
                    let mut e = json!({
                        "id": format!("b{b}-e{i}"),
                        "type": ty,
                        "ts": siyu_domain::time::format_rfc3339(ts),
                        "identities": {"douyin_open_id": format!("f{i}")},
                    });
                    if ty == "order" {
                        e["props"] = json!({"order_id": format!("o-{b}-{i}"), "amount": 99.5});
                    }
                    e
                })
                .collect()
        })
        .collect()
}

/// The stored triggers, in the order they were stored, with their instants (both runs read one
/// manual clock, set to the same instants), without ids.
fn stored(store: &dyn Store, t: TenantId) -> Vec<String> {
    let mut out: Vec<String> = store
        .transitions(t, None, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "layer fan {} {:?}->{} cause {} seq {:?} event {:?} at {}",
                r.fan, r.from, r.to, r.cause, r.seq, r.event_id, r.at
            )
        })
        .collect();
    out.extend(
        store
            .segment_changes(t, None, None, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|c| {
                format!(
                    "segment {} fan {} entered {} cause {} seq {:?} event {:?} at {}",
                    c.segment, c.fan, c.entered, c.cause, c.seq, c.event_id, c.at
                )
            }),
    );
    out
}

/// What a run leaves in the store.
struct Run {
    triggers: Vec<String>,
    events: u64,
}

/// The services on a fresh schema of their own.
struct Services {
    _schema: TestSchema,
    app: App,
    tenant: TenantId,
    rt: tokio::runtime::Runtime,
}

impl Services {
    fn start(clock: Arc<siyu_domain::time::ManualClock>) -> Services {
        let schema = fresh_postgres();
        let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&schema.url).unwrap());
        let name = siyu_app::TenantName::parse("acme").unwrap();
        siyu_app::tenants::create(&*store, &name).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let app = App::start_with_clock(store, EngineMode::Live, clock).unwrap();
        for (name, expr) in [("followers", "follows"), ("fond", "layer >= favorable")] {
            app.segment_save(tenant, name, expr, None).unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Services {
            _schema: schema,
            app,
            tenant,
            rt,
        }
    }

    fn send(&self, batch: &[Value]) -> Result<BatchOutcome, AppError> {
        let (events, rejected) =
            siyu_app::parse_batch(batch.to_vec(), self.app.ingestor.clock().now());
        assert!(rejected.is_empty(), "{rejected:?}");
        let mut outcome = BatchOutcome::default();
        self.rt
            .block_on(self.app.ingest(self.tenant, events, &mut outcome))?;
        Ok(outcome)
    }

    /// Stops the services and reads what they stored.
    fn finish(self) -> Run {
        self.app.ingestor.tick();
        let store = self.app.store().clone();
        drop(self.app);
        Run {
            triggers: stored(&*store, self.tenant),
            events: store.event_count(self.tenant).unwrap(),
        }
    }
}

/// Asserts that a call on a stopped store failed with `store_unavailable`, and in time.
fn unavailable<T>(what: &str, call: impl FnOnce() -> Result<T, AppError>) {
    let started = Instant::now();
    let result = call();
    let took = started.elapsed();
    match result {
        Err(e) => assert_eq!(e.code(), "store_unavailable", "{what}: {e}"),
        Ok(_) => panic!("{what} succeeded with PostgreSQL stopped"),
    }
    assert!(took < FAILS_WITHIN, "{what} took {took:?} to fail");
}

#[test]
fn an_outage_and_a_restart_lose_no_trigger_and_store_none_twice() {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let started = Instant::now();
    let base = siyu_domain::time::parse_rfc3339("2026-11-20T00:00:00Z").unwrap();
    let batches = batches(base);
    // Both runs read one manual clock each, moved to the same instants: the instants of what
    // they derive are compared too.
    let start = base + 10 * 86_400_000;
    let clock = Arc::new(siyu_domain::time::ManualClock::new(start));

    let quiet = Services::start(clock.clone());
    for batch in &batches {
        clock.advance(60_000);
        assert_eq!(quiet.send(batch).unwrap().accepted, batch.len() as u64);
    }
    let expected = quiet.finish();
    assert!(
        expected.triggers.iter().any(|r| r.starts_with("layer"))
            && expected.triggers.iter().any(|r| r.contains("entered true"))
            && expected
                .triggers
                .iter()
                .any(|r| r.contains("entered false")),
        "the batches make layer transitions, segment entries and exits: {:#?}",
        expected.triggers
    );

    clock.set(start);
    let s = Services::start(clock.clone());
    for (n, batch) in batches.iter().enumerate() {
        clock.advance(60_000);
        if n == STOP_BEFORE {
            let outage = cluster.stop();
            unavailable("a batch", || s.send(batch));
            // Readers answer from memory: the store being down does not stop them.
            let stats = s
                .app
                .stats(s.tenant)
                .expect("stats with PostgreSQL stopped");
            assert_eq!(stats.events, (STOP_BEFORE * batch.len()) as u64);
            unavailable("triggers", || {
                s.app.segment_triggers(s.tenant, None, None, 0, 100)
            });
            s.app.ingestor.tick();
            unavailable("the batch sent again", || s.send(batch));
            let down = outage.end();
            eprintln!("PostgreSQL was down for {down:?}");
        }
        if n == RESTART_BEFORE {
            cluster.restart();
        }
        // The client sends a failed batch again, with the same ids; the first request after
        // PostgreSQL is back succeeds.
        let outcome = s
            .send(batch)
            .unwrap_or_else(|e| panic!("batch {n}, PostgreSQL up: {e}"));
        assert_eq!(
            (outcome.accepted, outcome.duplicates),
            (batch.len() as u64, 0),
            "batch {n}: nothing of a failed attempt was stored"
        );
    }
    let got = s.finish();

    let sent: std::collections::HashSet<&str> = batches
        .iter()
        .flatten()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got.events, sent.len() as u64, "every event once");
    assert_eq!(expected.events, sent.len() as u64);
    assert_eq!(
        got.triggers, expected.triggers,
        "the triggers after an outage and a restart are those of a run without"
    );
    eprintln!(
        "{} events, {} triggers, both runs in {:?}",
        got.events,
        got.triggers.len(),
        started.elapsed()
    );
}
