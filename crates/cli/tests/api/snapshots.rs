//! One-shot CLI reads start from the tenant's engine snapshot: they answer exactly what a
//! replay of the whole log answers, before and after an undone merge, and with a damaged
//! snapshot.

use serde_json::Value;
use siyu_engine::FanId;
use siyu_store::{Durability, Location, StoredSnapshot};

use crate::both;
use crate::cli::{json_of, run};
use crate::durability::siyu;
use crate::helpers::{Backend, fresh_location, store_flags};

const AS_OF: &str = "2030-01-01T00:00:00Z";

/// A brand with enough events that the demo's replay stores a snapshot.
const DEMO: &[&str] = &["demo", "--fans", "5000", "--days", "30", "--json"];

/// The answers of the read commands, as one JSON value; `snapshots: false` replays the log.
fn reads(flags: &[String], snapshots: bool, fan: i64) -> Value {
    let run = |args: &[&str]| {
        let mut cmd = siyu();
        cmd.args(args).args(flags).env("SIYU_LOG", "warn");
        if !snapshots {
            cmd.env("SIYU_SNAPSHOTS", "off");
        }
        json_of(&cmd.output().unwrap())
    };
    let mut segment = run(&[
        "segment",
        "count",
        "follows and count(video_view, 30d) >= 2",
        "--as-of",
        AS_OF,
        "--json",
    ]);
    // How long the count took is not an answer.
    segment
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.ends_with("ms"));
    let fan = fan.to_string();
    serde_json::json!({
        "layers": run(&["report", "layers", "--as-of", AS_OF, "--json"]),
        "dedup": run(&["report", "dedup", "--json"]),
        "duplicates": run(&["identity", "duplicates", "--json"]),
        "segment": segment,
        "fan": run(&["fan", "show", &fan, "--json"])["fan"],
        "identities": run(&["fan", "show", &fan, "--json"])["identities"],
    })
}

fn stored(location: &Location) -> Option<StoredSnapshot> {
    let store = siyu_store::open(location, Durability::Normal).unwrap();
    let tenant = siyu_app::App::resolve_tenant(&*store, None).unwrap();
    store.snapshot(tenant.id).unwrap()
}

/// A fan that absorbed another, and the one it absorbed.
fn merged_fan(location: &Location) -> (i64, i64) {
    let store = siyu_store::open(location, Durability::Normal).unwrap();
    let tenant = siyu_app::App::resolve_tenant(&*store, None).unwrap();
    let engine = siyu_app::identity::replay(&*store, tenant.id).unwrap();
    (1..1_000_000)
        .find_map(|i| {
            let m = engine.identities().merges_of(FanId(i));
            m.first().map(|m| (m.into.0, m.from.0))
        })
        .expect("the demo brand has merges")
}

async fn reads_from_the_snapshot_answer_what_the_log_answers(b: Backend) {
    let (location, _d) = tokio::task::spawn_blocking(move || fresh_location(b))
        .await
        .unwrap();
    let flags = store_flags(&location);
    let v = json_of(&run(DEMO, &flags));
    let events = v["stats"]["events"].as_i64().unwrap();
    assert!(
        events > siyu_app::snapshots::SNAPSHOT_AFTER,
        "{events} events"
    );
    let loc = location.clone();
    let snap = tokio::task::spawn_blocking(move || stored(&loc))
        .await
        .unwrap()
        .expect("the demo stored a snapshot");
    assert_eq!(snap.format, siyu_engine::snapshot::FORMAT);
    // The snapshot covers the import; the demo's SOP part takes in a few hundred events after
    // it (today's slice and the journeys' outcomes), which reads replay as the tail.
    let imported = v["import"]["accepted"].as_i64().unwrap();
    assert!(snap.last_seq >= imported, "{} < {imported}", snap.last_seq);
    assert!(snap.last_seq <= events, "{} > {events}", snap.last_seq);

    let loc = location.clone();
    let (into, from) = tokio::task::spawn_blocking(move || merged_fan(&loc))
        .await
        .unwrap();
    let replayed = reads(&flags, false, into);
    assert_eq!(reads(&flags, true, into), replayed);

    // An undone merge places a decision before the snapshot's position: the snapshot is
    // overtaken, the next read replays the log and stores a new one.
    json_of(&run(
        &["identity", "undo", &from.to_string(), "--json"],
        &flags,
    ));
    let replayed = reads(&flags, false, into);
    assert_ne!(replayed["identities"], Value::Null);
    assert_eq!(reads(&flags, true, into), replayed);
    let loc = location.clone();
    let after = tokio::task::spawn_blocking(move || stored(&loc))
        .await
        .unwrap()
        .unwrap();
    assert!(
        after.decisions_seen > snap.decisions_seen,
        "a new snapshot, after the undo"
    );

    // A damaged snapshot is ignored (and replaced), never misread.
    let loc = location.clone();
    tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, Durability::Normal).unwrap();
        let tenant = siyu_app::App::resolve_tenant(&*store, None).unwrap();
        let mut bad = store.snapshot(tenant.id).unwrap().unwrap();
        let mid = bad.data.len() / 2;
        bad.data[mid] ^= 0xff;
        bad.decisions_seen += 1;
        store.put_snapshot(tenant.id, &bad).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(reads(&flags, true, into), replayed);
    let loc = location.clone();
    let healed = tokio::task::spawn_blocking(move || stored(&loc))
        .await
        .unwrap()
        .unwrap();
    assert!(
        siyu_engine::TenantEngine::from_snapshot(&healed.data).is_ok(),
        "the damaged snapshot was replaced"
    );
}

/// A server start from a snapshot, turning live at the stored mark, is the start a replay of
/// the whole log gives.
async fn a_server_starts_from_the_snapshot_as_from_the_log(b: Backend) {
    // Store calls block (the PostgreSQL client has a runtime of its own): a plain thread.
    std::thread::spawn(move || server_start(b)).join().unwrap();
}

fn server_start(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(DEMO, &flags));
    let store = siyu_store::open(&location, Durability::Normal).unwrap();
    let tenant = siyu_app::App::resolve_tenant(&*store, None).unwrap().id;
    let as_of = siyu_domain::time::parse_rfc3339(AS_OF).unwrap();
    let answers = move |app: &siyu_app::App| {
        format!(
            "{:?} {:?} {:?}",
            app.stats(tenant).unwrap(),
            app.layers(tenant, as_of).unwrap(),
            app.dedup_report(tenant, None, None).unwrap(),
        )
    };
    // A first server stores a live mark past the snapshot, with an event of its own.
    let app = siyu_app::App::start(store.clone(), siyu_app::EngineMode::Live).unwrap();
    let event = siyu_domain::parse_event(
        r#"{"id":"late-1","type":"follow","ts":"2026-01-01T00:00:00Z","identities":{"phone":"13900000001"}}"#,
        siyu_domain::time::now_ms(),
    )
    .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(app.ingestor.append(tenant, vec![event]))
        .unwrap();
    app.ingestor.tick();
    drop(app);
    let snap = store
        .snapshot(tenant)
        .unwrap()
        .expect("the demo stored one");
    let mark = store
        .live_mark(tenant)
        .unwrap()
        .expect("the server stored its mark");
    assert!(
        snap.last_seq < mark.seq,
        "the start replays a tail past the snapshot"
    );

    let app = siyu_app::App::start(store.clone(), siyu_app::EngineMode::Live).unwrap();
    assert_eq!(app.stats(tenant).unwrap().events as i64, mark.seq);
    let from_snapshot = answers(&app);
    drop(app);
    store.drop_snapshot(tenant).unwrap();
    let app = siyu_app::App::start(store.clone(), siyu_app::EngineMode::Live).unwrap();
    assert_eq!(from_snapshot, answers(&app));
}

both!(
    reads_from_the_snapshot_answer_what_the_log_answers,
    a_server_starts_from_the_snapshot_as_from_the_log
);
