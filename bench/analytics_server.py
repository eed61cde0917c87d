#!/usr/bin/env python3
"""Every analytics report of docs/analytics.md timed through a running `siyu serve`: the HTTP
round trip, the admin key's check, the report on the readers' pool and its JSON, as a client
on loopback sees them.

Usage: bench/analytics_server.py PATH/TO/siyu [--fans N] [--days D] [--work DIR] [--rounds R]
                                 [--duckdb] [--json]

1. `siyu gen --seed 11` a brand (kept in WORK/brand-N-D.jsonl and reused): the brand of
   `siyu bench analytics`, ending at the start of today (UTC).
2. A fresh SQLite store (WORK/data, kept and reused while WORK/data/imported names the same
   brand): `siyu tenant create bench`, time zone Asia/Shanghai, `siyu import` the brand.
3. `siyu serve` as its own process (the first start replays the log and stores a snapshot;
   later ones start from it), 30 days of spend posted to /api/spend (so CAC has a numerator).
4. Each report is asked once untimed (the server's workers take their first full pass over
   leads and journeys just after it starts), then R times (default 5) on one kept-alive
   connection; the figure is the median (and the minimum) from sending the request to
   having read the whole body. The
   answer is parsed once, after the clock stops, to check it.
5. `--duckdb`: the server is stopped, then `siyu bench analytics --duckdb --json` runs on the
   same brand (the same events applied to an engine in its own process, and the same reports
   in SQL for DuckDB over them, bench/analytics_duckdb.py); the server's figures are checked
   against its figures and the ratio to DuckDB's time is reported.

Prints a Markdown table (or, with --json, one JSON object).
"""
import argparse
import datetime
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from restart import free_port


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def spend_csv(first, last):
    """One row a day and channel, as `siyu demo` writes them."""
    rows = ["date,channel,domain,amount"]
    day = first
    while day <= last:
        lift = 1.3 if day.weekday() >= 5 else 1.0
        for channel, domain, base in [
            ("ad", "commercial", 900.0),
            ("oceanengine", "commercial", 600.0),
            ("live", "public", 300.0),
        ]:
            rows.append(f"{day.isoformat()},{channel},{domain},{base * lift + (day.toordinal() % 13) * 10:.2f}")
        day += datetime.timedelta(days=1)
    return "\n".join(rows) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("siyu")
    p.add_argument("--fans", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=240)
    p.add_argument("--work", default="/tmp/siyu-analytics-server")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duckdb", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    say = (lambda s: print(s, file=sys.stderr, flush=True))
    os.makedirs(a.work, exist_ok=True)

    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    brand = os.path.join(a.work, f"brand-{a.fans}-{a.days}-{today.date().isoformat()}.jsonl")
    if not os.path.exists(brand):
        say(f"generating {a.fans} people over {a.days} days ...")
        subprocess.run(
            [a.siyu, "gen", "--fans", str(a.fans), "--days", str(a.days), "--seed", "11",
             "--end", rfc3339(today), "--out", brand + ".part"],
            check=True,
        )
        os.rename(brand + ".part", brand)
    data = os.path.join(a.work, "data")
    marker = os.path.join(data, "imported")
    store = ["--data", data]
    if not (os.path.exists(marker) and open(marker).read() == brand):
        shutil.rmtree(data, ignore_errors=True)
        keys = json.loads(subprocess.run([a.siyu, "tenant", "create", "bench", *store],
                                         check=True, capture_output=True, text=True).stdout)
        subprocess.run([a.siyu, "journey", "policy", "set", "time_zone=Asia/Shanghai",
                        "--tenant", "bench", *store], check=True, capture_output=True)
        say("importing ...")
        t = time.perf_counter()
        imported = json.loads(subprocess.run([a.siyu, "import", brand, "--json", *store],
                                             check=True, capture_output=True, text=True).stdout)
        say(f"imported {imported.get('accepted')} events in {time.perf_counter() - t:.1f} s")
        with open(os.path.join(data, "keys.json"), "w") as f:
            json.dump(keys, f)
        with open(marker, "w") as f:
            f.write(brand)
    keys = json.load(open(os.path.join(data, "keys.json")))
    admin = {"Authorization": f"Bearer {keys['admin_key']}"}

    port = free_port()
    log = open(os.path.join(a.work, "serve.log"), "a")
    say("starting siyu serve ...")
    t = time.perf_counter()
    proc = subprocess.Popen([a.siyu, "serve", "--addr", f"127.0.0.1:{port}", *store],
                            stdout=log, stderr=log)
    try:
        while True:
            if proc.poll() is not None:
                sys.exit(f"siyu serve exited with {proc.returncode}; see {a.work}/serve.log")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        start_s = time.perf_counter() - t
        say(f"serving after {start_s:.1f} s")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

        def ask(method, path, body=None, headers=None):
            conn.request(method, path, body=body, headers={**admin, **(headers or {})})
            r = conn.getresponse()
            raw = r.read()
            if not 200 <= r.status < 300:
                sys.exit(f"{method} {path}: {r.status} {raw[:500]!r}")
            return raw

        to = today
        frm = to - datetime.timedelta(days=30)
        local = datetime.timezone(datetime.timedelta(hours=8))
        ask("POST", "/api/spend",
            spend_csv(frm.astimezone(local).date(), (to - datetime.timedelta(seconds=1)).astimezone(local).date()),
            {"Content-Type": "text/csv"})
        period = f"from={rfc3339(frm)}&to={rfc3339(to)}"
        reports = {
            "funnel_30d": f"/api/reports/funnel?{period}",
            "flow_series_31_points": f"/api/reports/flow?{period}",
            "attribution_30d": f"/api/reports/attribution?{period}",
            "cac_30d": f"/api/reports/cac?{period}",
            "ltv": f"/api/reports/ltv?as_of={rfc3339(to)}",
            "retention_12_weeks": f"/api/reports/retention?from={rfc3339(to - datetime.timedelta(weeks=12))}"
                                  f"&to={rfc3339(to)}&as_of={rfc3339(to)}&weeks=12",
            "ltv_predicted_90d": f"/api/reports/ltv/predicted?days=90&as_of={rfc3339(to)}",
        }
        results, answers = {}, {}
        for name, path in reports.items():
            say(f"GET {path} x 1 + {a.rounds} ...")
            ask("GET", path)  # a warm-up, not timed
            runs = []
            for _ in range(a.rounds):
                t = time.perf_counter()
                raw = ask("GET", path)
                runs.append(time.perf_counter() - t)
            answers[name] = json.loads(raw)
            results[name] = {"path": path, "seconds_median": statistics.median(runs),
                             "seconds_min": min(runs), "bytes": len(raw)}
        stats = json.loads(ask("GET", "/api/stats"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)

    out = {
        "brand": os.path.basename(brand),
        "as_of": rfc3339(today),
        "fans": stats.get("fans"),
        "events": stats.get("events"),
        "server_start_seconds": start_s,
        "includes": "the HTTP round trip on loopback, the key check, the report on the readers' pool "
                    "and its JSON, read in full by the client; not the client's JSON parse",
        "reports": results,
        "attribution": {k: answers["attribution_30d"].get(k) for k in ("orders", "revenue_fen")},
        "ltv_total": answers["ltv"].get("total"),
    }
    with open(os.path.join(a.work, "server.json"), "w") as f:
        json.dump(out, f, indent=2)
    if a.duckdb:
        say("siyu bench analytics --duckdb (the same brand on an engine, and DuckDB) ...")
        run = subprocess.run(
            [a.siyu, "bench", "analytics", "--duckdb", "--json", "--fans", str(a.fans), "--days", str(a.days),
             "--work", os.path.join(a.work, "duckdb")],
            capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"siyu bench analytics failed ({run.returncode}); the server's figures are in "
                     f"{a.work}/server.json:\n{run.stderr}")
        bench = json.loads(run.stdout)
        out["engine"] = bench["reports"]
        out["duckdb_seconds"] = bench["duckdb"]["seconds"]
        # The same events and orders; the fans may differ by a few hundred: the server's store
        # splits merges made through values later found shared (identity decisions), which
        # the bench's bare engine does not record.
        same = lambda k: bench["ltv_total"][k] == out["ltv_total"][k]
        out["engine_fans"] = bench["fans"]
        out["same_brand"] = (bench["attribution"]["orders"] == out["attribution"]["orders"]
                             and bench["attribution"]["revenue_fen"] == out["attribution"]["revenue_fen"]
                             and all(same(k) for k in ("orders", "revenue_fen", "buyers", "repeat_buyers")))
        out["identical_to_duckdb"] = bench.get("identical")
        peer = {"attribution_30d": "attribution", "ltv": "ltv", "retention_12_weeks": "retention"}
        out["ratio_duckdb_to_server"] = {
            k: bench["duckdb"]["seconds"][v] / results[k]["seconds_median"] for k, v in peer.items()}
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['fans']} fans (the engine's: {out.get('engine_fans')}), {out['events']} events, as of {out['as_of']}; server up after {start_s:.1f} s\n")
    print("| report | server, s (min) | bytes | engine, s | DuckDB, s | DuckDB / server |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        eng = out.get("engine", {}).get(name, {}).get("seconds_median")
        duck = out.get("ratio_duckdb_to_server", {}).get(name)
        peer_s = duck * r["seconds_median"] if duck else None
        print(f"| {name} | {r['seconds_median']:.3f} ({r['seconds_min']:.3f}) | {r['bytes']} | "
              f"{'' if eng is None else f'{eng:.3f}'} | {'' if peer_s is None else f'{peer_s:.2f}'} | "
              f"{'' if duck is None else f'{duck:.2f}×'} |")
    if a.duckdb:
        print(f"\nsame brand as the engine's: {out['same_brand']}; engine identical to DuckDB: {out['identical_to_duckdb']}")


if __name__ == "__main__":
    main()
