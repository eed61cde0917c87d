//! The one integration-test binary: the HTTP API, the CLI and durability, each test run
//! against both backends (SQLite in a temp directory, PostgreSQL in a fresh schema).

mod analytics;
mod helpers;

mod audience;
mod cli;
mod connectors;
mod durability;
mod groups;
mod guard;
mod identity;
mod ingest;
mod journey_cli;
mod journey_crash;
mod journeys;
mod leads;
mod ltv;
mod metrics;
mod nodes;
mod openapi;
mod output;
mod secrets;
mod segment;
mod snapshots;
mod strict;
mod triggers;
