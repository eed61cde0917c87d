//! `siyu ltv fit` as an analyst runs it: the CDNOW summary in the BTYD layout (converted
//! from `crates/ltv/data`, with an ID column the command ignores) gives the published fits
//! as one JSON document and as a table; a bad row is refused with its line, column and
//! code; and `--help` says what the columns are.

use serde_json::Value;

use crate::durability::siyu;

/// CDNOW with transactions (`ID,x,t_x,T,zbar`) as `ID,frequency,recency,T,monetary_value`.
fn cdnow(dir: &std::path::Path) -> std::path::PathBuf {
    let from = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ltv/data/cdnow_customers_summary_with_transactions.csv"
    );
    let text = std::fs::read_to_string(from).unwrap();
    let mut out = String::from("ID,frequency,recency,T,monetary_value\n");
    for line in text.lines().skip(1) {
        out.push_str(line);
        out.push('\n');
    }
    let path = dir.join("cdnow.csv");
    std::fs::write(&path, out).unwrap();
    path
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap();
    assert!((got - want).abs() <= 1e-4 * want.abs(), "{got} vs {want}");
}

#[test]
fn ltv_fit_gives_the_published_cdnow_fits() {
    let dir = tempfile::tempdir().unwrap();
    let file = cdnow(dir.path());
    let doc = crate::helpers::stdout_json(siyu().args(["ltv", "fit"]).arg(&file).arg("--json"));
    assert_eq!(doc["customers"], 2357);
    assert_eq!(doc["repeat_customers"], 946);
    // lifetimes 0.11.3; Fader, Hardie & Lee (2005): LL −9582.4.
    let bg = &doc["bgnbd"];
    for (k, want) in [
        ("r", 0.242593),
        ("alpha", 4.413532),
        ("a", 0.792886),
        ("b", 2.425752),
    ] {
        close(&bg[k], want);
    }
    assert_eq!(
        (bg["log_likelihood"].as_f64().unwrap() * 10.0).round(),
        -95824.0
    );
    assert_eq!(bg["converged"], true);
    assert_eq!(bg["customers"], 2357);
    assert!(bg["iterations"].as_u64().unwrap() > 0);
    let gg = &doc["gamma_gamma"];
    for (k, want) in [("p", 6.248802), ("q", 3.744588), ("v", 15.447748)] {
        close(&gg[k], want);
    }
    assert_eq!(gg["customers"], 946);

    let out = siyu().args(["ltv", "fit"]).arg(&file).output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for w in [
        "repeat customers",
        "复购客户",
        "log-likelihood",
        "对数似然",
        "r=0.242593",
        "p=6.2488",
    ] {
        assert!(table.contains(w), "no {w:?} in:\n{table}");
    }
}

#[test]
fn ltv_fit_refuses_a_bad_row_naming_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.csv");
    std::fs::write(
        &file,
        "frequency,recency,T,monetary_value\n0,0,10,0\n2,4,10,12.5\n3,11,10,8\n",
    )
    .unwrap();
    let out = siyu().args(["ltv", "fit"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[invalid_summary]") && err.contains("line 4, column recency"),
        "{err}"
    );
    let out = siyu()
        .args(["ltv", "fit", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "invalid_summary");
    assert_eq!(doc["error"]["field"], "recency");

    // Nobody came back: the model cannot be identified, and says so.
    std::fs::write(&file, "frequency,recency,T\n0,0,10\n0,0,12\n").unwrap();
    let out = siyu().args(["ltv", "fit"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[no_repeat_buyers]"));
}

#[test]
fn ltv_help_says_what_the_columns_are() {
    crate::helpers::help_says(&[
        (&["ltv"], &["lifetime value", "fit"]),
        (
            &["ltv", "fit"],
            &[
                "frequency",
                "recency",
                "T",
                "monetary_value",
                "whatever unit the file uses",
                "alpha",
                "line and column",
            ],
        ),
        (&["bench", "ltv"], &["--customers", "--write", "fit only"]),
    ]);
}
