//! `/metrics`: every `siyu_` metric has `# HELP` and `# TYPE` lines, and each histogram has
//! buckets in its unit (events per group commit in counts, durations in seconds); label sets
//! stay bounded whatever clients send.

use crate::both;
use crate::helpers::{Backend, event, spawn_app};

async fn metrics_are_described_with_buckets_in_their_unit(b: Backend) {
    let app = spawn_app(b).await;
    let (status, _) = app
        .post_events(&serde_json::json!([
            event("m-1", "follow", "138 0013 8000"),
            event("m-2", "order", "138 0013 8000"),
        ]))
        .await;
    assert_eq!(status, 200);
    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();

    // What this test made happen is there, described.
    for name in [
        "siyu_http_requests_total",
        "siyu_http_request_seconds",
        "siyu_ingest_events_total",
        "siyu_ingest_commit_seconds",
        "siyu_ingest_group_events",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
    }
    // And so is everything else other tests in this process recorded.
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE siyu_"))
        .collect();
    assert!(typed.len() >= 5, "{text}");
    for t in typed {
        let name = t.split(' ').next().unwrap();
        let help = format!("# HELP siyu_{name} ");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&help) && l.len() > help.len() + 10),
            "siyu_{name} has no # HELP line:\n{text}"
        );
    }
    // Counts of events in counts, times in seconds.
    for le in ["1", "2", "5", "100", "1000", "10000", "20000"] {
        let bucket = format!("siyu_ingest_group_events_bucket{{le=\"{le}\"}}");
        assert!(text.contains(&bucket), "no {bucket}:\n{text}");
    }
    assert!(
        !text.contains("siyu_ingest_group_events_bucket{le=\"0.0005\"}"),
        "{text}"
    );
    for le in ["0.0005", "0.1", "10"] {
        let bucket = format!("siyu_ingest_commit_seconds_bucket{{le=\"{le}\"}}");
        assert!(text.contains(&bucket), "no {bucket}:\n{text}");
    }
    app.stop().await;
}

both!(
    metrics_are_described_with_buckets_in_their_unit,
    made_up_methods_and_paths_share_one_label
);

/// A client sending made-up methods and paths cannot grow the label sets (issue 12).
async fn made_up_methods_and_paths_share_one_label(b: Backend) {
    let app = spawn_app(b).await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
        let r = app
            .client
            .request(method, format!("{}/no/such/path/{i}", app.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("PROBE"), "{text}");
    assert!(!text.contains("/no/such/path"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("siyu_http_requests_total{")
                && l.contains("method=\"other\"")
                && l.contains("path=\"unmatched\"")),
        "{text}"
    );
    app.stop().await;
}
