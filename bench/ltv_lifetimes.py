"""The predictive-LTV fits of `siyu bench ltv`, done by the Python package `lifetimes` on the
same customers, for docs/BENCHMARKS.md ("Predictive LTV (issue 15)").

The script runs `siyu bench ltv --customers N --write FILE --json` (the seeded synthetic
summary: BG/NBD process, Gamma-Gamma values, whole days), reads FILE with pandas (not timed)
and times lifetimes' `BetaGeoFitter.fit` and `GammaGammaFitter.fit` (on frequency > 0) twice:

- **plain**: one row per customer, as lifetimes' documentation calls it;
- **weighted**: identical rows collapsed first with pandas (the collapse is timed too), passed
  with `weights=` — what Siyu does, so the comparison is like for like.

lifetimes' fit includes the Hessian it computes for standard errors at the end (autograd); it
cannot be turned off. Siyu's time is its own JSON's `seconds` (the two fits, collapse
included, not the generation). Prints one JSON object with the times, the ratios, both sets of
parameters and their largest relative difference.

Usage: python3 bench/ltv_lifetimes.py [--customers N] [--siyu PATH] [--skip-plain]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter


def fit(df, weighted):
    """Both fits, timed; the collapse into weighted rows counted in the weighted time."""
    t0 = time.perf_counter()
    if weighted:
        bg_rows = df.groupby(["frequency", "recency", "T"]).size().reset_index(name="w")
        bg = BetaGeoFitter().fit(bg_rows["frequency"], bg_rows["recency"], bg_rows["T"], weights=bg_rows["w"])
    else:
        bg = BetaGeoFitter().fit(df["frequency"], df["recency"], df["T"])
    t1 = time.perf_counter()
    rep = df[df["frequency"] > 0]
    if weighted:
        gg_rows = rep.groupby(["frequency", "monetary_value"]).size().reset_index(name="w")
        gg = GammaGammaFitter().fit(gg_rows["frequency"], gg_rows["monetary_value"], weights=gg_rows["w"])
    else:
        gg = GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "bgnbd_seconds": t1 - t0,
        "gamma_gamma_seconds": t2 - t1,
        "bgnbd": {k: float(v) for k, v in bg.params_.items()},
        "gamma_gamma": {k: float(v) for k, v in gg.params_.items()},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--siyu", default="target/release/siyu")
    ap.add_argument("--skip-plain", action="store_true", help="only the weighted lifetimes fit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "summary.csv")
        out = subprocess.run(
            [args.siyu, "bench", "ltv", "--customers", str(args.customers), "--write", path, "--json"],
            check=True, capture_output=True, text=True,
        )
        siyu = json.loads(out.stdout)
        df = pd.read_csv(path, dtype={"frequency": np.int64})
    result = {
        "customers": args.customers,
        "siyu_seconds": siyu["seconds"],
        "siyu": {"bgnbd": siyu["bgnbd"], "gamma_gamma": siyu["gamma_gamma"]},
        "lifetimes_weighted": fit(df, weighted=True),
    }
    result["ratio_weighted"] = result["lifetimes_weighted"]["seconds"] / siyu["seconds"]
    # The same maximum, found by both: the largest relative difference of a parameter.
    lw = result["lifetimes_weighted"]
    result["max_relative_parameter_difference"] = max(
        abs(siyu[m][k] - lw[m][k]) / abs(lw[m][k]) for m in ("bgnbd", "gamma_gamma") for k in lw[m]
    )
    if not args.skip_plain:
        result["lifetimes_plain"] = fit(df, weighted=False)
        result["ratio_plain"] = result["lifetimes_plain"]["seconds"] / siyu["seconds"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
