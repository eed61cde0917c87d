//! The writer: one thread that owns every write to the event log and is the **only mutator**
//! of the live engines.
//!
//! Requests (HTTP batches, import chunks) are queued; the writer takes whatever is waiting —
//! up to [`MAX_GROUP_EVENTS`] — and commits it in **one transaction** (group commit), then
//! answers each request. So an fsync is shared by every request that arrived while the last
//! one ran, and an answer is only ever sent after the commit: acknowledged means committed.
//!
//! After the commit the writer applies the stored events to the tenant's live engine, in
//! sequence order, answers, and then stores what they derived (layer transitions, segment
//! entries and exits, automatic tags) before it takes the next group: the answer waits for one
//! fsync, not two. Nothing derived can be lost by that order — the stored mark moves only with
//! what was stored, and a start re-derives from it — and a read of the derived logs (the
//! trigger stream, transitions, segment triggers, tag history) first waits for the groups
//! applied before it to be stored ([`Ingestor::derived_barrier`]); the trigger stream is never
//! read past what is stored ([`TenantEngine::flushed_seq`]). Operator actions — identity
//! decisions, undo, rules, tags, segment saves — are [`Command`]s to the same thread, answered
//! after their commit. Every [`POLL`] the writer also looks for what another process wrote
//! (`siyu import`, the CLI's decisions, rules and tags beside a running server) and takes it
//! in; every [`TICK`] it moves the engines' clocks (decay between events, the segment sweep).
//!
//! Readers ([`Ingestor::read`]) take the engine's read lock and do no I/O. The writer holds the
//! write lock only for in-memory work: the store is queried and written with at most a read
//! lock held, and a replay (an undo, a shared value found) is built beside the engine and
//! swapped in. So a reader waits for the application of one group, never for a commit. What a
//! caller reads after an acknowledged write includes that write: the answer comes after the
//! engine took it in (read-your-writes).
//!
//! [`Writer::step`], [`Writer::command`], [`Writer::poll`] and [`Writer::tick`] are the units
//! of work, so tests drive them without a thread; time comes from one injected [`Clock`].

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siyu_domain::time::{Clock, SystemClock};
use siyu_domain::{Event, Millis};
use siyu_engine::{Cause, Derived, Stats, TenantEngine};
use siyu_store::{AppendBatch, Appended, Encoded, LiveMark, Store, StoreError, TenantId};
use tokio::sync::oneshot;

use crate::AppError;
use crate::identity::{News, catch_up};

/// A group commit stops taking more requests once it holds this many events.
pub const MAX_GROUP_EVENTS: usize = 20_000;

/// Requests waiting for the writer before senders are made to wait (back-pressure).
const QUEUE_DEPTH: usize = 256;

/// How often the writer moves every live engine's clock (decay between events).
pub const TICK: Duration = Duration::from_secs(60);

/// How often the writer looks for what another process wrote.
pub const POLL: Duration = Duration::from_secs(1);

/// Whether the writer keeps live engines (the server) or only writes (bulk import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    Live,
    WriteOnly,
    /// Live engines only for the tenants this node holds the lease of (several nodes on one
    /// PostgreSQL, see [`crate::owners`]): none at start; [`Ingestor::adopt`] adds one,
    /// [`Ingestor::release`] and [`Ingestor::disown`] take it away, and requests for any other
    /// tenant are refused with [`AppError::NotOwner`].
    Leased,
}

/// The answer to a request: the verdict per event, plus the request's own events handed back,
/// so their memory is freed on the caller's thread rather than on the single writer's.
pub struct Committed {
    pub appended: Vec<Appended>,
    pub events: Vec<Event>,
}

type Reply = oneshot::Sender<Result<Committed, AppError>>;

/// One queued append.
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

/// A tenant's live engine, shared between its one writer and any number of readers.
pub type EngineCell = RwLock<TenantEngine>;

/// What a [`Command`] runs: the store and the tenant's engine, brought up to date with the
/// store just before. It takes the write lock itself, for what it mutates, and returns its
/// answer, which the writer sends once what the command derived is stored.
pub type CommandFn = Box<dyn FnOnce(&dyn Store, &EngineCell) -> (Answer, Then) + Send>;

/// What the writer does after a command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Store what it derived, then answer.
    Answer,
    /// The command recorded what only a replay can apply (an undone merge): rebuild the
    /// engine beside the live one, swap it in, and answer after that.
    Rebuild,
}

/// Sends a command's answer.
pub type Answer = Box<dyn FnOnce() + Send>;

/// An operator action for the writer to run on one tenant's engine.
pub struct Command {
    pub tenant: TenantId,
    pub run: CommandFn,
}

enum Work {
    Append(Job),
    Command(Command),
    /// A tick now, answered when done.
    Tick(mpsc::SyncSender<()>),
    /// A replay built off the writer is ready to swap in.
    Rebuilt,
    /// A tenant this node took the lease of, with its engine resumed (see [`crate::owners`]).
    Adopt(TenantId, Box<TenantEngine>, mpsc::SyncSender<()>),
    /// Store what a tenant's engine derived, then drop it: its lease is given up next.
    Release(TenantId, mpsc::SyncSender<()>),
    /// Drop a tenant's engine at once: its lease was lost (nothing more can be stored).
    Disown(TenantId),
    /// Finish what is queued before this, then stop.
    Stop,
}

/// Every tenant's live engine. A std `RwLock`: holders never await, and the writer holds a
/// write lock only while it changes memory.
#[derive(Default)]
pub struct Engines {
    map: RwLock<HashMap<TenantId, Arc<EngineCell>>>,
}

impl Engines {
    /// Every tenant's engine (a copy of the list, so no lock is held while they are used).
    fn all(&self) -> Vec<(TenantId, Arc<EngineCell>)> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, e)| (*t, e.clone()))
            .collect()
    }

    fn get(&self, tenant: TenantId) -> Option<Arc<EngineCell>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .cloned()
    }

    fn insert(&self, tenant: TenantId, engine: TenantEngine) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, Arc::new(RwLock::new(engine)));
    }

    fn remove(&self, tenant: TenantId) -> Option<Arc<EngineCell>> {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tenant)
    }

    fn get_or_create(&self, tenant: TenantId) -> Arc<EngineCell> {
        if let Some(e) = self.get(tenant) {
            return e;
        }
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant)
            .or_default()
            .clone()
    }
}

/// The write lock of an engine (a poisoned lock is taken over: the engine's state is still
/// consistent, since no mutation panics half-way on input).
pub fn write_engine(cell: &EngineCell) -> std::sync::RwLockWriteGuard<'_, TenantEngine> {
    cell.write().unwrap_or_else(|p| p.into_inner())
}

/// The read lock of an engine.
pub fn read_engine(cell: &EngineCell) -> std::sync::RwLockReadGuard<'_, TenantEngine> {
    cell.read().unwrap_or_else(|p| p.into_inner())
}

use {read_engine as read, write_engine as write};

/// Keeps an engine's live layers current: starts them after a (re)build, moves the clock to
/// `now`, and stores what it derived since the last call (see [`store_transitions`]).
pub fn live_step(store: &dyn Store, engine: &mut TenantEngine, tenant: TenantId, now: Millis) {
    advance(engine, now);
    store_transitions(store, engine, tenant);
}

/// Starts the live layers after a (re)build, or moves their clock to `now` (never back).
fn advance(engine: &mut TenantEngine, now: Millis) {
    match engine.clock() {
        None => engine.start_live(now),
        Some(_) => engine.tick(now),
    }
}

/// Stores what an engine derived — layer transitions, segment entries and exits, automatic
/// tags — with its [`siyu_store::LiveMark`], in one transaction; when there is nothing, the
/// mark alone is moved once per [`TICK`], so a restart resumes from a recent clock.
///
/// Nothing derived is lost and nothing is stored twice: the mark moves only with what was
/// stored, and what could not be stored is given back to the engine, which hands it out again
/// at the next call (a process that stops first re-derives it from the stored mark at start).
pub fn store_transitions(store: &dyn Store, engine: &mut TenantEngine, tenant: TenantId) {
    if let Some((derived, mark)) = take_record(engine) {
        let stored = record(store, tenant, &derived, &mark);
        settle(engine, tenant, derived, &mark, stored);
    }
}

/// [`store_transitions`] for a shared engine: the write lock is held to take what was derived
/// and to settle the outcome, not while the store commits. Only the engine's one writer calls
/// this, so nothing else changes the engine in between.
///
/// Every unit of the writer ends here, so this is also where waiting readers of the trigger
/// stream are woken: events it applied and rows it stored are visible now.
fn flush(store: &dyn Store, cell: &EngineCell, tenant: TenantId) {
    // Bound first: the write guard must be let go before the store commits.
    let taken = take_record(&mut write(cell));
    if let Some((derived, mark)) = taken {
        let stored = record(store, tenant, &derived, &mark);
        settle(&mut write(cell), tenant, derived, &mark, stored);
    }
    crate::triggers::notify();
}

/// What is due to be stored, and the mark to store it with. When nothing is, nothing derived
/// waits to be stored: the trigger stream may be read up to the last event.
fn take_record(engine: &mut TenantEngine) -> Option<(Derived, LiveMark)> {
    let nothing = |engine: &mut TenantEngine| {
        engine.set_flushed_seq(engine.last_seq());
        None
    };
    let Some(clock) = engine.clock() else {
        return nothing(engine);
    };
    let derived = engine.take_derived();
    if derived.is_empty() && clock - engine.stored_clock() < TICK.as_millis() as Millis {
        return nothing(engine);
    }
    let mark = LiveMark {
        clock,
        seq: engine.last_seq(),
        rules_version: engine.rules_version(),
    };
    Some((derived, mark))
}

fn record(
    store: &dyn Store,
    tenant: TenantId,
    derived: &Derived,
    mark: &LiveMark,
) -> Result<(), StoreError> {
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
    store.record_live(tenant, &rec, mark)?;
    metrics::counter!("siyu_layer_transitions_total").increment(transitions.len() as u64);
    metrics::counter!("siyu_segment_changes_total").increment(segment_changes.len() as u64);
    Ok(())
}

fn settle(
    engine: &mut TenantEngine,
    tenant: TenantId,
    derived: Derived,
    mark: &LiveMark,
    stored: Result<(), StoreError>,
) {
    match stored {
        Ok(()) => {
            engine.set_stored_clock(mark.clock);
            engine.set_flushed_seq(mark.seq);
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                tenant,
                kept = derived.transitions.len() + derived.segment_changes.len() + derived.auto_tags.len(),
                "storing derived changes failed; they are kept and stored with the next step"
            );
            engine.keep_unstored(derived);
        }
    }
}

/// Counts the writer's groups applied to the engines and those whose derived records were
/// stored after their answers, so that a read of the derived logs waits for the group its
/// caller's acknowledged write was in (read-your-writes for transitions and triggers too).
/// Only groups of appends are counted: they are the only work answered before what it derived
/// is stored. A command, a poll and a tick store what they derived before they answer (or
/// before the writer takes the next work), so a read after them finds it without waiting.
#[derive(Default)]
pub struct Flushes {
    /// (groups applied, groups whose derived records were then stored or kept for retry).
    state: Mutex<(u64, u64)>,
    stored: Condvar,
}

impl Flushes {
    fn applied(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
    }

    fn flushed(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 = s.0;
        self.stored.notify_all();
    }

    /// Waits until every group applied before the call has had its derived records stored
    /// (microseconds after its answers), or `limit` passed: what a failing store kept for its
    /// next attempt counts as stored here, so nobody waits for a store that is down.
    pub fn wait(&self, limit: Duration) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let target = s.0;
        let _ = self
            .stored
            .wait_timeout_while(s, limit, |s| s.1 < target)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// The writer's state; see the module docs for its units of work.
pub struct Writer {
    flushes: Arc<Flushes>,
    store: Arc<dyn Store>,
    engines: Option<Arc<Engines>>,
    clock: Arc<dyn Clock>,
    /// Tenants whose replay is being built off the writer, with the answers waiting for it.
    rebuilding: HashMap<TenantId, Vec<Answer>>,
    rebuilt_tx: mpsc::Sender<Rebuilt>,
    rebuilt: Receiver<Rebuilt>,
    /// The writer's own queue, to be woken when a replay is ready (without it, the next poll
    /// takes the replay in).
    wake: Option<SyncSender<Work>>,
    /// When each tenant's snapshot was last stored by a tick (see [`SNAPSHOT_EVERY`]).
    snapshot_at: HashMap<TenantId, Millis>,
    /// The snapshot being stored off the writer's thread, if one is (one at a time).
    storing: Option<Storing>,
    /// When each tenant's rebuild under way started, and when its last one ended and how
    /// long it took: automatic rebuilds are spaced by it (see [`REBUILD_SPACING`]).
    rebuild_started: HashMap<TenantId, Instant>,
    rebuilt_at: HashMap<TenantId, (Instant, Duration)>,
    /// [`EngineMode::Leased`]: engines only for adopted tenants.
    leased: bool,
}

/// An automatic rebuild (values found shared after merges, or a decision placed in the past
/// by another process, seen by the writer's own poll) starts no sooner than this many times
/// the last rebuild's duration after it ended, so that replays of a large log take at most a
/// fifth of one core while ingest goes on: a brand whose ingest keeps finding shared values
/// (a store's phone on many orders) otherwise replays its whole log every second. What such a
/// rebuild corrects waits meanwhile (the merges through a shared value stay merged a little
/// longer, and are split with `identity` causes when it lands). An operator's action that needs
/// a replay (an undo), a command's catch-up and an explicit [`Ingestor::tick`] do not wait.
pub const REBUILD_SPACING: u32 = 4;

/// The nice value of the thread that builds a replay beside a live engine (see
/// [`lower_priority`]).
pub const REBUILD_NICE: i32 = 10;

/// How often a tick stores a live engine's snapshot when it is far past the last one: the
/// first tick after a start stores the one the start left (see `identity::replay_with`), and
/// then at most one per this interval, which bounds the log a start after `kill -9` replays.
/// The writer only encodes it (under the read lock); a thread of its own stores it, in parts
/// that the writer's commits interleave with (see [`Storing`]).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30 * 60);

/// A snapshot a tick encoded, being stored on a thread of its own: storing a large tenant's
/// takes seconds (a gigabyte at 30 million events), which the writer would otherwise spend
/// not committing events.
struct Storing {
    tenant: TenantId,
    last_seq: i64,
    /// The tick's clock, for [`SNAPSHOT_EVERY`].
    at: Millis,
    /// The tenant's engine was swapped for a replay meanwhile: what is stored predates its
    /// corrections, so it neither counts as the tenant's snapshot nor moves its mark.
    stale: bool,
    thread: std::thread::JoinHandle<bool>,
}

/// A replay built off the writer thread.
type Rebuilt = (TenantId, Result<TenantEngine, AppError>);

impl Writer {
    pub fn new(
        store: Arc<dyn Store>,
        engines: Option<Arc<Engines>>,
        clock: Arc<dyn Clock>,
    ) -> Writer {
        let (rebuilt_tx, rebuilt) = mpsc::channel();
        Writer {
            flushes: Arc::default(),
            store,
            engines,
            clock,
            rebuilding: HashMap::new(),
            rebuilt_tx,
            rebuilt,
            wake: None,
            snapshot_at: HashMap::new(),
            storing: None,
            rebuild_started: HashMap::new(),
            rebuilt_at: HashMap::new(),
            leased: false,
        }
    }

    /// Whether the writer serves `tenant`: always, unless engines are leased and the tenant's
    /// is not here.
    fn serves(&self, tenant: TenantId) -> bool {
        !self.leased
            || self
                .engines
                .as_ref()
                .is_some_and(|e| e.get(tenant).is_some())
    }

    /// Takes in a tenant whose lease this node took, with its engine resumed from the store.
    pub fn adopt(&mut self, tenant: TenantId, engine: TenantEngine) {
        if let Some(engines) = &self.engines {
            engines.insert(tenant, engine);
            self.snapshot_at.remove(&tenant);
        }
    }

    /// Drops a tenant's engine (`store_first`: after storing what it derived); answers wait
    /// for its rebuild are dropped, so their callers see the writer gone for it.
    pub fn drop_tenant(&mut self, tenant: TenantId, store_first: bool) {
        let Some(engines) = self.engines.clone() else {
            return;
        };
        if let Some(cell) = engines.get(tenant)
            && store_first
        {
            flush(&*self.store, &cell, tenant);
        }
        engines.remove(tenant);
        self.rebuilding.remove(&tenant);
        self.snapshot_at.remove(&tenant);
        if let Some(s) = self.storing.as_mut().filter(|s| s.tenant == tenant) {
            s.stale = true;
        }
    }

    /// Commits `jobs` in one transaction and answers each. On a store error every job gets
    /// the error and nothing is applied (the transaction rolled back).
    pub fn step(&mut self, jobs: Vec<Job>) {
        let (jobs, elsewhere): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| self.serves(j.tenant));
        for job in elsewhere {
            let _ = job.reply.send(Err(AppError::NotOwner(job.tenant)));
        }
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let batches: Vec<AppendBatch<'_>> = jobs
            .iter()
            .map(|j| AppendBatch {
                tenant: j.tenant,
                events: &j.events,
                encoded: &j.encoded,
            })
            .collect();
        let result = self.store.append(&batches, self.clock.now());
        drop(batches);
        let events: usize = jobs.iter().map(|j| j.events.len()).sum();
        metrics::histogram!("siyu_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("siyu_ingest_group_events").record(events as f64);
        match result {
            Ok(outcomes) => {
                // The engine is updated before the answer, so a client that reads right
                // after its acknowledgement sees its own events; what they derived is stored
                // right after the answers (a read of the derived logs waits for it, see
                // [`Ingestor::derived_barrier`]).
                let mut touched: Vec<(TenantId, Arc<EngineCell>)> = Vec::new();
                self.flushes.applied();
                for (job, appended) in jobs.into_iter().zip(outcomes) {
                    if let Some(engines) = &self.engines {
                        let cell = engines.get_or_create(job.tenant);
                        self.apply(&cell, job.tenant, &job.events, &appended);
                        if !touched.iter().any(|(t, _)| *t == job.tenant) {
                            touched.push((job.tenant, cell));
                        }
                    }
                    drop(job.encoded);
                    let _ = job.reply.send(Ok(Committed {
                        appended,
                        events: job.events,
                    }));
                }
                for (tenant, cell) in touched {
                    flush(&*self.store, &cell, tenant);
                }
                self.flushes.flushed();
            }
            Err(StoreError::NotOwner(tenant)) => {
                // The tenant's lease passed to another node: nothing was stored. Its engine
                // goes, and the other tenants' jobs are committed without it.
                tracing::warn!(tenant, "lease lost; the tenant is served elsewhere now");
                self.drop_tenant(tenant, false);
                self.step(jobs);
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

    fn apply(&self, cell: &EngineCell, tenant: TenantId, events: &[Event], out: &[Appended]) {
        let store = &*self.store;
        let first_new = out.iter().find_map(|a| match a {
            Appended::Stored(s) => Some(*s),
            Appended::Duplicate => None,
        });
        let Some(first_new) = first_new else {
            return;
        };
        let now = self.clock.now();
        let found = {
            let mut engine = write(cell);
            advance(&mut engine, now);
            if first_new > engine.last_seq() + 1 {
                // Something else may have written between (or the seq range has a gap): take
                // in the log, which also covers this batch.
                if let Err(e) = catch_up(store, &mut engine, tenant) {
                    tracing::error!(error = %e, tenant, "engine catch-up failed");
                }
            } else {
                for (e, a) in events.iter().zip(out) {
                    if let Appended::Stored(seq) = a {
                        engine.apply(*seq, e);
                    }
                }
            }
            engine.identities_mut().take_corrections()
        };
        if !found.is_empty()
            && let Err(e) = crate::identity::record_shared(store, tenant, &found, now)
        {
            tracing::error!(error = %e, tenant, "identity correction failed");
        }
    }

    /// Runs an operator action on its tenant's engine, first brought up to date with the
    /// store, then stores what it derived. Without live engines (the CLI), the engine is
    /// replayed from the log for the action.
    pub fn command(&mut self, c: Command) {
        let store = self.store.clone();
        let store = &*store;
        let Some(engines) = &self.engines else {
            let cell = match crate::identity::replay(store, c.tenant) {
                Ok(e) => RwLock::new(e),
                // The action reports the failure itself when it reads the store; an empty
                // engine makes it answer as for a tenant without events.
                Err(e) => {
                    tracing::error!(error = %e, tenant = c.tenant, "replay failed");
                    RwLock::new(TenantEngine::new())
                }
            };
            // Nothing is live here: the action's engine is thrown away after it, so there is
            // nothing to rebuild whatever it asks.
            let (answer, _) = (c.run)(store, &cell);
            answer();
            return;
        };
        if !self.serves(c.tenant) {
            // Refused by `Ingestor::command` before it was queued; the lease went meanwhile.
            // The command's answer is dropped: its caller sees the writer gone for it.
            return;
        }
        let cell = engines.get_or_create(c.tenant);
        self.refresh(&cell, c.tenant, false);
        let now = self.clock.now();
        advance(&mut write(&cell), now);
        flush(store, &cell, c.tenant);
        let (answer, then) = (c.run)(store, &cell);
        match then {
            Then::Answer => {
                flush(store, &cell, c.tenant);
                answer();
            }
            Then::Rebuild => self.rebuild(&cell, c.tenant, Some(answer)),
        }
    }

    /// Starts building a replay of a tenant off the writer thread (unless one is under way,
    /// which then takes `answer` too): ingest and readers go on with the live engine meanwhile,
    /// and [`Writer::take_rebuilt`] swaps the replay in.
    fn rebuild(&mut self, cell: &EngineCell, tenant: TenantId, answer: Option<Answer>) {
        // What the engine derived so far is stored first, under its own causes.
        flush(&*self.store, cell, tenant);
        let under_way = self.rebuilding.contains_key(&tenant);
        self.rebuilding.entry(tenant).or_default().extend(answer);
        if !under_way {
            self.spawn_rebuild(tenant);
        }
    }

    fn spawn_rebuild(&mut self, tenant: TenantId) {
        self.rebuild_started.insert(tenant, Instant::now());
        let (store, done, wake) = (
            self.store.clone(),
            self.rebuilt_tx.clone(),
            self.wake.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("siyu-rebuild".into())
            .spawn(move || {
                lower_priority(REBUILD_NICE);
                let _ = done.send((tenant, crate::identity::rebuild(&*store, tenant)));
                if let Some(wake) = wake {
                    let _ = wake.send(Work::Rebuilt);
                }
            });
        if let Err(e) = spawned {
            let _ = self.rebuilt_tx.send((
                tenant,
                Err(AppError::Io {
                    source: std::io::Error::other(e),
                }),
            ));
        }
    }

    /// Swaps in the replays that are ready; with `wait`, first waits for every one under way.
    pub fn take_rebuilt(&mut self, wait: bool) {
        loop {
            let next = if wait && !self.rebuilding.is_empty() {
                self.rebuilt.recv().ok()
            } else {
                self.rebuilt.try_recv().ok()
            };
            let Some((tenant, rebuilt)) = next else {
                return;
            };
            self.swap(tenant, rebuilt);
        }
    }

    fn swap(&mut self, tenant: TenantId, rebuilt: Result<TenantEngine, AppError>) {
        if let Some(started) = self.rebuild_started.remove(&tenant) {
            let took = started.elapsed();
            tracing::info!(
                tenant,
                took_ms = took.as_millis() as u64,
                "engine replay built beside the live one"
            );
            self.rebuilt_at.insert(tenant, (Instant::now(), took));
        }
        let store = self.store.clone();
        let store = &*store;
        let Some(cell) = self.engines.as_ref().map(|e| e.get_or_create(tenant)) else {
            return;
        };
        let mut rebuilt = match rebuilt {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, tenant, "replay failed; the engine stays as it was");
                for answer in self.rebuilding.remove(&tenant).unwrap_or_default() {
                    answer();
                }
                return;
            }
        };
        // The replay may have missed a decision made while it ran (another value found
        // shared): build again, at once for an operator waiting on it, else when the spacing
        // lets the writer's poll.
        if matches!(
            crate::identity::news(store, &rebuilt, tenant),
            Ok(News::Rebuild)
        ) {
            if self.rebuilding.get(&tenant).is_some_and(|a| !a.is_empty()) {
                self.spawn_rebuild(tenant);
            } else {
                self.rebuilding.remove(&tenant);
            }
            return;
        }
        // The events the live engine took in meanwhile, applied to the replay with no lock
        // held: it is nobody else's yet.
        if let Err(e) = catch_up(store, &mut rebuilt, tenant) {
            tracing::error!(error = %e, tenant, "catching the replay up failed; building again");
            self.spawn_rebuild(tenant);
            return;
        }
        flush(store, &cell, tenant);
        {
            let mut engine = write(&cell);
            crate::identity::swap_in(&mut engine, rebuilt, Cause::Identity);
            advance(&mut engine, self.clock.now());
            if let Err(e) = catch_up(store, &mut engine, tenant) {
                tracing::error!(error = %e, tenant, "engine catch-up failed");
            }
        }
        flush(store, &cell, tenant);
        for answer in self.rebuilding.remove(&tenant).unwrap_or_default() {
            answer();
        }
        // The stored snapshot predates what the replay corrected (a start would ignore it):
        // the next tick stores the rebuilt engine's.
        self.snapshot_at.remove(&tenant);
        if let Some(s) = self.storing.as_mut().filter(|s| s.tenant == tenant) {
            s.stale = true;
        }
    }

    /// Whether an automatic rebuild of `tenant` may start now (see [`REBUILD_SPACING`]).
    fn rebuild_due(&self, tenant: TenantId) -> bool {
        self.rebuilt_at
            .get(&tenant)
            .is_none_or(|(ended, took)| ended.elapsed() >= *took * REBUILD_SPACING)
    }

    /// Takes in what another process wrote for any tenant (a tenant created elsewhere gets an
    /// engine here), and stores what that derived.
    pub fn poll(&mut self) {
        self.poll_with(false);
    }

    /// [`Writer::poll`]; `spaced`, as the writer's own polls are, a rebuild it finds needed
    /// waits for [`REBUILD_SPACING`].
    fn poll_with(&mut self, spaced: bool) {
        let Some(engines) = self.engines.clone() else {
            return;
        };
        if !self.leased {
            match self.store.tenants() {
                Ok(all) => {
                    for t in all {
                        engines.get_or_create(t.id);
                    }
                }
                Err(e) => tracing::error!(error = %e, "listing tenants failed"),
            }
        }
        let now = self.clock.now();
        for (tenant, cell) in engines.all() {
            self.refresh(&cell, tenant, spaced);
            if read(&cell).clock().is_none() {
                advance(&mut write(&cell), now);
            }
            flush(&*self.store, &cell, tenant);
        }
    }

    /// [`Writer::poll`], and every live engine's clock moved to now.
    pub fn tick(&mut self) {
        self.tick_with(false);
    }

    /// [`Writer::tick`], with [`Writer::poll_with`]'s `spaced`.
    fn tick_with(&mut self, spaced: bool) {
        self.poll_with(spaced);
        let Some(engines) = self.engines.clone() else {
            return;
        };
        let now = self.clock.now();
        self.take_stored(&engines, false);
        for (tenant, cell) in engines.all() {
            advance(&mut write(&cell), now);
            flush(&*self.store, &cell, tenant);
            let last = self.snapshot_at.get(&tenant).copied();
            if self.storing.is_none()
                && last.is_none_or(|t| now - t >= SNAPSHOT_EVERY.as_millis() as Millis)
                && let Some(encoded) = crate::snapshots::encode_if_due(&cell)
            {
                let store = self.store.clone();
                let last_seq = encoded.last_seq();
                let thread = std::thread::Builder::new()
                    .name("siyu-snapshot".into())
                    .spawn(move || crate::snapshots::put(&*store, tenant, &encoded));
                match thread {
                    Ok(thread) => {
                        self.storing = Some(Storing {
                            tenant,
                            last_seq,
                            at: now,
                            stale: false,
                            thread,
                        })
                    }
                    Err(e) => tracing::warn!(tenant, error = %e, "engine snapshot not stored"),
                }
            }
        }
        // An explicit tick (tests, a command) returns with its snapshot stored.
        if !spaced {
            self.take_stored(&engines, true);
        }
    }

    /// Records the snapshot stored off the writer's thread once it is (`wait`: waits for it):
    /// the tenant's engine knows it, and the next is [`SNAPSHOT_EVERY`] later. One that was
    /// not stored is tried again at the next tick.
    fn take_stored(&mut self, engines: &Engines, wait: bool) {
        if !self
            .storing
            .as_ref()
            .is_some_and(|s| wait || s.thread.is_finished())
        {
            return;
        }
        let Some(s) = self.storing.take() else { return };
        let stored = s.thread.join().unwrap_or(false);
        if stored && !s.stale {
            self.snapshot_at.insert(s.tenant, s.at);
            if let Some(cell) = engines.get(s.tenant) {
                let mut engine = write(&cell);
                if engine.snapshot_seq() < s.last_seq {
                    engine.set_snapshot_seq(s.last_seq);
                }
            }
        }
    }

    /// Brings a tenant's engine up to date with the store. What is new is looked for with the
    /// engine only read; a replay is built beside it and swapped in.
    /// With `spaced`, a rebuild that is needed waits for [`REBUILD_SPACING`] (and what else
    /// is new waits with it: the rebuild's catch-up takes it in).
    fn refresh(&mut self, cell: &EngineCell, tenant: TenantId, spaced: bool) {
        let store = self.store.clone();
        let store = &*store;
        let news = crate::identity::news(store, &read(cell), tenant);
        let done = match news {
            Ok(News::None) => Ok(()),
            Ok(News::Some) => catch_up(store, &mut write(cell), tenant),
            Ok(News::Rebuild) => {
                if !self.rebuilding.contains_key(&tenant) && (!spaced || self.rebuild_due(tenant)) {
                    self.rebuild(cell, tenant, None);
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::error!(error = %e, tenant, "engine catch-up failed");
        }
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux; elsewhere nothing). Used
/// for work beside the writer that must not halve a small server's ingest while it runs: a
/// replay built beside a live engine (nice 10). Such work takes the
/// CPU the writer and the request threads leave, and only takes longer when they want it.
pub fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id, with no pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!(nice, "could not lower a thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Puts the calling thread in Linux's idle scheduling class (`SCHED_IDLE`; elsewhere, the
/// lowest nice value): it runs when no normal thread wants the core, and a normal thread that
/// wakes takes the core from it at once. A niced thread is only given a smaller share; it
/// still delays, by up to its time slice, each wake-up of the writer and the request threads,
/// and an ingest bound by its requests' latency pays that on every stage of every request.
/// Used for the server's reader pool. Whether it was set.
pub fn idle_priority() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: a system call on the calling thread (pid 0) with a valid pointer to a local.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 {
            return true;
        }
        tracing::debug!("could not put a thread in the idle scheduling class");
    }
    lower_priority(19);
    false
}

/// The handle to the writer thread.
pub struct Ingestor {
    tx: Option<SyncSender<Work>>,
    thread: Option<JoinHandle<()>>,
    engines: Option<Arc<Engines>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    flushes: Arc<Flushes>,
    /// [`EngineMode::Leased`].
    leased: bool,
}

/// How long a read of the derived logs waits for the writer to store what the groups before
/// it derived (it is stored right after their answers; this bounds a stalled store).
pub const DERIVED_WAIT: Duration = Duration::from_secs(5);

impl Ingestor {
    /// Loads engines (in live mode) and starts the writer thread, on the wall clock.
    pub fn start(store: Arc<dyn Store>, mode: EngineMode) -> Result<Ingestor, AppError> {
        Ingestor::start_with_clock(store, mode, Arc::new(SystemClock))
    }

    /// [`Ingestor::start`] on a given clock. The thread moves the engines' clocks every
    /// [`TICK`] of real time; a test on a [`siyu_domain::time::ManualClock`] calls
    /// [`Ingestor::tick`] instead.
    pub fn start_with_clock(
        store: Arc<dyn Store>,
        mode: EngineMode,
        clock: Arc<dyn Clock>,
    ) -> Result<Ingestor, AppError> {
        let engines = match mode {
            EngineMode::WriteOnly => None,
            EngineMode::Live => {
                let engines = Arc::new(Engines::default());
                for t in store.tenants()? {
                    let now = clock.now();
                    let mut engine = crate::identity::resume_live(&*store, t.id, now)?;
                    live_step(&*store, &mut engine, t.id, now);
                    *write(&engines.get_or_create(t.id)) = engine;
                }
                Some(engines)
            }
            EngineMode::Leased => Some(Arc::new(Engines::default())),
        };
        let (tx, rx) = mpsc::sync_channel::<Work>(QUEUE_DEPTH);
        let mut writer = Writer::new(store.clone(), engines.clone(), clock.clone());
        writer.wake = Some(tx.clone());
        writer.leased = mode == EngineMode::Leased;
        let flushes = writer.flushes.clone();
        let thread = std::thread::Builder::new()
            .name("siyu-writer".into())
            .spawn(move || run(&mut writer, rx))
            .map_err(|_| AppError::WriterStopped)?;
        Ok(Ingestor {
            tx: Some(tx),
            thread: Some(thread),
            engines,
            store,
            clock,
            flushes,
            leased: mode == EngineMode::Leased,
        })
    }

    /// Whether this process serves `tenant` now: always, unless engines are leased
    /// ([`EngineMode::Leased`]) and the tenant's lease is held elsewhere.
    pub fn serves(&self, tenant: TenantId) -> bool {
        !self.leased
            || self
                .engines
                .as_ref()
                .is_some_and(|e| e.get(tenant).is_some())
    }

    /// Whether engines are leased ([`EngineMode::Leased`]): several nodes share the store.
    pub fn leased(&self) -> bool {
        self.leased
    }

    /// `Ok` when this process serves `tenant`, else [`AppError::NotOwner`].
    fn owned(&self, tenant: TenantId) -> Result<(), AppError> {
        if self.serves(tenant) {
            Ok(())
        } else {
            Err(AppError::NotOwner(tenant))
        }
    }

    /// The tenants served here (leased mode: the adopted ones).
    pub fn served(&self) -> Vec<TenantId> {
        let mut all: Vec<TenantId> = self
            .engines
            .as_ref()
            .map(|e| e.all().into_iter().map(|(t, _)| t).collect())
            .unwrap_or_default();
        all.sort_unstable();
        all
    }

    /// Hands the writer a tenant whose lease was taken, with its engine resumed, and waits
    /// until it serves it.
    pub fn adopt(&self, tenant: TenantId, engine: TenantEngine) -> Result<(), AppError> {
        let (done, wait) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or(AppError::WriterStopped)?;
        tx.send(Work::Adopt(tenant, Box::new(engine), done))
            .map_err(|_| AppError::WriterStopped)?;
        wait.recv().map_err(|_| AppError::WriterStopped)
    }

    /// Has the writer store what a tenant's engine derived and drop it, and waits: its lease
    /// can be given up after.
    pub fn release(&self, tenant: TenantId) -> Result<(), AppError> {
        let (done, wait) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or(AppError::WriterStopped)?;
        tx.send(Work::Release(tenant, done))
            .map_err(|_| AppError::WriterStopped)?;
        wait.recv().map_err(|_| AppError::WriterStopped)
    }

    /// Drops a tenant whose lease was lost, without storing anything more for it.
    pub fn disown(&self, tenant: TenantId) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Work::Disown(tenant));
        }
    }

    /// The clock the writer reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Queues events and returns the receiver of the verdicts, without waiting: callers that
    /// stream (import) keep a few in flight.
    pub fn submit(
        &self,
        tenant: TenantId,
        events: Vec<Event>,
    ) -> Result<oneshot::Receiver<Result<Committed, AppError>>, AppError> {
        self.owned(tenant)?;
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppError::WriterStopped)?;
        tx.send(Work::Append(Job::new(tenant, events, reply)))
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
        self.owned(tenant)?;
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone().ok_or(AppError::WriterStopped)?;
        let job = Work::Append(Job::new(tenant, events, reply));
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
        self.read(tenant, |e| e.stats())
    }

    /// Waits until what every acknowledged write derived (layer transitions, segment entries
    /// and exits, tags) is stored: call before reading the derived logs, so that a caller sees
    /// the triggers of its own acknowledged events. At most [`DERIVED_WAIT`].
    pub fn derived_barrier(&self) {
        if self.engines.is_some() {
            self.flushes.wait(DERIVED_WAIT);
        }
    }

    /// Runs `f` on a tenant's engine under its read lock: no I/O, and never behind a commit.
    /// What the writer acknowledged before the call is in it. Without live engines (the CLI),
    /// the engine is replayed from the log for this call.
    pub fn read<T>(
        &self,
        tenant: TenantId,
        f: impl FnOnce(&TenantEngine) -> T,
    ) -> Result<T, AppError> {
        match &self.engines {
            Some(engines) => match engines.get(tenant) {
                Some(cell) => Ok(f(&read(&cell))),
                None if self.leased => Err(AppError::NotOwner(tenant)),
                None => Ok(f(&TenantEngine::new())),
            },
            None => Ok(f(&crate::identity::replay(&*self.store, tenant)?)),
        }
    }

    /// Runs `f` on the writer thread with the store and the tenant's engine (brought up to
    /// date with the store first), and waits for its answer; what it derived is stored before
    /// the answer comes. `f` takes the write lock for what it changes. Blocks: call it from a
    /// blocking thread.
    pub fn command<T: Send + 'static>(
        &self,
        tenant: TenantId,
        f: impl FnOnce(&dyn Store, &EngineCell) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        self.owned(tenant)?;
        let (reply, rx) = mpsc::sync_channel(1);
        let run: CommandFn = Box::new(move |store, cell| {
            let out = f(store, cell);
            let answer: Answer = Box::new(move || {
                let _ = reply.send(out);
            });
            (answer, Then::Answer)
        });
        let tx = self.tx.as_ref().ok_or(AppError::WriterStopped)?;
        tx.send(Work::Command(Command { tenant, run }))
            .map_err(|_| AppError::WriterStopped)?;
        rx.recv().map_err(|_| AppError::WriterStopped)?
    }

    /// [`Ingestor::command`] for an action that records what only a replay applies (an undone
    /// merge): when `f` answers `(value, true)`, the writer rebuilds the engine beside the live
    /// one — ingest and readers go on meanwhile — swaps it in, and only then answers.
    pub fn command_then_rebuild<T: Send + 'static>(
        &self,
        tenant: TenantId,
        f: impl FnOnce(&dyn Store, &EngineCell) -> Result<(T, bool), AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        self.owned(tenant)?;
        let (reply, rx) = mpsc::sync_channel(1);
        let run: CommandFn = Box::new(move |store, cell| {
            let (out, then) = match f(store, cell) {
                Ok((v, true)) => (Ok(v), Then::Rebuild),
                Ok((v, false)) => (Ok(v), Then::Answer),
                Err(e) => (Err(e), Then::Answer),
            };
            let answer: Answer = Box::new(move || {
                let _ = reply.send(out);
            });
            (answer, then)
        });
        let tx = self.tx.as_ref().ok_or(AppError::WriterStopped)?;
        tx.send(Work::Command(Command { tenant, run }))
            .map_err(|_| AppError::WriterStopped)?;
        rx.recv().map_err(|_| AppError::WriterStopped)?
    }

    /// [`Ingestor::command`] for an action that changes the engine in memory throughout: it
    /// holds the write lock for all of `f`.
    pub fn mutate<T: Send + 'static>(
        &self,
        tenant: TenantId,
        f: impl FnOnce(&dyn Store, &mut TenantEngine) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        self.command(tenant, move |store, cell| f(store, &mut write(cell)))
    }

    /// Takes in what another process wrote and moves every live engine's clock to now (the
    /// writer does it every [`TICK`]; tests call it directly), and waits until it is done.
    pub fn tick(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = mpsc::sync_channel(1);
            if tx.send(Work::Tick(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }

    /// Stops taking requests, lets the writer finish what is queued, and waits for it; then
    /// stores a snapshot of each live engine that is far past its last one, so the next start
    /// replays little.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Work::Stop);
        }
        let Some(t) = self.thread.take() else { return };
        let _ = t.join();
        if let Some(engines) = &self.engines {
            for (tenant, engine) in engines.all() {
                crate::snapshots::save_if_due(&*self.store, tenant, &mut write(&engine));
            }
        }
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(writer: &mut Writer, rx: Receiver<Work>) {
    let mut next_poll = Instant::now() + POLL;
    let mut next_tick = Instant::now() + TICK;
    let mut held: Option<Work> = None;
    loop {
        let work = match held.take() {
            Some(w) => w,
            None => match rx.recv_timeout(next_poll.saturating_duration_since(Instant::now())) {
                Ok(w) => w,
                Err(RecvTimeoutError::Timeout) => {
                    writer.take_rebuilt(false);
                    if Instant::now() >= next_tick {
                        writer.tick_with(true);
                        next_tick = Instant::now() + TICK;
                    } else {
                        writer.poll_with(true);
                    }
                    next_poll = Instant::now() + POLL;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        match work {
            Work::Append(first) => {
                let mut n = first.events.len();
                let mut jobs = vec![first];
                while n < MAX_GROUP_EVENTS {
                    match rx.try_recv() {
                        Ok(Work::Append(job)) => {
                            n += job.events.len();
                            jobs.push(job);
                        }
                        // A command waits for the group before it, so it sees its events.
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                writer.step(jobs);
            }
            Work::Tick(done) => {
                writer.take_rebuilt(true);
                writer.tick();
                let _ = done.send(());
            }
            Work::Command(c) => writer.command(c),
            Work::Rebuilt => writer.take_rebuilt(false),
            Work::Adopt(tenant, engine, done) => {
                writer.adopt(tenant, *engine);
                let _ = done.send(());
            }
            Work::Release(tenant, done) => {
                writer.take_rebuilt(true);
                writer.drop_tenant(tenant, true);
                let _ = done.send(());
            }
            Work::Disown(tenant) => writer.drop_tenant(tenant, false),
            Work::Stop => break,
        }
        writer.take_rebuilt(false);
        // Under sustained load the queue is never empty: poll and tick between groups.
        let now = Instant::now();
        if now >= next_tick {
            writer.tick_with(true);
            next_tick = now + TICK;
            next_poll = now + POLL;
        } else if now >= next_poll {
            writer.poll_with(true);
            next_poll = now + POLL;
        }
    }
    // A snapshot being stored is finished (and known to its engine) before the writer ends.
    if let Some(engines) = writer.engines.clone() {
        writer.take_stored(&engines, true);
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
        let mut w = Writer::new(store.clone(), Some(engines.clone()), Arc::new(SystemClock));
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

    /// A tick stores a snapshot far past the last off the writer's thread, and the engine
    /// learns it once stored; the next tick within [`SNAPSHOT_EVERY`] stores none, the first
    /// after it does.
    #[test]
    fn ticks_store_snapshots_off_the_writer_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = store.create_tenant("a", "w", "a", 0).unwrap().id;
        let clock = Arc::new(siyu_domain::time::ManualClock::new(
            siyu_domain::time::parse_rfc3339("2026-11-10T00:00:00Z").unwrap(),
        ));
        let engines = Arc::new(Engines::default());
        let mut w = Writer::new(store.clone(), Some(engines.clone()), clock.clone());
        let n = crate::snapshots::SNAPSHOT_AFTER;
        // Events `from..from + count`, in steps of 1,000, of 300 fans.
        let append = |w: &mut Writer, from: i64, count: i64| {
            for b in (from..from + count).step_by(1000) {
                let (reply, _answer) = oneshot::channel();
                let events = (b..b + 1000)
                    .map(|i| ev(&i.to_string(), &format!("f{}", i % 300)))
                    .collect();
                w.step(vec![Job::new(t, events, reply)]);
            }
        };
        append(&mut w, 0, n - 1000);
        w.tick();
        assert_eq!(store.snapshot(t).unwrap(), None, "not yet far enough past");
        append(&mut w, n - 1000, 1000);
        w.tick();
        let snap = store.snapshot(t).unwrap().expect("stored by the tick");
        assert_eq!(snap.last_seq, n);
        let cell = engines.get(t).unwrap();
        assert_eq!(read(&cell).snapshot_seq(), n, "the engine knows it");
        // Far past it again, but within the interval: none.
        append(&mut w, n, n);
        clock.advance(SNAPSHOT_EVERY.as_millis() as Millis - 1);
        w.tick();
        assert_eq!(store.snapshot(t).unwrap().unwrap().last_seq, n);
        clock.advance(1);
        w.tick();
        assert_eq!(store.snapshot(t).unwrap().unwrap().last_seq, 2 * n);
        assert_eq!(read(&cell).snapshot_seq(), 2 * n);
    }

    /// An automatic rebuild waits [`REBUILD_SPACING`] times the last one's duration after it
    /// ended; a tenant never rebuilt may rebuild at once.
    #[test]
    fn automatic_rebuilds_are_spaced_by_the_last_ones_duration() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let mut w = Writer::new(store, None, Arc::new(SystemClock));
        assert!(w.rebuild_due(1), "never rebuilt");
        let now = Instant::now();
        w.rebuilt_at.insert(1, (now, Duration::from_secs(3600)));
        assert!(!w.rebuild_due(1), "ended just now after an hour");
        let Some(long_ago) = now.checked_sub(Duration::from_secs(50)) else {
            return; // a machine up for less than 50 s cannot place an instant that far back
        };
        w.rebuilt_at.insert(1, (long_ago, Duration::from_secs(10)));
        assert!(w.rebuild_due(1), "ended 50 s ago after 10 s: 40 s were due");
        w.rebuilt_at.insert(1, (long_ago, Duration::from_secs(13)));
        assert!(!w.rebuild_due(1), "ended 50 s ago after 13 s: 52 s are due");
        assert!(w.rebuild_due(2), "per tenant");
    }

    /// A reader is answered while the writer is inside a commit of what a batch derived:
    /// the write lock is not held across store I/O, so readers never wait for the store.
    #[test]
    fn readers_are_answered_while_the_writer_commits() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = inner.create_tenant("a", "w", "a", 0).unwrap().id;
        let faulty = Arc::new(siyu_store::testing::Faulty::new(inner, &[], &[]));
        let clock = Arc::new(siyu_domain::time::ManualClock::new(
            siyu_domain::time::parse_rfc3339("2026-11-10T00:00:00Z").unwrap(),
        ));
        let store: Arc<dyn Store> = faulty.clone();
        let ing = Arc::new(Ingestor::start_with_clock(store, EngineMode::Live, clock).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(ing.append(t, vec![ev("1", "a")])).unwrap();
        // What the first batch derived is stored after its answer: wait for it, so the store
        // call held next is the second batch's.
        ing.derived_barrier();
        let (entered, release) = faulty.hold_next_record_live();
        let writer = {
            let ing = ing.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(ing.append(t, vec![ev("2", "b")]))
                    .map(|a| a.len())
            })
        };
        entered.recv().expect("the writer reached the store");
        // The writer is now inside `record_live`. A reader that needed the write lock would
        // wait for it; the timeout only turns such a hang into a failure.
        let (answer, answered) = mpsc::channel();
        {
            let ing = ing.clone();
            std::thread::spawn(move || {
                let _ = answer.send(ing.stats(t).map(|s| (s.events, s.fans)));
            });
        }
        let stats = answered
            .recv_timeout(Duration::from_secs(30))
            .expect("a reader is answered during the commit");
        assert_eq!(
            stats.unwrap(),
            (2, 2),
            "the batch is applied before what it derived is committed"
        );
        release.send(()).unwrap();
        assert_eq!(writer.join().unwrap().unwrap(), 1);
    }

    /// An undone merge is replayed off the writer: while the replay reads the log, ingest
    /// is acknowledged and readers are answered; the undo answers once the replay, with the
    /// events that arrived meanwhile, is in force.
    #[test]
    fn ingest_goes_on_while_an_undo_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = inner.create_tenant("a", "w", "a", 0).unwrap().id;
        let faulty = Arc::new(siyu_store::testing::Faulty::new(inner, &[], &[]));
        let store: Arc<dyn Store> = faulty.clone();
        let app = Arc::new(crate::App::start(store, EngineMode::Live).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let with = |id: &str, identities: &str| {
            parse_event(
                &format!(r#"{{"id":"{id}","type":"follow","ts":"2026-10-01T00:00:00Z","identities":{{{identities}}}}}"#),
                siyu_domain::time::now_ms(),
            )
            .unwrap()
        };
        // Two fans, then one event that carries both: merged.
        let phone = r#""phone":"13800138000""#;
        let both = r#""douyin_open_id":"a","phone":"13800138000""#;
        rt.block_on(app.ingestor.append(t, vec![ev("1", "a"), with("2", phone)]))
            .unwrap();
        rt.block_on(app.ingestor.append(t, vec![with("3", both), ev("4", "b")]))
            .unwrap();
        assert_eq!(app.stats(t).unwrap().fans, 2, "merged, and one more");
        let (entered, release) = faulty.hold_next_scan();
        let undo = {
            let app = app.clone();
            std::thread::spawn(move || app.unmerge(t, siyu_engine::FanId(2)))
        };
        entered.recv().expect("the replay reads the log");
        // The replay is held inside the store; the writer is not waiting for it.
        rt.block_on(app.ingestor.append(t, vec![ev("5", "c")]))
            .expect("ingest is acknowledged during the replay");
        let during = app.stats(t).unwrap();
        assert_eq!(
            (during.events, during.fans),
            (5, 3),
            "the live engine took it in"
        );
        release.send(()).unwrap();
        undo.join()
            .unwrap()
            .expect("the undo is answered after the swap");
        let after = app.stats(t).unwrap();
        assert_eq!(
            (after.events, after.fans),
            (5, 4),
            "split, with the event that came during the replay"
        );
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

        /// What was stored, with its times (one manual clock, so two runs derive the same
        /// instants), without the ids.
        fn stored(store: &dyn Store, t: TenantId) -> Vec<String> {
            let mut out: Vec<String> = store
                .transitions(t, None, 0, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|r| {
                    format!(
                        "layer {} {:?}->{} {} {:?} {:?} at {}",
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
                            "segment {} {} {} {} {:?} {:?} at {}",
                            c.segment, c.fan, c.entered, c.cause, c.seq, c.event_id, c.at
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
            let clock = Arc::new(siyu_domain::time::ManualClock::new(
                siyu_domain::time::parse_rfc3339("2026-11-10T00:00:00Z").unwrap(),
            ));
            let mut ing =
                Ingestor::start_with_clock(store.clone(), EngineMode::Live, clock.clone()).unwrap();
            for batch in batches() {
                clock.advance(3_600_000);
                if rt.block_on(ing.append(t, batch.clone())).is_err() {
                    rt.block_on(ing.append(t, batch)).unwrap();
                }
            }
            if stop_early {
                ing.shutdown();
                drop(ing);
                ing = Ingestor::start_with_clock(inner.clone(), EngineMode::Live, clock.clone())
                    .unwrap();
            }
            clock.advance(3_600_000);
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
            // The instants are those of the new process: when the stopped one derived what it
            // never stored is known to nobody, so the times are left out here, and only here.
            let timeless = |rows: Vec<String>| -> Vec<String> {
                rows.into_iter()
                    .map(|r| {
                        r.rsplit_once(" at ")
                            .map_or(r.clone(), |(a, _)| a.to_string())
                    })
                    .collect()
            };
            assert_eq!(timeless(got), timeless(expected));
        }
    }
}
