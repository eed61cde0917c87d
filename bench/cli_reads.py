#!/usr/bin/env python3
"""One-shot CLI reads on the demo brand, from the engine snapshot and from the whole log.

Usage: bench/cli_reads.py PATH/TO/siyu [--data DIR] [--runs N]

Runs `siyu demo` into DIR (a fresh temporary directory unless given; the demo stores a
snapshot), then times each read command N times (wall clock, the whole process: start, store
open, engine load, answer, exit) twice: as shipped (snapshot + log tail) and with
SIYU_SNAPSHOTS=off (the whole log replayed, as before snapshots existed). Prints the median of
each and the ratio, as a Markdown table.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

READS = [
    ["report", "layers"],
    ["report", "dedup"],
    ["fan", "show", "176"],
    ["identity", "duplicates"],
    ["segment", "count", "layer >= favorable and count(live_watch, 7d) >= 1"],
]


def timed(cmd, env):
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("siyu")
    ap.add_argument("--data")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    siyu = os.path.abspath(a.siyu)
    tmp = None
    data = a.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        data = os.path.join(tmp.name, "siyu-data")
    env = dict(os.environ, SIYU_LOG="warn")
    print(f"siyu demo --data {data} ...", file=sys.stderr)
    subprocess.run([siyu, "demo", "--data", data], env=env, stdout=subprocess.DEVNULL, check=True)
    off = dict(env, SIYU_SNAPSHOTS="off")
    print("| command | from the snapshot (median s) | whole log (median s) | ratio |")
    print("|---|---|---|---|")
    for read in READS:
        cmd = [siyu, *read, "--data", data]
        timed(cmd, env)  # warm the page cache
        snap = statistics.median(timed(cmd, env) for _ in range(a.runs))
        full = statistics.median(timed(cmd, off) for _ in range(a.runs))
        print(f"| `siyu {' '.join(read)}` | {snap:.3f} | {full:.3f} | {full / snap:.1f}× |")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
