//! `siyu gen`: synthetic events for one Douyin brand.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use siyu_gen::{GenConfig, GenSummary};

use crate::cli::{BrandArgs, GenArgs, parse_time};
use crate::output;

/// The default end of generated data: the start of today, UTC, so a day's runs agree.
pub fn default_end() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    let day = now.as_second().div_euclid(86_400) * 86_400;
    jiff::Timestamp::from_second(day).unwrap_or(now)
}

pub fn config(brand: &BrandArgs, end: Option<&str>) -> anyhow::Result<GenConfig> {
    let BrandArgs { fans, days, seed } = *brand;
    anyhow::ensure!(fans > 0, "--fans must be at least 1");
    anyhow::ensure!(
        (1..=3650).contains(&days),
        "--days must be between 1 and 3650"
    );
    let end = match end {
        Some(e) => jiff::Timestamp::from_millisecond(parse_time("--end", e)?)?,
        None => default_end(),
    };
    Ok(GenConfig {
        fans,
        days,
        seed,
        end,
    })
}

/// Writes events (and truth) to files, with a progress bar.
pub fn write_files(
    cfg: &GenConfig,
    out: &std::path::Path,
    truth: Option<&std::path::Path>,
) -> anyhow::Result<GenSummary> {
    let mut w = BufWriter::with_capacity(
        1 << 20,
        File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    let mut t = match truth {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let bar = output::progress(siyu_gen::estimate_events(cfg), "generating");
    let summary = siyu_gen::generate(
        cfg,
        &mut w,
        t.as_mut().map(|t| t as &mut dyn Write),
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    w.flush()?;
    if let Some(mut t) = t {
        t.flush()?;
    }
    Ok(summary)
}

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let cfg = config(&args.brand, args.end.as_deref())?;
    let summary = match &args.out {
        Some(out) => write_files(&cfg, out, args.truth.as_deref())?,
        None => {
            // A closed stdout (`siyu gen | head`) ends the command quietly (see `output`).
            let mut w = BufWriter::with_capacity(1 << 20, output::Stdout);
            let mut t = match &args.truth {
                Some(p) => Some(BufWriter::new(File::create(p)?)),
                None => None,
            };
            let s = siyu_gen::generate(
                &cfg,
                &mut w,
                t.as_mut().map(|t| t as &mut dyn Write),
                &mut |_| {},
            )?;
            w.flush()?;
            if let Some(mut t) = t {
                t.flush()?;
            }
            s
        }
    };
    errln!(
        "generated {} events for {} people ({} identity values, {} shared family phones)",
        output::n(summary.events),
        output::n(summary.people),
        output::n(summary.identities),
        output::n(summary.shared_phones)
    );
    Ok(())
}
