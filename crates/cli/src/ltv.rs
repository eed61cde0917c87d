//! `siyu ltv fit FILE.csv`: reads a customer summary (frequency, recency, T and optionally
//! monetary_value, the BTYD layout), fits BG/NBD and, with monetary values, Gamma-Gamma
//! (`siyu-ltv`), and prints the parameters and how the fits went. The reading is here and
//! nothing else: each row becomes a checked `Customer` or an `invalid_summary` error naming
//! its line and column, before anything is fitted.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};
use siyu_ltv::{BgNbd, Customer, Fit, GammaGamma, LtvError};

use crate::cli::{LtvArgs, LtvCommand};
use crate::output;

/// The summary's columns, as the BTYD layout names them.
const FREQUENCY: &str = "frequency";
const RECENCY: &str = "recency";
const T: &str = "T";
const MONETARY: &str = "monetary_value";

pub fn run(args: LtvArgs) -> anyhow::Result<()> {
    match args.command {
        LtvCommand::Fit { file } => fit(&file, args.json),
        LtvCommand::Predict { days, as_of, at } => predict(&at, days, as_of, args.json),
    }
}

/// A summary read from a file: its customers and whether it has a monetary column.
pub struct Summary {
    pub customers: Vec<Customer>,
    pub monetary: bool,
}

/// Reads and checks every row of `path`.
pub fn read(path: &Path) -> anyhow::Result<Summary> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .clone();
    let column = |name: &'static str| headers.iter().position(|h| h == name);
    // The crate's errors name the line and column; the file is said once, in front.
    let in_file = |e: LtvError| anyhow::Error::new(e).context(path.display().to_string());
    let mut index = [0usize; 3];
    for (slot, name) in index.iter_mut().zip([FREQUENCY, RECENCY, T]) {
        *slot = column(name).ok_or_else(|| LtvError::InvalidSummary {
            line: 1,
            column: name,
            reason: format!(
                "the header has no such column (it has: {}); the summary needs frequency,recency,T[,monetary_value]",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        })
        .map_err(in_file)?;
    }
    let monetary = column(MONETARY);
    let mut customers = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("cannot read {}", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let number = |i: usize, name: &'static str| -> Result<f64, LtvError> {
            let v = record.get(i).unwrap_or("");
            v.parse::<f64>().map_err(|_| LtvError::InvalidSummary {
                line,
                column: name,
                reason: format!("{v:?} is not a number"),
            })
        };
        let customer = (|| {
            let frequency = number(index[0], FREQUENCY)?;
            let recency = number(index[1], RECENCY)?;
            let t = number(index[2], T)?;
            let m = match monetary {
                // Empty is the layout's "no repeat purchases".
                Some(i) if record.get(i).unwrap_or("").is_empty() => None,
                Some(i) => Some(number(i, MONETARY)?),
                None => None,
            };
            let customer = Customer::parse(line, frequency, recency, t, m)?;
            if monetary.is_some() && frequency > 0.0 && customer.monetary().is_none() {
                return Err(LtvError::InvalidSummary {
                    line,
                    column: MONETARY,
                    reason: "missing for a customer with repeat purchases".into(),
                });
            }
            Ok(customer)
        })()
        .map_err(in_file)?;
        customers.push(customer);
    }
    Ok(Summary {
        customers,
        monetary: monetary.is_some(),
    })
}

/// One fit as JSON: the parameters beside how the fit went.
pub fn fit_json<P: serde::Serialize>(fit: &Fit<P>) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(&fit.params)?;
    let o = v
        .as_object_mut()
        .context("the parameters are not a JSON object")?;
    o.insert("log_likelihood".into(), json!(fit.log_likelihood));
    o.insert("iterations".into(), json!(fit.iterations));
    o.insert("converged".into(), json!(fit.converged));
    o.insert("customers".into(), json!(fit.customers));
    o.insert("distinct_rows".into(), json!(fit.rows));
    Ok(v)
}

fn fit(path: &Path, json_out: bool) -> anyhow::Result<()> {
    let summary = read(path)?;
    let customers = &summary.customers;
    let bgnbd = siyu_ltv::fit_bgnbd(customers)?;
    let gamma_gamma = if summary.monetary {
        Some(siyu_ltv::fit_gamma_gamma(customers)?)
    } else {
        None
    };
    let repeat = customers.iter().filter(|c| c.frequency() > 0.0).count() as u64;
    if json_out {
        let doc = json!({
            "file": path.display().to_string(),
            "customers": customers.len(),
            "repeat_customers": repeat,
            "bgnbd": fit_json(&bgnbd)?,
            "gamma_gamma": gamma_gamma.as_ref().map(fit_json).transpose()?,
            "log_likelihood_is": "the full log-likelihood, no constant dropped: BG/NBD of the summaries (frequency, recency, T), Gamma-Gamma of the repeat customers' mean values given their frequency",
        });
        return output::json(&doc);
    }
    outln!(
        "{}: {} customers, {} repeat customers",
        path.display(),
        output::n(customers.len() as u64),
        output::n(repeat)
    );
    print_table(&bgnbd, gamma_gamma.as_ref(), repeat);
    outln!(
        "log-likelihood: the full one (BG/NBD of the summaries, Gamma-Gamma of the repeat customers' mean values); alpha is in the file's time unit, v in its money unit."
    );
    if gamma_gamma.is_none() {
        outln!("no {MONETARY} column: Gamma-Gamma not fitted.");
    }
    Ok(())
}

/// The fits as one table, labels in English and Chinese.
pub fn print_table(bgnbd: &Fit<BgNbd>, gamma_gamma: Option<&Fit<GammaGamma>>, repeat: u64) {
    let [en, zh] = output::headers(&[
        "model",
        "customers",
        "repeat_customers",
        "distinct_rows",
        "log_likelihood",
        "iterations",
        "parameters",
    ]);
    let mut rows = vec![en, zh];
    let p = bgnbd.params;
    rows.push(vec![
        "BG/NBD".into(),
        output::n(bgnbd.customers),
        output::n(repeat),
        output::n(bgnbd.rows as u64),
        format!("{:.2}", bgnbd.log_likelihood),
        bgnbd.iterations.to_string(),
        format!(
            "r={:.6} alpha={:.6} a={:.6} b={:.6}",
            p.r, p.alpha, p.a, p.b
        ),
    ]);
    if let Some(g) = gamma_gamma {
        let p = g.params;
        rows.push(vec![
            "Gamma-Gamma".into(),
            output::n(g.customers),
            output::n(g.customers),
            output::n(g.rows as u64),
            format!("{:.2}", g.log_likelihood),
            g.iterations.to_string(),
            format!("p={:.6} q={:.6} v={:.6}", p.p, p.q, p.v),
        ]);
    }
    output::table(&rows, "lrrrrrl");
}

/// `siyu ltv predict`: the tenant's buyers fitted and predicted (`App::ltv_predicted`).
fn predict(
    at: &crate::cli::TenantStoreArgs,
    days: u32,
    as_of: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=siyu_app::analytics::MAX_HORIZON_DAYS).contains(&days),
        "--days {days} is not 1 to {}",
        siyu_app::analytics::MAX_HORIZON_DAYS
    );
    let as_of = match as_of {
        Some(t) => crate::cli::parse_time("--as-of", &t)?,
        None => siyu_domain::time::now_ms(),
    };
    let (app, tenant) = at.open()?;
    let p = app.ltv_predicted(tenant.id, as_of, days)?;
    if json {
        return output::json(&p);
    }
    crate::report::print_predicted(&p);
    Ok(())
}
