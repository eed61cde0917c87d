//! The analytics reports through the API and the CLI, on both stores: the funnel, three-domain
//! attribution, historical LTV and weekly retention, their figures adding up across reports
//! (the funnel's ends are the layer counts; attribution's revenue is the orders' revenue, and
//! LTV's), and bad queries refused with the field named.

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, spawn_app, store_flags};

fn ev(id: &str, who: &str, ty: &str, ts: &str, props: Value) -> Value {
    json!({"id": id, "type": ty, "ts": ts, "identities": {"douyin_open_id": who}, "props": props})
}

const FROM: &str = "2026-10-05T00:00:00Z";
const TO: &str = "2026-11-02T00:00:00Z";

async fn reports_add_up_and_refuse_bad_queries(b: Backend) {
    let app = spawn_app(b).await;
    let events = json!([
        // a: a video (public), an ad click (commercial), follows, orders twice.
        ev("1", "a", "video_view", "2026-10-01T00:00:00Z", json!({})),
        ev("2", "a", "ad_click", "2026-10-06T00:00:00Z", json!({})),
        ev("3", "a", "follow", "2026-10-06T01:00:00Z", json!({})),
        ev(
            "4",
            "a",
            "order",
            "2026-10-07T00:00:00Z",
            json!({"order_id": "o1", "amount": 100})
        ),
        ev(
            "5",
            "a",
            "order",
            "2026-10-20T00:00:00Z",
            json!({"order_id": "o2", "amount": 50.5})
        ),
        // b: follows and subscribes; c only orders.
        ev("6", "b", "follow", "2026-10-01T00:00:00Z", json!({})),
        ev("7", "b", "subscribe", "2026-10-12T00:00:00Z", json!({})),
        ev(
            "8",
            "c",
            "order",
            "2026-10-13T00:00:00Z",
            json!({"order_id": "o3", "amount": 20})
        ),
        ev(
            "9",
            "c",
            "refund",
            "2026-10-14T00:00:00Z",
            json!({"order_id": "o3", "amount": 20})
        ),
    ]);
    let (s, v) = app.post_events(&events).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(9)), "{v}");

    let (s, f) = app
        .get(&format!("/api/reports/funnel?from={FROM}&to={TO}"))
        .await;
    assert_eq!(s, 200, "{f}");
    let (_, layers) = app.get(&format!("/api/reports/layers?as_of={TO}")).await;
    for l in ["potential", "passerby", "favorable", "true_love"] {
        assert_eq!(
            f["at_to"][l], layers[l],
            "the funnel's end is the layer report: {l}"
        );
    }
    // a: potential at the start (no follow yet), true love at the end; b: passerby → favorable.
    assert_eq!(f["steps"][0]["fans"], 1, "{f}");
    assert_eq!(f["steps"][0]["reached"], 1);
    assert_eq!(f["steps"][1]["reached"], 1);
    assert_eq!(
        f["new_fans"]["potential"], 1,
        "c is new and never followed: {f}"
    );

    // The flow's series: from, each local midnight, to; its ends are the flow's.
    let (s, fl) = app
        .get(&format!("/api/reports/flow?from={FROM}&to={TO}"))
        .await;
    assert_eq!(s, 200, "{fl}");
    let daily = fl["daily"].as_array().unwrap();
    assert_eq!(fl["step_days"], 1);
    assert_eq!(
        daily.len(),
        30,
        "10-05 00:00Z, 28 Shanghai midnights, 11-02 00:00Z: {fl}"
    );
    assert_eq!(daily[0]["counts"], fl["at_from"]);
    assert_eq!(daily[daily.len() - 1]["counts"], fl["at_to"]);
    assert_eq!(
        daily[1]["at"], "2026-10-05T16:00:00.000Z",
        "Shanghai's midnight"
    );
    let moved_up: u64 = daily.iter().map(|p| p["up"].as_u64().unwrap()).sum();
    assert!(moved_up >= fl["moved_up"].as_u64().unwrap());

    let (s, a) = app
        .get(&format!("/api/reports/attribution?from={FROM}&to={TO}"))
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (a["orders"].as_u64(), a["buyers"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(a["revenue_fen"], 17_050);
    let domain = |d: &str| {
        a["by_domain"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["domain"] == d)
            .unwrap()
            .clone()
    };
    assert_eq!(domain("public")["first_touch"]["orders"], 2.0, "a's video");
    assert_eq!(
        domain("private")["first_touch"]["orders"],
        1.0,
        "c's own order"
    );
    for model in ["first_touch", "last_touch", "linear"] {
        let sum: f64 = a["by_domain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d[model]["revenue_fen"].as_f64().unwrap())
            .sum();
        assert!(
            (sum - 17_050.0).abs() < 1e-6,
            "{model} hands out the revenue: {sum}"
        );
    }

    let (s, l) = app.get(&format!("/api/reports/ltv?as_of={TO}")).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(
        l["total"]["revenue_fen"], a["revenue_fen"],
        "the same orders"
    );
    assert_eq!(l["total"]["refunds_fen"], 2_000);
    assert_eq!(l["total"]["fans"], layers["total"]);
    assert_eq!(l["total"]["repeat_rate"], 0.5, "a bought twice, c once");
    assert_eq!(
        l["by_cohort"][0]["key"], "2026-10",
        "months in Asia/Shanghai: {l}"
    );

    let (s, r) = app
        .get(&format!(
            "/api/reports/retention?from=2026-09-28T00:00:00%2B08:00&to={TO}&as_of={TO}&weeks=4"
        ))
        .await;
    assert_eq!(s, 200, "{r}");
    let w0 = &r["cohorts"][0];
    assert_eq!(
        (w0["week"].as_str(), w0["fans"].as_u64()),
        (Some("2026-09-28"), Some(2)),
        "{r}"
    );
    assert_eq!(w0["active"][0], 2);

    // Spend: a bad file names its line and column and stores nothing; a good one is CAC's
    // numerator, by channel and by first-touch domain.
    let csv = |text: &str| text.as_bytes().to_vec();
    let key = app.admin_key.clone();
    let (s, v) = app
        .post_raw(
            "/api/spend",
            &key,
            "text/csv",
            csv("date,channel,domain,amount\n2026-10-06,ad,commercial,300\n2026-10-07,ad,commercial,-1\n"),
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        (
            v["error"]["code"].as_str(),
            v["error"]["field"].as_str(),
            v["error"]["line"].as_u64()
        ),
        (Some("negative_amount"), Some("amount"), Some(3))
    );
    let file = "date,channel,domain,amount\n2026-10-06,ad,commercial,300\n2026-10-06,live,public,50.5\n2026-11-05,ad,commercial,999\n";
    let (s, v) = app
        .post_raw("/api/spend", &key, "text/csv", csv(file), None)
        .await;
    assert_eq!(
        (s, v["rows"].as_u64(), v["replaced"].as_u64()),
        (201, Some(3), Some(0)),
        "{v}"
    );
    let (_, v) = app
        .post_raw("/api/spend", &key, "text/csv", csv(file), None)
        .await;
    assert_eq!(v["replaced"], 3, "imported again: replaced, not added");
    let (s, c) = app
        .get(&format!("/api/reports/cac?from={FROM}&to={TO}"))
        .await;
    assert_eq!(s, 200, "{c}");
    // The November row is outside the period; a and b followed before... b on 10-01, so the
    // period's one new follower is a (first touch: the video, public).
    assert_eq!(c["total"]["spend_fen"], 35_050, "{c}");
    assert_eq!(c["total"]["new_followers"], 1);
    let row = |list: &str, key: &str| {
        c[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(row("by_domain", "public")["new_followers"], 1);
    assert_eq!(row("by_domain", "public")["cac_per_follower_fen"], 5_050.0);
    assert_eq!(row("by_channel", "ad")["spend_fen"], 30_000);
    assert!(
        row("by_channel", "ad")["cac_per_lead_fen"].is_null(),
        "no lead came by ad"
    );

    // Predictions need a customer base the models can identify: two buyers are not one; the
    // answer says why, with a stable code.
    let (s, v) = app
        .get(&format!("/api/reports/ltv/predicted?as_of={TO}"))
        .await;
    assert_eq!(s, 422, "{v}");
    let code = v["error"]["code"].as_str().unwrap().to_string();
    assert!(
        ["no_repeat_buyers", "not_identified", "did_not_converge"].contains(&code.as_str()),
        "{v}"
    );

    // Bad queries name the field; nothing is read.
    for (path, field) in [
        (format!("/api/reports/funnel?from={TO}&to={FROM}"), "to"),
        (
            "/api/reports/attribution?from=yesterday".to_string(),
            "from",
        ),
        ("/api/reports/ltv?as_of=soon".to_string(), "as_of"),
        ("/api/reports/retention?weeks=0".to_string(), "weeks"),
        ("/api/reports/retention?weeks=53".to_string(), "weeks"),
        (format!("/api/reports/cac?from={TO}&to={FROM}"), "to"),
        ("/api/reports/ltv/predicted?days=0".to_string(), "days"),
    ] {
        let (s, v) = app.get(&path).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}: {v}"
        );
    }

    // The CLI prints the same documents.
    let flags = store_flags(&app.location);
    let cli = |args: &[&str]| -> Value {
        crate::helpers::stdout_json(
            crate::durability::siyu()
                .arg("report")
                .args(args)
                .arg("--json")
                .args(&flags),
        )
    };
    assert_eq!(cli(&["funnel", "--from", FROM, "--to", TO]), f);
    assert_eq!(cli(&["attribution", "--from", FROM, "--to", TO]), a);
    assert_eq!(cli(&["ltv", "--as-of", TO]), l);
    assert_eq!(cli(&["cac", "--from", FROM, "--to", TO]), c);
    let out = crate::durability::siyu()
        .args(["ltv", "predict", "--as-of", TO, "--json"])
        .args(&flags)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["error"]["code"],
        code.as_str(),
        "the CLI says the same: {v}"
    );
    let out = crate::durability::siyu()
        .args(["report", "retention", "--weeks", "0"])
        .args(&flags)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--weeks"));
}

both!(reports_add_up_and_refuse_bad_queries);

#[test]
fn report_help_explains_the_figures() {
    crate::helpers::help_says(&[
        (
            &["report"],
            &["funnel", "attribution", "ltv", "retention", "cac"],
        ),
        (
            &["report", "cac"],
            &[
                "new followers",
                "unique leads",
                "repeat leads",
                "import-spend",
            ],
        ),
        (
            &["import-spend"],
            &[
                "date,channel,domain,amount",
                "nothing is stored",
                "replaced",
            ],
        ),
        (
            &["report", "attribution"],
            &["first touch", "linear", "30 days", "crossed"],
        ),
        (&["report", "ltv"], &["cohort", "复购率", "layer"]),
        (&["report", "retention"], &["Monday", "--weeks"]),
    ]);
}
