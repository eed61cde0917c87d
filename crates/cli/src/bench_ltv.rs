//! `siyu bench ltv`: the predictive-LTV fits on a synthetic customer base of `--customers`
//! (default 1,000,000). The summary comes from the BG/NBD process with Gamma-Gamma monetary
//! values (`siyu_ltv::simulate`, seeded), times in whole days over up to a year, as a real
//! summary counts them — so, as in real data, many customers share a row. The clock covers
//! the fits only (BG/NBD, then Gamma-Gamma on the repeat customers, each including the
//! collapse into distinct rows), not the generation. `--write FILE` saves the same summary
//! as CSV so `bench/ltv_lifetimes.py` fits exactly these customers with `lifetimes`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use siyu_ltv::simulate::{Simulation, simulate};
use siyu_ltv::{BgNbd, GammaGamma};

use crate::ltv::{fit_json, print_table};
use crate::output;

/// The parameters simulated: CDNOW's fits (Fader, Hardie & Lee 2005; Fader & Hardie 2013),
/// with alpha from weeks to days.
const TRUTH: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414 * 7.0,
    a: 0.793,
    b: 2.426,
};
const TRUTH_GG: GammaGamma = GammaGamma {
    p: 6.25,
    q: 3.74,
    v: 15.44,
};

pub fn run(customers: u64, seed: u64, write: Option<&Path>, json_out: bool) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !json_out {
            errln!("{s}");
        }
    };
    anyhow::ensure!(customers >= 2, "--customers: at least 2");
    say(&format!(
        "simulating {} customers ...",
        output::n(customers)
    ));
    let t0 = Instant::now();
    let summary = simulate(&Simulation {
        customers: customers as usize,
        bgnbd: TRUTH,
        gamma_gamma: Some(TRUTH_GG),
        observed: (1.0, 365.0),
        whole_units: true,
        seed,
    });
    let generate_s = t0.elapsed().as_secs_f64();
    if let Some(path) = write {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        writeln!(w, "frequency,recency,T,monetary_value")?;
        for c in &summary {
            // `{}` prints the shortest text that reads back as the same f64.
            writeln!(
                w,
                "{},{},{},{}",
                c.frequency(),
                c.recency(),
                c.T(),
                c.monetary().unwrap_or(0.0)
            )?;
        }
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        say(&format!("wrote {}", path.display()));
    }
    say("fitting ...");
    let t0 = Instant::now();
    let bgnbd = siyu_ltv::fit_bgnbd(&summary)?;
    let bgnbd_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let gamma_gamma = siyu_ltv::fit_gamma_gamma(&summary)?;
    let gamma_gamma_s = t1.elapsed().as_secs_f64();
    let seconds = t0.elapsed().as_secs_f64();
    let repeat = summary.iter().filter(|c| c.frequency() > 0.0).count() as u64;
    if json_out {
        return output::json(&json!({
            "customers": customers,
            "repeat_customers": repeat,
            "seed": seed,
            "seconds": seconds,
            "bgnbd_seconds": bgnbd_s,
            "gamma_gamma_seconds": gamma_gamma_s,
            "generate_seconds_apart": generate_s,
            "simulated": {"bgnbd": TRUTH, "gamma_gamma": TRUTH_GG},
            "bgnbd": fit_json(&bgnbd)?,
            "gamma_gamma": fit_json(&gamma_gamma)?,
            "includes": "the two fits only: collapsing identical customers into rows and BFGS to convergence, for BG/NBD and then Gamma-Gamma on the repeat customers; not the simulation, not --write",
        }));
    }
    outln!(
        "{} customers ({} repeat), fitted in {seconds:.3} s (BG/NBD {bgnbd_s:.3} s on {} distinct rows, Gamma-Gamma {gamma_gamma_s:.3} s on {}); simulated with r={} alpha={:.3} a={} b={}, p={} q={} v={}",
        output::n(customers),
        output::n(repeat),
        output::n(bgnbd.rows as u64),
        output::n(gamma_gamma.rows as u64),
        TRUTH.r,
        TRUTH.alpha,
        TRUTH.a,
        TRUTH.b,
        TRUTH_GG.p,
        TRUTH_GG.q,
        TRUTH_GG.v,
    );
    print_table(&bgnbd, Some(&gamma_gamma), repeat);
    Ok(())
}
