//! Helpers for tests of this crate and of the crates above it: a fresh, isolated PostgreSQL
//! schema per test, so the one test suite runs against both backends side by side, and
//! dropped again when the test ends.
//!
//! There is no silent skip: if PostgreSQL cannot be reached the test fails and says where it
//! looked. Set `SIYU_TEST_DATABASE_URL` to point elsewhere.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The PostgreSQL the tests use.
pub fn base_url() -> String {
    std::env::var("SIYU_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The prefix of every test schema: `siyu_t_<pid>_<n>`.
const PREFIX: &str = "siyu_t_";

fn connect() -> postgres::Client {
    let base = base_url();
    base.parse::<postgres::Config>()
        .unwrap_or_else(|e| panic!("SIYU_TEST_DATABASE_URL {base:?} is not a URL: {e}"))
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL for the tests is not reachable at {base} ({e}). \
                 Start it or set SIYU_TEST_DATABASE_URL; the PostgreSQL tests never skip."
            )
        })
}

/// An empty schema of its own for one test; dropped (with everything in it) when this is.
/// Hold it for as long as anything uses [`TestSchema::url`], and declare it before the store
/// that uses it, so that the store is dropped first.
#[derive(Debug)]
pub struct TestSchema {
    /// A URL whose connections use the schema.
    pub url: String,
    name: String,
}

/// Creates a new empty schema. The first call in a process also drops the schemas that test
/// processes no longer running left behind (killed before they could drop their own).
pub fn fresh_postgres() -> TestSchema {
    static N: AtomicU32 = AtomicU32::new(0);
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_orphans);
    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    connect()
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .expect("create test schema");
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    TestSchema {
        url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
        name,
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // The synchronous client cannot run inside an async context: use a thread of its own.
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            connect().batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            eprintln!("warning: could not drop a test schema: {dropped:?}");
        }
    }
}

/// Drops `siyu_t_<pid>_*` schemas whose process is gone.
fn sweep_orphans() {
    let mut client = connect();
    let Ok(rows) = client.query(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'siyu\\_t\\_%'",
        &[],
    ) else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}
