//! `siyu serve`: load, bind, serve, drain on SIGINT/SIGTERM. Beside the server, one thread runs
//! the Ocean Engine lead pollers of every tenant that has one set up.

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
    serve_with(&location, &args.addr, None, poll, args.server_settings())
}

/// Opens the store, rebuilds the live engines from the log, and serves on `addr` until a
/// signal. `banner` is printed once the socket is bound.
pub fn serve_at(
    location: &siyu_store::Location,
    addr: &str,
    banner: Option<&dyn Fn(&str)>,
) -> anyhow::Result<()> {
    serve_with(
        location,
        addr,
        banner,
        RunOptions::default(),
        siyu_server::Settings::default(),
    )
}

/// [`serve_at`] with the lead pollers paced by `poll`, and the server's limits and timeouts.
pub fn serve_with(
    location: &siyu_store::Location,
    addr: &str,
    banner: Option<&dyn Fn(&str)>,
    poll: RunOptions,
    settings: siyu_server::Settings,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    siyu_server::metrics::install();
    let store = siyu_store::open(location, siyu_store::Durability::Full)?;
    tracing::info!(store = %location.describe(), "loading engines from the event log");
    let app = Arc::new(siyu_app::App::start(store, siyu_app::EngineMode::Live)?);
    // The pollers stop when `stop_pollers` is dropped.
    let (stop_pollers, stopped) = std::sync::mpsc::channel::<()>();
    let pollers = {
        let app = app.clone();
        std::thread::Builder::new()
            .name("siyu-lead-poller".into())
            .spawn(move || {
                let source = || Box::new(HttpLeadSource::default()) as Box<dyn LeadSource>;
                oceanengine::run_until_stopped(app, &source, poll, stopped);
            })?
    };
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?.to_string();
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
