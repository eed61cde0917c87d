//! Test helpers: an app on port 0 with a fresh store, a client that knows its keys, and the
//! `both!` macro that runs a test against SQLite and PostgreSQL.

use std::sync::Arc;

use serde_json::Value;
use siyu_app::{App, EngineMode};
use siyu_store::{Durability, Location};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What keeps a test's store alive: its temporary directory, or its PostgreSQL schema
/// (dropped when this is).
#[derive(Debug)]
pub struct StoreGuard {
    _dir: Option<tempfile::TempDir>,
    _schema: Option<siyu_store::testing::TestSchema>,
}

/// A fresh, empty store location for a backend, valid as long as the guard lives.
/// Safe to call from async tests (the PostgreSQL setup blocks on a thread of its own).
pub fn fresh_location(backend: Backend) -> (Location, StoreGuard) {
    std::thread::spawn(move || fresh_location_blocking(backend))
        .join()
        .expect("test store setup")
}

pub fn fresh_location_blocking(backend: Backend) -> (Location, StoreGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            (
                Location::Sqlite(dir.path().join("data")),
                StoreGuard {
                    _dir: Some(dir),
                    _schema: None,
                },
            )
        }
        Backend::Postgres => {
            let schema = siyu_store::testing::fresh_postgres();
            (
                Location::Postgres(schema.url.clone()),
                StoreGuard {
                    _dir: None,
                    _schema: Some(schema),
                },
            )
        }
    }
}

/// `--data DIR` or `--database-url URL` for the CLI.
pub fn store_flags(location: &Location) -> Vec<String> {
    match location {
        Location::Sqlite(d) => vec!["--data".into(), d.display().to_string()],
        Location::Postgres(u) => vec!["--database-url".into(), u.clone()],
    }
}

/// The secret key the tests seal connector credentials with (given to the binary as
/// `SIYU_SECRET_KEY`, see `durability::siyu`), and its bytes.
pub const TEST_SECRET_KEY: &str =
    "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const TEST_SECRET_KEY_BYTES: [u8; 32] = [0x5a; 32];

/// What the tests' apps guard connectors with: the test key, and private targets allowed (the
/// local lead API listens on http://127.0.0.1), chosen here rather than through the
/// environment.
pub fn test_safeguards() -> siyu_app::Safeguards {
    siyu_app::Safeguards::new(
        siyu_app::secrets::Sealer::from_keys(&TEST_SECRET_KEY_BYTES, None),
        siyu_app::targets::TargetPolicy::ALLOW_PRIVATE,
    )
}

/// Starts the services the way `siyu serve` does, with `guard`.
pub fn start_guarded(store: Arc<dyn siyu_store::Store>, guard: siyu_app::Safeguards) -> App {
    App::start_with(
        store,
        EngineMode::Live,
        Arc::new(siyu_domain::time::SystemClock),
        guard,
    )
    .expect("start")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub write_key: String,
    pub admin_key: String,
    pub location: Location,
    /// The services behind the server while it runs (see [`TestApp::app`]); let go on
    /// [`TestApp::halt`], so the store closes when the server stops, as before.
    app: Option<Arc<App>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: StoreGuard,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, siyu_server::Limits::default()).await
}

pub async fn spawn_app_with(backend: Backend, limits: siyu_server::Limits) -> TestApp {
    spawn_app_guarded(backend, limits, test_safeguards()).await
}

/// [`spawn_app_with`] with the connectors guarded by `guard`.
pub async fn spawn_app_guarded(
    backend: Backend,
    limits: siyu_server::Limits,
    guard: siyu_app::Safeguards,
) -> TestApp {
    let settings = siyu_server::Settings {
        limits,
        ..Default::default()
    };
    spawn_app_full(
        backend,
        settings,
        Arc::new(siyu_domain::time::SystemClock),
        guard,
    )
    .await
}

/// An app with the given server settings whose clock (the rate limiter's too) is `clock`.
pub async fn spawn_app_on(
    backend: Backend,
    settings: siyu_server::Settings,
    clock: Arc<dyn siyu_domain::time::Clock>,
) -> TestApp {
    spawn_app_full(backend, settings, clock, test_safeguards()).await
}

/// An app with every setting given.
pub async fn spawn_app_full(
    backend: Backend,
    settings: siyu_server::Settings,
    clock: Arc<dyn siyu_domain::time::Clock>,
    guard: siyu_app::Safeguards,
) -> TestApp {
    let (location, dir) = fresh_location(backend);
    let loc = location.clone();
    let (app, keys) = tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, Durability::Full).expect("open store");
        let keys =
            siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("acme").unwrap())
                .expect("tenant");
        (
            Arc::new(App::start_with(store, EngineMode::Live, clock, guard).expect("start")),
            keys,
        )
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(siyu_server::serve(
        listener,
        siyu_server::app(app.clone(), &settings),
        settings,
        async {
            let _ = stopped.await;
        },
    ));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        write_key: keys.write_key,
        admin_key: keys.admin_key,
        location,
        app: Some(app),
        stop: Some(stop),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post_events(&self, body: &Value) -> (u16, Value) {
        self.post_raw(
            "/api/events",
            &self.write_key,
            "application/json",
            body.to_string().into_bytes(),
            None,
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
        encoding: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn stats(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/api/stats", self.base))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn event_count(&self) -> u64 {
        self.stats().await["events"].as_u64().unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs JSON with the admin key.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The services behind the running server, for a test that steps a worker `siyu serve`
    /// runs on a thread of its own (the lead worker) instead of waiting for it.
    pub fn app(&self) -> Arc<App> {
        self.app.clone().expect("the server runs")
    }

    /// Stops the server (if it runs), keeping the store for a [`TestApp::restart`].
    pub async fn halt(&mut self) {
        self.app = None;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub async fn admin_put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Stops the server and starts a new one on the same store (same keys): everything
    /// derived is rebuilt from the log.
    pub async fn restart(mut self) -> TestApp {
        self.halt().await;
        let loc = self.location.clone();
        let app = tokio::task::spawn_blocking(move || {
            let store = siyu_store::open(&loc, Durability::Full).expect("open store");
            Arc::new(start_guarded(store, test_safeguards()))
        })
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = siyu_server::Settings::default();
        self.server = Some(tokio::spawn(siyu_server::serve(
            listener,
            siyu_server::app(app.clone(), &settings),
            settings,
            async {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
        self.app = Some(app);
        self.base = format!("http://{addr}");
        self
    }

    /// Stops the server and waits for it, so the store is closed.
    pub async fn stop(mut self) {
        self.halt().await;
    }
}

/// A valid native event.
pub fn event(id: &str, ty: &str, phone: &str) -> Value {
    let mut v = serde_json::json!({
        "id": id, "type": ty, "ts": "2026-10-01T12:00:00+08:00",
        "identities": {"phone": phone}, "source": "test"
    });
    if ty == "order" {
        v["props"] = serde_json::json!({"order_id": format!("o-{id}"), "amount": 88.0});
    }
    v
}

/// Runs each named `async fn(Backend)` against both backends.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Postgres).await })*
        }
    };
}

/// Each command's `--help` says each of its words (words wrapped onto the next line count).
pub fn help_says(cases: &[(&[&str], &[&str])]) {
    for (cmd, words) in cases {
        let out = crate::durability::siyu()
            .args(*cmd)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "siyu {cmd:?} --help");
        let help = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for w in *words {
            assert!(
                help.contains(w),
                "siyu {cmd:?} --help does not say {w:?}:\n{help}"
            );
        }
    }
}

/// Runs `cmd`, which must succeed (its stderr is the failure's message), and parses what it
/// printed as one JSON document.
pub fn stdout_json(cmd: &mut std::process::Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
