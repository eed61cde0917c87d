//! `siyu serve`: load, bind, serve, drain on SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let location = args.store.location()?;
    serve_at(&location, &args.addr, None)
}

/// Opens the store, rebuilds the live engines from the log, and serves on `addr` until a
/// signal. `banner` is printed once the socket is bound.
pub fn serve_at(
    location: &siyu_store::Location,
    addr: &str,
    banner: Option<&dyn Fn(&str)>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    siyu_server::metrics::install();
    let store = siyu_store::open(location, siyu_store::Durability::Full)?;
    tracing::info!(store = %location.describe(), "loading engines from the event log");
    let app = Arc::new(siyu_app::App::start(store, siyu_app::EngineMode::Live)?);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?.to_string();
        tracing::info!(addr = %bound, "serving");
        match banner {
            Some(b) => b(&bound),
            // One plain line on stdout, for people and for scripts that start with port 0.
            None => println!("siyu listening on http://{bound}"),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let router = siyu_server::app(app.clone(), siyu_server::Limits::default());
        siyu_server::serve(listener, router, siyu_server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    // Requests are finished; the last reference drains the writer queue and joins it.
    drop(runtime);
    if let Ok(mut app) = Arc::try_unwrap(app) {
        app.ingestor.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}
