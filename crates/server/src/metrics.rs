//! Prometheus metrics. The recorder is process-global (the `metrics` crate's design), so it is
//! installed once, however many routers a test process builds.
//!
//! The metrics are recorded where things happen (the app crate counts ingest outcomes, the
//! writer times its group commits); this module names them all in [`METRICS`], so each gets
//! its `# HELP` line and, for a histogram, buckets in its own unit: seconds for durations, a
//! 1-2-5 series for counts of events. A unit test checks that every metric recorded anywhere
//! in the workspace is in the table. docs/ingest.md#metrics is the same table for operators.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds for durations, 0.5 ms to 10 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds for events per group commit, 1 to `MAX_GROUP_EVENTS` (20,000).
const EVENTS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0,
    20_000.0,
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    /// With its bucket upper bounds.
    Histogram(&'static [f64]),
}

/// One metric as `/metrics` describes it.
struct Metric {
    name: &'static str,
    kind: Kind,
    unit: Unit,
    help: &'static str,
}

/// Every metric Siyu records.
const METRICS: &[Metric] = &[
    Metric {
        name: "siyu_http_requests_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "HTTP requests answered, by method, route (path) and status.",
    },
    Metric {
        name: "siyu_http_request_seconds",
        kind: Kind::Histogram(SECONDS),
        unit: Unit::Seconds,
        help: "Time from receiving an HTTP request to its response, by method and route (path).",
    },
    Metric {
        name: "siyu_ingest_events_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Events offered for ingest, by outcome: accepted (stored), duplicate (an id already \
               stored), rejected (invalid).",
    },
    Metric {
        name: "siyu_ingest_commit_seconds",
        kind: Kind::Histogram(SECONDS),
        unit: Unit::Seconds,
        help: "Time one group commit of the ingest writer takes in the store.",
    },
    Metric {
        name: "siyu_ingest_group_events",
        kind: Kind::Histogram(EVENTS),
        unit: Unit::Count,
        help: "Events in one group commit of the ingest writer (requests queued together are \
               committed in one transaction).",
    },
    Metric {
        name: "siyu_layer_transitions_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Fans that changed layer, as recorded by the live engines.",
    },
    Metric {
        name: "siyu_segment_changes_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Saved-segment entries and exits recorded as triggers.",
    },
    Metric {
        name: "siyu_douyin_deliveries_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Douyin webhook deliveries, by outcome: stored, duplicate, unauthorized.",
    },
    Metric {
        name: "siyu_oceanengine_leads_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Leads pulled from the Ocean Engine lead API, by outcome: accepted, duplicate, \
               rejected.",
    },
];

fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = builder()
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        if metrics::set_global_recorder(recorder).is_ok() {
            for m in METRICS {
                match m.kind {
                    Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
                    Kind::Histogram(_) => metrics::describe_histogram!(m.name, m.unit, m.help),
                }
            }
        }
        handle
    })
}

/// The exporter with each histogram's buckets.
fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let mut b = PrometheusBuilder::new();
    for m in METRICS {
        if let Kind::Histogram(buckets) = m.kind {
            b = b.set_buckets_for_metric(Matcher::Full(m.name.to_string()), buckets)?;
        }
    }
    Ok(b)
}

/// Installs the recorder (idempotent). Call at start so counters from the first request count.
pub fn install() {
    handle();
}

pub fn render() -> String {
    handle().render()
}

/// The method as a label: the methods the API knows, else `other`, so that a client sending
/// made-up methods cannot grow the label set (routes are bounded the same way: a path no
/// route matched is `unmatched`).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: request count and latency per route and status.
pub async fn track(req: Request, next: Next) -> Response {
    install();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("siyu_http_requests_total", "method" => method, "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("siyu_http_request_seconds", "method" => method, "path" => path)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Kind, METRICS, method_label};

    #[test]
    fn made_up_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::GET), "GET");
        for made_up in ["XYZ", "BREW", "A1234567"] {
            let m = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{made_up}");
        }
        assert_eq!(method_label(&Method::CONNECT), "other");
    }

    /// Every counter, histogram and gauge the workspace's sources record, by the name given
    /// to the `metrics` macro: (kind, name).
    fn recorded(dir: &Path, found: &mut Vec<(&'static str, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                recorded(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for kind in ["counter", "histogram", "gauge"] {
                    let call = format!("metrics::{kind}!(");
                    for (i, _) in text.match_indices(&call) {
                        let rest = text[i + call.len()..].trim_start();
                        if let Some(name) = rest.strip_prefix('"') {
                            let name = &name[..name.find('"').unwrap()];
                            found.push((kind, name.to_string()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_metric_recorded_is_described_with_its_kind() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        recorded(&crates, &mut found);
        // This file's own middleware, and the app crate's ingest counters at least.
        assert!(found.len() >= 8, "{found:?}");
        for (kind, name) in &found {
            let m = METRICS
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("{kind} {name} is recorded but not in METRICS"));
            let described = match m.kind {
                Kind::Counter => "counter",
                Kind::Histogram(_) => "histogram",
            };
            assert_eq!(*kind, described, "{name}");
        }
        for m in METRICS {
            assert!(
                found.iter().any(|(_, n)| n == m.name),
                "{} is described but never recorded",
                m.name
            );
            assert!(m.name.starts_with("siyu_") && !m.help.is_empty());
        }
    }

    #[test]
    fn the_exposition_has_help_and_buckets_in_each_histograms_unit() {
        super::install();
        metrics::histogram!("siyu_ingest_group_events").record(3.0);
        metrics::histogram!("siyu_ingest_commit_seconds").record(0.002);
        metrics::counter!("siyu_ingest_events_total", "outcome" => "accepted").increment(3);
        let text = super::render();
        for name in [
            "siyu_ingest_group_events",
            "siyu_ingest_commit_seconds",
            "siyu_ingest_events_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        }
        assert!(
            text.contains("# TYPE siyu_ingest_group_events histogram"),
            "{text}"
        );
        assert!(
            text.contains("siyu_ingest_group_events_bucket{le=\"5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("siyu_ingest_group_events_bucket{le=\"20000\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("siyu_ingest_group_events_bucket{le=\"0.0005\"}"),
            "{text}"
        );
        assert!(
            text.contains("siyu_ingest_commit_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
