//! `siyu serve`: load, bind, serve, drain on SIGINT/SIGTERM. Beside the server, one thread runs
//! the Ocean Engine lead pollers of every tenant that has one set up and is served here.
//!
//! One server per store: on SQLite the data directory's lock (`siyu_store::lock`) is taken
//! before anything is opened, and a second server (or a command that writes) is refused at
//! once with the holder's pid and address. On PostgreSQL several servers may share the
//! database: each is a node that serves the tenants it holds the lease of
//! (`siyu_app::owners`), and forwards requests for the others to their node.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use siyu_app::oceanengine::{self, HttpLeadSource, LeadSource, RunOptions};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let location = args.store.location()?;
    let mut poll = RunOptions {
        interval: Duration::from_secs(args.poll_interval.max(1)),
        ..RunOptions::default()
    };
    poll.poll.lag_ms = args.poll_lag as i64 * 1000;
    let lock = args.store.lock_for("serve")?;
    let settings = args.server_settings();
    let nodes = Nodes {
        ttl: Duration::from_secs(args.lease_ttl),
        advertise: args.advertise_addr,
        name: args.node_name,
    };
    let options = ServeOptions {
        poll,
        lock,
        nodes,
        min_ts: args.time.min_ts,
        settings,
    };
    serve_with(&location, &args.addr, None, options)
}

/// Everything `siyu serve` is told beyond where and on which address.
pub struct ServeOptions {
    /// Paces the Ocean Engine lead pollers.
    pub poll: RunOptions,
    /// The SQLite data directory's lock, if the caller holds it already (else it is taken).
    pub lock: Option<siyu_store::DirLock>,
    /// How the node takes part on a shared PostgreSQL.
    pub nodes: Nodes,
    /// Events are accepted from this time on.
    pub min_ts: siyu_domain::Millis,
    /// The server's limits and timeouts.
    pub settings: siyu_server::Settings,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            poll: RunOptions::default(),
            lock: None,
            nodes: Nodes::default(),
            min_ts: siyu_domain::event::DEFAULT_MIN_TS,
            settings: siyu_server::Settings::default(),
        }
    }
}

/// How a node on a shared PostgreSQL takes part (see `siyu_app::owners`).
pub struct Nodes {
    pub ttl: Duration,
    /// The address other nodes reach this one at; default, the bound one.
    pub advertise: Option<String>,
    /// What the node's id starts with; default, the host's name.
    pub name: Option<String>,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            ttl: Duration::from_secs(15),
            advertise: None,
            name: None,
        }
    }
}

/// Opens the store, rebuilds the live engines from the log, and serves on `addr` until a
/// signal. `banner` is printed once the socket is bound. `lock`: the SQLite data directory's,
/// if the caller holds it already (else it is taken here).
pub fn serve_at(
    location: &siyu_store::Location,
    addr: &str,
    banner: Option<&dyn Fn(&str)>,
    lock: Option<siyu_store::DirLock>,
) -> anyhow::Result<()> {
    let options = ServeOptions {
        lock,
        ..ServeOptions::default()
    };
    serve_with(location, addr, banner, options)
}

/// [`serve_at`] with every option.
pub fn serve_with(
    location: &siyu_store::Location,
    addr: &str,
    banner: Option<&dyn Fn(&str)>,
    options: ServeOptions,
) -> anyhow::Result<()> {
    let ServeOptions {
        poll,
        lock,
        nodes,
        min_ts,
        settings,
    } = options;
    let mut lock = match (lock, location) {
        (Some(l), _) => Some(l),
        (None, siyu_store::Location::Sqlite(dir)) => {
            Some(siyu_store::DirLock::acquire(dir, "serve")?)
        }
        (None, siyu_store::Location::Postgres(_)) => None,
    };
    let shared = matches!(location, siyu_store::Location::Postgres(_));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    siyu_server::metrics::install();
    let guard = crate::safeguards::load(location)?;
    let targets = guard.targets;
    if targets.allows_private() {
        tracing::warn!(
            "SIYU_ALLOW_PRIVATE_TARGETS is set: outbound requests may go to http and private hosts"
        );
    }
    let store = siyu_store::open(location, siyu_store::Durability::Full)?;
    // A store that cannot be written is refused now, not answered with a 500 per request.
    store.check_writable()?;
    let start = |store, mode| -> anyhow::Result<Arc<siyu_app::App>> {
        let app = siyu_app::App::start_with(
            store,
            mode,
            Arc::new(siyu_domain::time::SystemClock),
            guard,
        )?;
        Ok(Arc::new(app.with_min_ts(min_ts)))
    };
    let app = if shared {
        store.require_leases();
        start(store, siyu_app::EngineMode::Leased)?
    } else {
        tracing::info!(store = %location.describe(), "loading engines from the event log");
        start(store, siyu_app::EngineMode::Live)?
    };
    // Credentials in plain text (earlier versions) or under the old key are sealed again now,
    // so the old key can be retired once a server has started with the new one.
    app.reseal_connectors()?;
    siyu_app::channels::reseal(&**app.store(), app.safeguards())?;
    let listener = runtime.block_on(async {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    })?;
    let bound = listener.local_addr()?.to_string();
    let advertise = nodes.advertise.clone().unwrap_or_else(|| bound.clone());
    let node = siyu_app::owners::new_node(&advertise, nodes.name.as_deref());
    app.set_operator_secret(&node.secret);
    if let Some(l) = &mut lock {
        l.serving(&bound, &node.secret)?;
    }
    // The node takes its share of the tenants before it serves (a first step), then keeps
    // it on a thread of its own; it stops when `stop_leases` is dropped.
    let (stop_leases, leases_stopped) = std::sync::mpsc::channel::<()>();
    let leaser = if shared {
        tracing::info!(node = %node.id, addr = %advertise, "joining the nodes on {}", location.describe());
        let mut leaser = siyu_app::owners::Leaser::new(
            app.clone(),
            node,
            siyu_app::owners::LeaseOptions {
                ttl: nodes.ttl,
                addr: advertise,
            },
        );
        leaser.step()?;
        Some(
            std::thread::Builder::new()
                .name("siyu-leases".into())
                .spawn(move || leaser.run_until_stopped(leases_stopped))?,
        )
    } else {
        None
    };
    // The pollers stop when `stop_pollers` is dropped.
    let (stop_pollers, stopped) = std::sync::mpsc::channel::<()>();
    let pollers = {
        let app = app.clone();
        std::thread::Builder::new()
            .name("siyu-lead-poller".into())
            .spawn(move || {
                let source = || Box::new(HttpLeadSource::new(targets)) as Box<dyn LeadSource>;
                oceanengine::run_until_stopped(app, &source, poll, stopped);
            })?
    };
    // Journeys act on what comes in: the run worker follows the trigger stream and the
    // runs' timers; the outbox delivers what runs send, one lane per channel.
    let (stop_journeys, journeys_stopped) = std::sync::mpsc::channel::<()>();
    let (stop_outbox, outbox_stopped) = std::sync::mpsc::channel::<()>();
    let journeys = {
        let worker = siyu_app::journeys::worker::JourneyWorker::new(app.clone());
        std::thread::Builder::new()
            .name("siyu-journeys".into())
            .spawn(move || worker.run_until_stopped(journeys_stopped))?
    };
    let outbox = {
        let worker = siyu_app::journeys::outbox::OutboxWorker::new(app.clone());
        std::thread::Builder::new()
            .name("siyu-outbox".into())
            .spawn(move || worker.run_until_stopped(outbox_stopped))?
    };
    // Leads follow the same stream: lead forms become leads with one owner each.
    let (stop_leads, leads_stopped) = std::sync::mpsc::channel::<()>();
    let leads = {
        let worker = siyu_app::leads::worker::LeadWorker::new(app.clone());
        std::thread::Builder::new()
            .name("siyu-leads".into())
            .spawn(move || worker.run_until_stopped(leads_stopped))?
    };
    let served = runtime.block_on(async {
        let shutdown = shutdown_on_signal()?;
        tracing::info!(addr = %bound, "serving");
        match banner {
            Some(b) => b(&bound),
            // One plain line on stdout, for people and for scripts that start with port 0.
            None => outln!("siyu listening on http://{bound}"),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let router = siyu_server::app(app.clone(), &settings);
        siyu_server::serve(listener, router, settings, shutdown).await?;
        anyhow::Ok(())
    });
    drop(stop_pollers);
    let _ = pollers.join();
    // What a worker committed is durable; what it had not is taken again at the next start.
    drop(stop_journeys);
    siyu_app::journeys::worker::bell().ring();
    let _ = journeys.join();
    drop(stop_outbox);
    let _ = outbox.join();
    drop(stop_leads);
    siyu_app::journeys::worker::bell().ring();
    let _ = leads.join();
    // Every tenant given up (what each derived stored first), so other nodes take them now.
    drop(stop_leases);
    if let Some(l) = leaser {
        let _ = l.join();
    }
    served?;
    // Requests are finished; the last reference drains the writer queue and joins it.
    drop(runtime);
    if let Ok(mut app) = Arc::try_unwrap(app) {
        app.ingestor.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT or SIGTERM, listened for from the call on: once the banner says the server is
/// listening, a signal drains it. (`siyu_server::shutdown_signal` registers only when first
/// polled, after the banner, and a SIGTERM in between killed the process.)
fn shutdown_on_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("shutdown signal received; finishing requests in flight");
        })
    }
    #[cfg(not(unix))]
    Ok(siyu_server::shutdown_signal())
}
