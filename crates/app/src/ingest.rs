//! The ingest writer: one thread that owns every write to the event log.
//!
//! Requests (HTTP batches, import chunks) are queued; the writer takes whatever is waiting —
//! up to [`MAX_GROUP_EVENTS`] — and commits it in **one transaction** (group commit), then
//! answers each request. So an fsync is shared by every request that arrived while the last
//! one ran, and an answer is only ever sent after the commit: acknowledged means committed.
//!
//! After the commit the writer applies the stored events to the tenant's live engine, in
//! sequence order. If another process wrote to the same tenant in between (a `siyu import`
//! beside a running server), the engine first catches up from the log.
//!
//! [`Writer::step`] is the unit of work, so tests drive it without a thread.

use siyu_domain::Millis;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use siyu_domain::Event;
use siyu_engine::{Stats, TenantEngine};
use siyu_store::{AppendBatch, Appended, Encoded, Store, TenantId};
use tokio::sync::oneshot;

use crate::AppError;

/// A group commit stops taking more requests once it holds this many events.
pub const MAX_GROUP_EVENTS: usize = 20_000;

/// Requests waiting for the writer before senders are made to wait (back-pressure).
const QUEUE_DEPTH: usize = 256;

/// Whether the writer keeps live engines (the server) or only writes (bulk import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    Live,
    WriteOnly,
}

/// The answer to a request: the verdict per event, plus the request's own events handed back,
/// so their memory is freed on the caller's thread rather than on the single writer's.
pub struct Committed {
    pub appended: Vec<Appended>,
    pub events: Vec<Event>,
}

type Reply = oneshot::Sender<Result<Committed, AppError>>;

/// One queued request.
pub struct Job {
    pub tenant: TenantId,
    pub events: Vec<Event>,
    /// `events`, encoded for the log by the sender.
    pub encoded: Vec<Encoded>,
    pub reply: Reply,
}

impl Job {
    /// Encodes on the calling thread.
    pub fn new(tenant: TenantId, events: Vec<Event>, reply: Reply) -> Job {
        let encoded = Encoded::all(&events);
        Job {
            tenant,
            events,
            encoded,
            reply,
        }
    }
}

/// Every tenant's live engine. A std `RwLock`: holders never await, and readers (stats,
/// reports) take it for microseconds.
#[derive(Default)]
pub struct Engines {
    map: RwLock<HashMap<TenantId, Arc<RwLock<TenantEngine>>>>,
}

impl Engines {
    /// Every tenant's engine (a copy of the list, so no lock is held while they are used).
    fn all(&self) -> Vec<(TenantId, Arc<RwLock<TenantEngine>>)> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, e)| (*t, e.clone()))
            .collect()
    }

    fn get_or_create(&self, tenant: TenantId) -> Arc<RwLock<TenantEngine>> {
        if let Some(e) = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
        {
            return e.clone();
        }
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant)
            .or_default()
            .clone()
    }
}

use crate::identity::catch_up;

/// How often the ticker moves every live engine's clock (decay between events).
pub const TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps an engine's live layers current: starts them after a (re)build, moves the clock to
/// now, and stores what it derived since the last call (see [`store_transitions`]: what a
/// failed store could not keep is stored by a later step, never dropped).
pub fn live_step(store: &dyn Store, engine: &mut TenantEngine, tenant: TenantId) {
    let now = siyu_domain::time::now_ms();
    match engine.clock() {
        None => engine.start_live(now),
        Some(_) => engine.tick(now),
    }
    store_transitions(store, engine, tenant);
}

/// Stores what an engine derived — layer transitions, segment entries and exits, automatic
/// tags — with its [`siyu_store::LiveMark`], in one transaction; when there is nothing, the
/// mark alone is moved once per [`TICK`], so a restart resumes from a recent clock.
///
/// Nothing derived is lost and nothing is stored twice: the mark moves only with what was
/// stored, and what could not be stored is given back to the engine, which hands it out again
/// at the next call (a process that stops first re-derives it from the stored mark at start).
pub fn store_transitions(store: &dyn Store, engine: &mut TenantEngine, tenant: TenantId) {
    let Some(clock) = engine.clock() else { return };
    let derived = engine.take_derived();
    if derived.is_empty() && clock - engine.stored_clock() < TICK.as_millis() as Millis {
        return;
    }
    let transitions: Vec<siyu_store::StoredTransition> = derived
        .transitions
        .iter()
        .map(|t| siyu_store::StoredTransition {
            id: 0,
            event_id: t.event_id.clone(),
            fan: t.fan.0,
            from: t.from.map(|l| l.as_str().to_string()),
            to: t.to.as_str().to_string(),
            at: t.at,
            cause: t.cause.as_str().to_string(),
            seq: t.cause.seq(),
        })
        .collect();
    let segment_changes: Vec<siyu_store::StoredSegmentChange> = derived
        .segment_changes
        .iter()
        .map(|c| siyu_store::StoredSegmentChange {
            id: 0,
            segment: c.segment,
            fan: c.fan.0,
            entered: c.entered,
            at: c.at,
            cause: c.cause.as_str().to_string(),
            seq: c.cause.seq(),
            event_id: c.event_id.clone(),
        })
        .collect();
    let tag_changes: Vec<siyu_store::StoredTagChange> = derived
        .auto_tags
        .iter()
        .map(|t| siyu_store::StoredTagChange {
            id: 0,
            fan: t.fan.0,
            tag: t.tag.clone(),
            added: t.on,
            at: t.at,
            source: t.source.clone(),
        })
        .collect();
    let rec = siyu_store::LiveRecord {
        transitions: &transitions,
        segment_changes: &segment_changes,
        tag_changes: &tag_changes,
    };
    let mark = siyu_store::LiveMark {
        clock,
        seq: engine.last_seq(),
        rules_version: engine.rules_version(),
    };
    match store.record_live(tenant, &rec, &mark) {
        Ok(()) => {
            metrics::counter!("siyu_layer_transitions_total").increment(transitions.len() as u64);
            metrics::counter!("siyu_segment_changes_total").increment(segment_changes.len() as u64);
            engine.set_stored_clock(clock);
            if !segment_changes.is_empty() {
                crate::segments::notify_changes();
            }
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                tenant,
                kept = transitions.len() + segment_changes.len() + tag_changes.len(),
                "storing derived changes failed; they are kept and stored with the next step"
            );
            engine.keep_unstored(derived);
        }
    }
}

/// The writer's state; [`Writer::step`] commits one group.
pub struct Writer {
    store: Arc<dyn Store>,
    engines: Option<Arc<Engines>>,
}

impl Writer {
    pub fn new(store: Arc<dyn Store>, engines: Option<Arc<Engines>>) -> Writer {
        Writer { store, engines }
    }

    /// Commits `jobs` in one transaction and answers each. On a store error every job gets
    /// the error and nothing is applied (the transaction rolled back).
    pub fn step(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let batches: Vec<AppendBatch<'_>> = jobs
            .iter()
            .map(|j| AppendBatch {
                tenant: j.tenant,
                events: &j.events,
                encoded: &j.encoded,
            })
            .collect();
        let result = self.store.append(&batches, siyu_domain::time::now_ms());
        drop(batches);
        let events: usize = jobs.iter().map(|j| j.events.len()).sum();
        metrics::histogram!("siyu_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("siyu_ingest_group_events").record(events as f64);
        match result {
            Ok(outcomes) => {
                // The engine is updated before the answer, so a client that reads right
                // after its acknowledgement sees its own events.
                for (job, appended) in jobs.into_iter().zip(outcomes) {
                    if let Some(engines) = &self.engines {
                        self.apply(engines, job.tenant, &job.events, &appended);
                    }
                    drop(job.encoded);
                    let _ = job.reply.send(Ok(Committed {
                        appended,
                        events: job.events,
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events, "append failed; the batch was not stored");
                let code = e.code();
                let message = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(AppError::Commit {
                        code,
                        message: message.clone(),
                    }));
                }
            }
        }
    }

    fn apply(&self, engines: &Engines, tenant: TenantId, events: &[Event], out: &[Appended]) {
        let engine = engines.get_or_create(tenant);
        let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
        live_step(&*self.store, &mut engine, tenant);
        let first_new = out.iter().find_map(|a| match a {
            Appended::Stored(s) => Some(*s),
            Appended::Duplicate => None,
        });
        let Some(first_new) = first_new else { return };
        if first_new > engine.last_seq() + 1 {
            // Something else may have written between (or the seq range has a gap): replay
            // from the log, which also covers this batch.
            if let Err(e) = catch_up(&*self.store, &mut engine, tenant) {
                tracing::error!(error = %e, tenant, "engine catch-up failed");
            }
        } else {
            for (e, a) in events.iter().zip(out) {
                if let Appended::Stored(seq) = a {
                    engine.apply(*seq, e);
                }
            }
        }
        if let Err(e) = crate::identity::correct(&*self.store, &mut engine, tenant) {
            tracing::error!(error = %e, tenant, "identity correction failed");
        }
        live_step(&*self.store, &mut engine, tenant);
    }
}

/// The handle to the writer thread.
pub struct Ingestor {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The ticker (live mode): dropping the sender stops it.
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    engines: Option<Arc<Engines>>,
    store: Arc<dyn Store>,
}

impl Ingestor {
    /// Loads engines (in live mode) and starts the writer thread.
    pub fn start(store: Arc<dyn Store>, mode: EngineMode) -> Result<Ingestor, AppError> {
        let engines = match mode {
            EngineMode::WriteOnly => None,
            EngineMode::Live => {
                let engines = Arc::new(Engines::default());
                for t in store.tenants()? {
                    let engine = engines.get_or_create(t.id);
                    let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
                    *engine = crate::identity::resume_live(&*store, t.id)?;
                    live_step(&*store, &mut engine, t.id);
                }
                Some(engines)
            }
        };
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
        let mut writer = Writer::new(store.clone(), engines.clone());
        let thread = std::thread::Builder::new()
            .name("siyu-writer".into())
            .spawn(move || run(&mut writer, rx))
            .map_err(|_| AppError::WriterStopped)?;
        let ticker = match &engines {
            Some(engines) => {
                let (stop, stopped) = mpsc::channel::<()>();
                let (store, engines) = (store.clone(), engines.clone());
                let handle = std::thread::Builder::new()
                    .name("siyu-ticker".into())
                    .spawn(move || {
                        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK)
                        {
                            tick_all(&*store, &engines);
                        }
                    })
                    .map_err(|_| AppError::WriterStopped)?;
                Some((stop, handle))
            }
            None => None,
        };
        Ok(Ingestor {
            tx: Some(tx),
            thread: Some(thread),
            ticker,
            engines,
            store,
        })
    }

    /// Queues events and returns the receiver of the verdicts, without waiting: callers that
    /// stream (import) keep a few in flight.
    pub fn submit(
        &self,
        tenant: TenantId,
        events: Vec<Event>,
    ) -> Result<oneshot::Receiver<Result<Committed, AppError>>, AppError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppError::WriterStopped)?;
        tx.send(Job::new(tenant, events, reply))
            .map_err(|_| AppError::WriterStopped)?;
        Ok(rx)
    }

    /// Stores events and waits for the commit. The queue send may block briefly under
    /// back-pressure, so it runs on a blocking thread.
    pub async fn append(
        &self,
        tenant: TenantId,
        events: Vec<Event>,
    ) -> Result<Vec<Appended>, AppError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone().ok_or(AppError::WriterStopped)?;
        let job = Job::new(tenant, events, reply);
        match tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || tx.send(job))
                    .await
                    .map_err(|_| AppError::WriterStopped)?
                    .map_err(|_| AppError::WriterStopped)?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(AppError::WriterStopped),
        }
        Ok(rx.await.map_err(|_| AppError::WriterStopped)??.appended)
    }

    /// Totals for a tenant from its live engine.
    pub fn stats(&self, tenant: TenantId) -> Result<Stats, AppError> {
        self.with_engine(tenant, |e| e.stats())
    }

    /// Runs `f` on a tenant's engine, first brought up to date with the store (events and
    /// decisions written elsewhere). Without live engines (bulk import), the engine is
    /// replayed from the log for this call.
    pub fn with_engine<T>(
        &self,
        tenant: TenantId,
        f: impl FnOnce(&mut TenantEngine) -> T,
    ) -> Result<T, AppError> {
        match &self.engines {
            Some(engines) => {
                let engine = engines.get_or_create(tenant);
                let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
                catch_up(&*self.store, &mut engine, tenant)?;
                live_step(&*self.store, &mut engine, tenant);
                let out = f(&mut engine);
                // `f` may have rebuilt the engine (an undone merge): restart its live layers.
                live_step(&*self.store, &mut engine, tenant);
                Ok(out)
            }
            None => {
                let mut engine = crate::identity::replay(&*self.store, tenant)?;
                Ok(f(&mut engine))
            }
        }
    }

    /// Moves every live engine's clock to now (the ticker's step; tests call it directly).
    pub fn tick(&self) {
        if let Some(engines) = &self.engines {
            tick_all(&*self.store, engines);
        }
    }

    /// Stops taking requests, lets the writer finish what is queued, and waits for it; then
    /// stores a snapshot of each live engine that is far past its last one, so the next start
    /// replays little.
    pub fn shutdown(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            drop(stop);
            let _ = handle.join();
        }
        self.tx.take();
        let Some(t) = self.thread.take() else { return };
        let _ = t.join();
        if let Some(engines) = &self.engines {
            for (tenant, engine) in engines.all() {
                let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
                crate::snapshots::save_if_due(&*self.store, tenant, &mut engine);
            }
        }
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One tick of every live engine.
fn tick_all(store: &dyn Store, engines: &Engines) {
    for (tenant, engine) in engines.all() {
        let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
        // What another process stored (the CLI beside a server: decisions, rules, tags, saved
        // segments) is in force within a tick even when no request comes.
        if let Err(e) = catch_up(store, &mut engine, tenant) {
            tracing::error!(error = %e, tenant, "engine catch-up failed");
        }
        live_step(store, &mut engine, tenant);
    }
}

fn run(writer: &mut Writer, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut n = first.events.len();
        let mut jobs = vec![first];
        while n < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.events.len();
                    jobs.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        writer.step(jobs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siyu_domain::parse_event;
    use siyu_store::{Durability, SqliteStore};

    fn ev(id: &str, open_id: &str) -> Event {
        parse_event(
            &format!(r#"{{"id":"{id}","type":"follow","ts":"2026-10-01T00:00:00Z","identities":{{"douyin_open_id":"{open_id}"}}}}"#),
            siyu_domain::time::now_ms(),
        )
        .unwrap()
    }

    #[test]
    fn a_step_commits_answers_and_feeds_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = store.create_tenant("a", "w", "a", 0).unwrap().id;
        let engines = Arc::new(Engines::default());
        let mut w = Writer::new(store.clone(), Some(engines.clone()));
        let (r1, mut rx1) = oneshot::channel();
        let (r2, mut rx2) = oneshot::channel();
        w.step(vec![
            Job::new(t, vec![ev("1", "a"), ev("2", "b")], r1),
            Job::new(t, vec![ev("2", "b"), ev("3", "a")], r2),
        ]);
        let c1 = rx1.try_recv().unwrap().unwrap();
        assert!(matches!(
            c1.appended[..],
            [Appended::Stored(1), Appended::Stored(2)]
        ));
        assert_eq!(c1.events.len(), 2, "the events come back to the caller");
        let c2 = rx2.try_recv().unwrap().unwrap();
        assert!(matches!(
            c2.appended[..],
            [Appended::Duplicate, Appended::Stored(3)]
        ));
        let stats = engines.get_or_create(t).read().unwrap().stats();
        assert_eq!((stats.events, stats.fans), (3, 2));
    }

    #[test]
    fn the_engine_catches_up_with_writes_from_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = store.create_tenant("a", "w", "a", 0).unwrap().id;
        let ing = Ingestor::start(store.clone(), EngineMode::Live).unwrap();
        // Another process appends directly.
        let events = [ev("x", "z")];
        let encoded = Encoded::all(&events);
        store
            .append(
                &[AppendBatch {
                    tenant: t,
                    events: &events,
                    encoded: &encoded,
                }],
                0,
            )
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(ing.append(t, vec![ev("y", "q")])).unwrap();
        assert_eq!(ing.stats(t).unwrap().events, 2);
    }

    #[test]
    fn shutdown_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = store.create_tenant("a", "w", "a", 0).unwrap().id;
        let mut ing = Ingestor::start(store.clone(), EngineMode::WriteOnly).unwrap();
        let rxs: Vec<_> = (0..50)
            .map(|i| ing.submit(t, vec![ev(&i.to_string(), "o")]).unwrap())
            .collect();
        ing.shutdown();
        for rx in rxs {
            assert!(rx.blocking_recv().unwrap().is_ok());
        }
        assert_eq!(store.event_count(t).unwrap(), 50);
    }

    #[test]
    fn a_server_stopping_far_past_its_snapshot_stores_one() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = store.create_tenant("a", "w", "a", 0).unwrap().id;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut ing = Ingestor::start(store.clone(), EngineMode::Live).unwrap();
        let n = crate::snapshots::SNAPSHOT_AFTER;
        let batch = |b: i64| -> Vec<Event> {
            (0..1000)
                .map(|i| ev(&format!("{b}-{i}"), &format!("f{i}")))
                .collect()
        };
        for b in 0..n / 1000 - 1 {
            rt.block_on(ing.append(t, batch(b))).unwrap();
        }
        ing.shutdown();
        assert_eq!(store.snapshot(t).unwrap(), None, "not yet far enough past");
        let mut ing = Ingestor::start(store.clone(), EngineMode::Live).unwrap();
        rt.block_on(ing.append(t, batch(n))).unwrap();
        ing.shutdown();
        let snap = store.snapshot(t).unwrap().expect("stored at shutdown");
        assert_eq!(snap.last_seq, n);
        let engine = siyu_engine::TenantEngine::from_snapshot(&snap.data).unwrap();
        assert_eq!(engine.stats().events, n as u64);
    }

    mod nothing_derived_is_lost {
        //! A store that fails to record derived changes loses none of them and stores none
        //! twice: what a failed step could not store is stored by a later one, and what a
        //! process could not store before it stopped is derived again at its next start.
        use super::*;
        use siyu_store::testing::Faulty;

        /// A follow and an unfollow for a few fans: transitions, segment entries and exits.
        fn batches() -> Vec<Vec<Event>> {
            (0..6)
                .map(|b| {
                    (0..4)
                        .map(|i| {
                            let ty = if (b + i) % 3 == 2 { "unfollow" } else { "follow" };
                            let text = format!(
                                r#"{{"id":"{b}-{i}","type":"{ty}","ts":"2026-11-{:02}T00:00:00Z","identities":{{"douyin_open_id":"f{i}"}}}}"#,
                                b + 1
                            );
                            parse_event(&text, siyu_domain::time::now_ms()).unwrap()
                        })
                        .collect()
                })
                .collect()
        }

        /// What was stored, without the ids and the wall-clock times (the clock is not
        /// injected yet, so two runs read it at different instants).
        fn stored(store: &dyn Store, t: TenantId) -> Vec<String> {
            let mut out: Vec<String> = store
                .transitions(t, None, 0, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|r| {
                    format!(
                        "layer {} {:?}->{} {} {:?} {:?}",
                        r.fan, r.from, r.to, r.cause, r.seq, r.event_id
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
                            "segment {} {} {} {} {:?} {:?}",
                            c.segment, c.fan, c.entered, c.cause, c.seq, c.event_id
                        )
                    }),
            );
            out
        }

        /// Runs the batches through a server on a store failing the chosen `record_live`
        /// calls; with `stop_early`, the server stops right after the last failure and a new
        /// one starts on the same store.
        fn run(fail: &[u32], stop_early: bool) -> (Vec<String>, u32) {
            run_with(fail, &[], stop_early)
        }

        /// [`run`], also failing the chosen appends; a client whose batch failed sends it again.
        fn run_with(fail: &[u32], fail_append: &[u32], stop_early: bool) -> (Vec<String>, u32) {
            let dir = tempfile::tempdir().unwrap();
            let inner: Arc<dyn Store> =
                Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
            let t = inner.create_tenant("a", "w", "a", 0).unwrap().id;
            inner.create_segment(t, "fans", "follows", None, 0).unwrap();
            let faulty = Arc::new(Faulty::new(inner.clone(), fail, fail_append));
            let store: Arc<dyn Store> = faulty.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut ing = Ingestor::start(store.clone(), EngineMode::Live).unwrap();
            for batch in batches() {
                if rt.block_on(ing.append(t, batch.clone())).is_err() {
                    rt.block_on(ing.append(t, batch)).unwrap();
                }
            }
            if stop_early {
                ing.shutdown();
                drop(ing);
                ing = Ingestor::start(inner.clone(), EngineMode::Live).unwrap();
            }
            ing.tick();
            let calls = faulty.record_live_calls();
            drop(ing);
            (stored(&*inner, t), calls)
        }

        #[test]
        fn failed_stores_are_stored_later_exactly_once() {
            let (expected, _) = run(&[], false);
            assert!(
                expected.iter().any(|r| r.starts_with("layer"))
                    && expected.iter().any(|r| r.starts_with("segment")),
                "{expected:#?}"
            );
            for fail in [&[2u32][..], &[1, 2, 3], &[3, 5, 6, 7, 8]] {
                let (got, calls) = run(fail, false);
                assert!(
                    calls > *fail.iter().max().unwrap(),
                    "the failures were reached"
                );
                assert_eq!(got, expected, "failing record_live calls {fail:?}");
            }
        }

        #[test]
        fn a_failed_append_stores_nothing_and_its_retry_derives_once() {
            let (expected, _) = run(&[], false);
            let (got, _) = run_with(&[4], &[2, 5], false);
            assert_eq!(got, expected);
        }

        #[test]
        fn what_a_stopped_server_could_not_store_is_derived_again_at_start() {
            let (expected, _) = run(&[], false);
            // Every store after the first fails until the server stops: the next start resumes
            // from the first mark and derives the rest again.
            let fail: Vec<u32> = (2..1000).collect();
            let (got, _) = run(&fail, true);
            assert_eq!(got, expected);
        }
    }
}
