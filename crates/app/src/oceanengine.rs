//! The Ocean Engine lead poller: pulls `GET {base}/open_api/2/tools/clue/get/` page by page
//! and stores every lead once.
//!
//! Time is cut into windows `[from, to)` of at most [`PollOptions::max_window_ms`], each ending at
//! least [`PollOptions::lag_ms`] before now, so a window's result set no longer changes while it
//! is paged through. [`LeadPoller::step`] fetches one page, commits its leads, and only then
//! writes the [`Checkpoint`] (window and next page) to the store. So a restart resumes at the
//! first page not known to be committed: nothing is missed, and a page fetched twice (a crash
//! between commit and checkpoint, or the one-second overlap of two windows) stores nothing twice,
//! because a lead's event id is `oceanengine:<clue_id>`.
//!
//! [`run_until_stopped`] drives every tenant's poller on a thread: it steps until a tenant is
//! caught up, then waits for the interval; after an error it waits with exponential backoff.
//!
//! The access token goes only where the [`TargetPolicy`] allows: [`HttpLeadSource`] checks the
//! stored `base_url` before each request (it may have been stored by an earlier version, or
//! under another policy) and resolves its host through a [`CheckedResolver`]. The token header
//! is marked sensitive, so no HTTP client log prints it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use siyu_domain::oceanengine::{format_time, lead_to_event};
use siyu_domain::{Millis, time};
use siyu_store::{StoreError, TenantId};

use crate::connectors::{self, OCEANENGINE, OceanEngineSettings};
use crate::targets::{CheckedResolver, TargetError, TargetPolicy};
use crate::{App, AppError, Rejection};

/// Where a tenant's poller stands. Stored as JSON after every committed page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every lead created before this is stored.
    pub done_until: Millis,
    /// The end of the window being paged through, if one is open.
    pub window_end: Option<Millis>,
    /// The next page of that window (1-based).
    pub next_page: u32,
}

impl Checkpoint {
    pub fn starting_at(start: Millis) -> Checkpoint {
        Checkpoint {
            done_until: start,
            window_end: None,
            next_page: 1,
        }
    }
}

/// How the poller cuts time.
#[derive(Debug, Clone, Copy)]
pub struct PollOptions {
    /// Windows end at least this long before now (late-arriving leads).
    pub lag_ms: Millis,
    /// The longest window asked for at once.
    pub max_window_ms: Millis,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            lag_ms: 60_000,
            max_window_ms: time::MS_PER_DAY,
        }
    }
}

/// One request to the lead API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub from: Millis,
    pub to: Millis,
    pub page: u32,
}

/// One page of the lead API's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub leads: Vec<Map<String, Value>>,
    /// Pages in the window (0 when it has no leads).
    pub total_page: u32,
}

/// Why a step failed. Nothing of the page was checkpointed; the next step tries it again.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("the lead poller is not set up for tenant {0}")]
    NotConfigured(TenantId),
    #[error("cannot reach the lead API: {0}")]
    Transport(String),
    #[error("the lead API answered HTTP {0}")]
    Status(u16),
    #[error("the lead API refused the request: code {code}, {message}")]
    Api { code: i64, message: String },
    #[error("the lead API's answer cannot be read: {0}")]
    BadResponse(String),
    /// The `base_url` is not allowed by the target policy (code `target_not_allowed`).
    #[error(transparent)]
    Target(TargetError),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<StoreError> for PollError {
    fn from(e: StoreError) -> Self {
        PollError::App(AppError::Store(e))
    }
}

/// Where pages come from: the lead API over HTTP, or a stand-in in tests.
pub trait LeadSource: Send {
    fn fetch(&self, settings: &OceanEngineSettings, req: &PageRequest) -> Result<Page, PollError>;
}

/// The lead API over HTTP(S), to targets the policy allows.
pub struct HttpLeadSource {
    agent: ureq::Agent,
    targets: TargetPolicy,
}

impl HttpLeadSource {
    pub fn new(targets: TargetPolicy) -> HttpLeadSource {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            // A redirect would take the token to a host that was never checked.
            .max_redirects(0)
            // A proxy (ureq reads one from HTTPS_PROXY) would resolve the host itself, past the
            // resolver's check: the lead API is called directly.
            .proxy(None)
            .build();
        HttpLeadSource {
            agent: CheckedResolver::new(targets, "base_url").agent(config),
            targets,
        }
    }
}

/// The lead API's envelope.
#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    list: Vec<Map<String, Value>>,
    page_info: Option<PageInfo>,
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(default)]
    total_page: u32,
}

/// Reads the lead API's answer.
pub fn parse_page(body: &str) -> Result<Page, PollError> {
    let env: Envelope =
        serde_json::from_str(body).map_err(|e| PollError::BadResponse(e.to_string()))?;
    if env.code != 0 {
        return Err(PollError::Api {
            code: env.code,
            message: env.message,
        });
    }
    let data = env
        .data
        .ok_or_else(|| PollError::BadResponse("code 0 without data".into()))?;
    Ok(Page {
        total_page: data.page_info.map(|p| p.total_page).unwrap_or(0),
        leads: data.list,
    })
}

impl LeadSource for HttpLeadSource {
    fn fetch(&self, s: &OceanEngineSettings, req: &PageRequest) -> Result<Page, PollError> {
        self.targets
            .check("base_url", &s.base_url)
            .map_err(PollError::Target)?;
        let url = format!("{}/open_api/2/tools/clue/get/", s.base_url);
        let mut token =
            ureq::http::HeaderValue::from_str(s.access_token.expose()).map_err(|_| {
                PollError::Transport("the access token is not a valid header value".into())
            })?;
        token.set_sensitive(true);
        let mut resp = self
            .agent
            .get(&url)
            .query("advertiser_ids", format!("[{}]", s.advertiser_id))
            .query("start_time", format_time(req.from))
            .query("end_time", format_time(req.to))
            .query("page", req.page.to_string())
            .query("page_size", s.page_size.to_string())
            .header("Access-Token", token)
            .call()
            .map_err(|e| match crate::targets::refused_by_resolver(&e) {
                Some(t) => PollError::Target(t),
                None => PollError::Transport(e.to_string()),
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(PollError::Status(status));
        }
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| PollError::Transport(e.to_string()))?;
        parse_page(&body)
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Caught up: no window is due yet.
    Idle,
    /// One page fetched and committed.
    Page {
        from: Millis,
        to: Millis,
        page: u32,
        total_page: u32,
        leads: usize,
        accepted: u64,
        duplicates: u64,
        rejected: Vec<Rejection>,
        /// Where the poller now stands (already stored).
        next: Checkpoint,
    },
}

/// One tenant's poller.
pub struct LeadPoller {
    app: Arc<App>,
    tenant: TenantId,
    source: Box<dyn LeadSource>,
    options: PollOptions,
}

impl LeadPoller {
    pub fn new(
        app: Arc<App>,
        tenant: TenantId,
        source: Box<dyn LeadSource>,
        options: PollOptions,
    ) -> LeadPoller {
        LeadPoller {
            app,
            tenant,
            source,
            options,
        }
    }

    /// Fetches and commits one page, then checkpoints. Settings are read afresh each time, so
    /// a new token applies at the next step.
    pub fn step(&mut self, now: Millis) -> Result<Step, PollError> {
        let store = &**self.app.store();
        let (settings, state) = connectors::oceanengine(store, self.app.safeguards(), self.tenant)?
            .ok_or(PollError::NotConfigured(self.tenant))?;
        let mut cp = match state {
            Some(v) => serde_json::from_value::<Checkpoint>(v)
                .map_err(|e| StoreError::Corrupt(format!("lead poller checkpoint: {e}")))?,
            None => Checkpoint::starting_at(settings.start),
        };
        let to = match cp.window_end {
            Some(to) => to,
            None => {
                let due = now - self.options.lag_ms;
                let to = (cp.done_until + self.options.max_window_ms).min(due);
                let to = to - to.rem_euclid(1000);
                if to <= cp.done_until {
                    return Ok(Step::Idle);
                }
                cp.window_end = Some(to);
                cp.next_page = 1;
                to
            }
        };
        let req = PageRequest {
            from: cp.done_until,
            to,
            page: cp.next_page,
        };
        let page = self.source.fetch(&settings, &req)?;
        let leads = page.leads.len();
        let mut events = Vec::with_capacity(leads);
        let mut rejected = Vec::new();
        let bounds = self.app.time_bounds(now);
        for (i, lead) in page.leads.into_iter().enumerate() {
            match lead_to_event(lead, bounds) {
                Ok(e) => events.push(e),
                Err(e) => rejected.push(Rejection::new(i, e)),
            }
        }
        let (mut accepted, mut duplicates) = (0, 0);
        if !events.is_empty() {
            let committed = self
                .app
                .ingestor
                .submit(self.tenant, events)?
                .blocking_recv()
                .map_err(|_| AppError::WriterStopped)??;
            for a in &committed.appended {
                match a {
                    siyu_store::Appended::Stored(_) => accepted += 1,
                    siyu_store::Appended::Duplicate => duplicates += 1,
                }
            }
        }
        let next = if req.page < page.total_page && leads > 0 {
            Checkpoint {
                next_page: req.page + 1,
                ..cp
            }
        } else {
            Checkpoint::starting_at(to)
        };
        let text = serde_json::to_string(&next)
            .map_err(|e| StoreError::Corrupt(format!("lead poller checkpoint: {e}")))?;
        store.set_connector_state(self.tenant, OCEANENGINE, &text)?;
        metrics::counter!("siyu_oceanengine_leads_total", "outcome" => "accepted")
            .increment(accepted);
        metrics::counter!("siyu_oceanengine_leads_total", "outcome" => "duplicate")
            .increment(duplicates);
        metrics::counter!("siyu_oceanengine_leads_total", "outcome" => "rejected")
            .increment(rejected.len() as u64);
        Ok(Step::Page {
            from: req.from,
            to,
            page: req.page,
            total_page: page.total_page,
            leads,
            accepted,
            duplicates,
            rejected,
            next,
        })
    }
}

/// Exponential backoff: `initial`, doubled after each failure up to `max`; reset by a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: None,
        }
    }

    /// The wait after one more failure.
    pub fn failure(&mut self) -> Duration {
        let next = match self.current {
            None => self.initial,
            Some(d) => (d * 2).min(self.max),
        };
        self.current = Some(next);
        next
    }

    pub fn success(&mut self) {
        self.current = None;
    }
}

/// How the background loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Wait between rounds once every tenant is caught up.
    pub interval: Duration,
    /// First wait after an error; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub poll: PollOptions,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interval: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll: PollOptions::default(),
        }
    }
}

/// A tenant's poller and when it may run next.
struct Slot {
    poller: LeadPoller,
    backoff: Backoff,
    next_at: Instant,
}

/// Polls every tenant with an Ocean Engine connector until `stop` receives (or its sender is
/// dropped). Tenants set up while it runs are picked up at the next round. Errors are logged
/// (without credentials) and retried with backoff; they never end the loop.
pub fn run_until_stopped(
    app: Arc<App>,
    source: &dyn Fn() -> Box<dyn LeadSource>,
    options: RunOptions,
    stop: Receiver<()>,
) {
    let mut slots: HashMap<TenantId, Slot> = HashMap::new();
    loop {
        match app.store().connectors(OCEANENGINE) {
            Ok(list) => {
                for (tenant, _) in list {
                    slots.entry(tenant).or_insert_with(|| Slot {
                        poller: LeadPoller::new(app.clone(), tenant, source(), options.poll),
                        backoff: Backoff::new(options.initial_backoff, options.max_backoff),
                        next_at: Instant::now(),
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list lead pollers; retrying"),
        }
        for (tenant, slot) in slots.iter_mut() {
            if slot.next_at > Instant::now() {
                continue;
            }
            // A tenant another node serves is polled there (its checkpoint is fenced too); it
            // is looked at again an interval later, not at once (no spinning on it).
            if !app.ingestor.serves(*tenant) {
                slot.next_at = Instant::now() + options.interval;
                continue;
            }
            slot.next_at = loop {
                if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                    return;
                }
                match slot.poller.step(time::now_ms()) {
                    Ok(Step::Idle) => {
                        slot.backoff.success();
                        break Instant::now() + options.interval;
                    }
                    Ok(Step::Page {
                        page,
                        leads,
                        accepted,
                        rejected,
                        ..
                    }) => {
                        slot.backoff.success();
                        if !rejected.is_empty() {
                            let codes: Vec<&str> = rejected.iter().map(|r| r.code).collect();
                            tracing::warn!(
                                tenant,
                                page,
                                refused = rejected.len(),
                                ?codes,
                                "leads refused"
                            );
                        }
                        tracing::debug!(tenant, page, leads, accepted, "lead page stored");
                    }
                    Err(e) => {
                        let wait = slot.backoff.failure();
                        tracing::warn!(tenant, error = %e, retry_in_ms = wait.as_millis() as u64, "lead poll failed");
                        break Instant::now() + wait;
                    }
                }
            };
        }
        let wake = slots
            .values()
            .map(|s| s.next_at)
            .min()
            .unwrap_or_else(|| Instant::now() + options.interval)
            .min(Instant::now() + options.interval);
        match stop.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A stand-in lead API: records requests, serves one lead per window, fails on demand.
    struct Stub {
        asked: Arc<Mutex<Vec<PageRequest>>>,
        fail: Arc<Mutex<bool>>,
    }

    impl LeadSource for Stub {
        fn fetch(&self, _: &OceanEngineSettings, req: &PageRequest) -> Result<Page, PollError> {
            self.asked.lock().unwrap().push(req.clone());
            if *self.fail.lock().unwrap() {
                return Err(PollError::Status(503));
            }
            let lead = serde_json::json!({"clue_id": format!("c{}", req.from),
                "telephone": "13800138000", "create_time": req.from / 1000});
            Ok(Page {
                leads: vec![lead.as_object().unwrap().clone()],
                total_page: 1,
            })
        }
    }

    #[test]
    fn windows_are_bounded_lagged_whole_seconds_and_checkpointed_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn siyu_store::Store> = Arc::new(
            siyu_store::SqliteStore::open(dir.path(), siyu_store::Durability::Normal).unwrap(),
        );
        let name = crate::TenantName::parse("acme").unwrap();
        crate::tenants::create(&*store, &name).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let day = time::MS_PER_DAY;
        let start = 1_790_000_000_000;
        let guard = connectors::Safeguards::new(
            crate::secrets::Sealer::from_keys(&[9; 32], None),
            TargetPolicy::ALLOW_PRIVATE,
        );
        connectors::set_oceanengine(
            &*store,
            &guard,
            tenant,
            connectors::OceanEngineChange {
                advertiser_id: Some("1".into()),
                access_token: Some("t".into()),
                start: Some(start),
                ..Default::default()
            },
            start,
        )
        .unwrap()
        .unwrap();
        let app = Arc::new(
            App::start_with(
                store.clone(),
                crate::EngineMode::WriteOnly,
                Arc::new(time::SystemClock),
                guard.clone(),
            )
            .unwrap(),
        );
        let (asked, fail) = (Arc::default(), Arc::new(Mutex::new(false)));
        let stub = Stub {
            asked: Arc::clone(&asked),
            fail: Arc::clone(&fail),
        };
        let options = PollOptions {
            lag_ms: 60_000,
            max_window_ms: day,
        };
        let mut poller = LeadPoller::new(app.clone(), tenant, Box::new(stub), options);
        let now = start + day + day / 2 + 123;

        // A failure leaves the position where it was.
        *fail.lock().unwrap() = true;
        assert!(poller.step(now).is_err());
        let position = || {
            connectors::oceanengine(&*store, &guard, tenant)
                .unwrap()
                .unwrap()
                .1
        };
        assert_eq!(
            serde_json::from_value::<Checkpoint>(position().unwrap()).unwrap(),
            Checkpoint::starting_at(start)
        );
        *fail.lock().unwrap() = false;

        let mut steps = Vec::new();
        while let Step::Page { from, to, next, .. } = poller.step(now).unwrap() {
            steps.push((from, to));
            assert_eq!(next, Checkpoint::starting_at(to));
        }
        let last_end = now - 60_000 - (now - 60_000).rem_euclid(1000);
        assert_eq!(steps, [(start, start + day), (start + day, last_end)]);
        assert_eq!(
            asked.lock().unwrap().len(),
            3,
            "the failed request, then two windows"
        );
        assert_eq!(store.event_count(tenant).unwrap(), 2);
        assert_eq!(poller.step(now).unwrap(), Step::Idle, "caught up");
        assert_eq!(
            poller.step(last_end + 60_000 + 999).unwrap(),
            Step::Idle,
            "whole seconds only"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| b.failure().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        b.success();
        assert_eq!(b.failure().as_secs(), 1);
    }

    #[test]
    fn the_api_answer_is_read_or_refused() {
        let ok = r#"{"code":0,"message":"OK","data":{"list":[{"clue_id":"1"}],
                     "page_info":{"page":1,"page_size":100,"total_number":1,"total_page":1}},
                     "request_id":"r"}"#;
        let p = parse_page(ok).unwrap();
        assert_eq!((p.leads.len(), p.total_page), (1, 1));
        let refused = r#"{"code":40100,"message":"access token expired","request_id":"r"}"#;
        assert!(matches!(
            parse_page(refused),
            Err(PollError::Api { code: 40100, .. })
        ));
        assert!(matches!(
            parse_page("<html>"),
            Err(PollError::BadResponse(_))
        ));
    }
}
