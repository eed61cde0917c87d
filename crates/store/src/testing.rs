//! Helpers for tests of this crate and of the crates above it: a fresh, isolated PostgreSQL
//! schema per test, so the one test suite runs against both backends side by side.
//!
//! There is no silent skip: if PostgreSQL cannot be reached the test fails and says where it
//! looked. Set `SIYU_TEST_DATABASE_URL` to point elsewhere.

use std::sync::atomic::{AtomicU32, Ordering};

/// The PostgreSQL the tests use.
pub fn base_url() -> String {
    std::env::var("SIYU_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Creates a new empty schema and returns a URL whose connections use it.
pub fn fresh_postgres_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = base_url();
    let schema = format!(
        "siyu_t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        siyu_domain::time::now_ms() % 1_000_000
    );
    let mut client = base
        .parse::<postgres::Config>()
        .unwrap_or_else(|e| panic!("SIYU_TEST_DATABASE_URL {base:?} is not a URL: {e}"))
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL for the tests is not reachable at {base} ({e}). \
                 Start it or set SIYU_TEST_DATABASE_URL; the PostgreSQL tests never skip."
            )
        });
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("create test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}
