#!/usr/bin/env python3
"""How fast a big tenant's server is back: `siyu serve` from start to /healthz and to its
first accepted event, cold (no snapshot: the whole log), warm (from the snapshot the previous
stop stored) and after `kill -9` (the snapshot plus the tail written since).

Usage: bench/restart.py PATH/TO/siyu [--fans N] [--days D] [--work DIR] [--database-url URL]
                        [--tail EVENTS] [--again N] [--json]

1. `siyu gen` a brand (kept in WORK/brand-N-D.jsonl and reused), `siyu tenant create`,
   `siyu import` it into a fresh store (WORK/data, or a fresh schema of --database-url).
2. Start 1, cold: no snapshot yet, so the whole log is replayed. No server ran on this store
   yet (there is no live mark to turn live at), so this replay stores its snapshot before the
   server answers; a start that turns live at a mark never does (its writer's first tick, a
   minute later, or its stop does). Then SIGTERM.
3. Start 2, warm: from that snapshot. Then TAIL events are posted and the server is killed
   with SIGKILL, so they are in the log but not in the snapshot.
4. Start 3, after kill -9: the snapshot plus the tail; then SIGTERM (which stores a snapshot).
5. `--again N`: N more warm starts, each stopped with SIGTERM.

Each start is timed from the spawn of the process to the first 200 of /healthz (polled every
10 ms) and to the first accepted POST /api/events (sent right after /healthz answers). The
snapshot's size (the one start 2 reads) is read from the store, the fans and events from
`GET /api/stats` after start 3. Prints a Markdown table (or one JSON object).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(method, url, key=None, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


class Store:
    def __init__(self, work, url):
        self.url = url
        self.schema = None
        if url:
            import psycopg  # noqa: F401  (pip install psycopg[binary])

            self.schema = f"siyu_restart_{os.getpid()}"
            with self.connect() as c:
                c.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
                c.execute(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in url else "?"
            self.args = ["--database-url", f"{url}{sep}options=-csearch_path%3D{self.schema}"]
        else:
            self.data = os.path.join(work, "data")
            shutil.rmtree(self.data, ignore_errors=True)
            self.args = ["--data", self.data]

    def connect(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def snapshot_bytes(self):
        q = "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM {}snapshot_parts"
        if self.url:
            # Schema-qualified: one statement, so fetchone reads its row (after a "SET …; SELECT"
            # psycopg's cursor is on the first result, the SET, which has none).
            with self.connect() as c:
                return c.execute(q.format(f"{self.schema}.")).fetchone()[0]
        q = q.format("")
        import sqlite3

        db = [f for f in os.listdir(self.data) if f.endswith(".db") or f.endswith(".sqlite")]
        with sqlite3.connect(os.path.join(self.data, db[0])) as c:
            return c.execute(q).fetchone()[0]

    def drop(self):
        if self.schema:
            with self.connect() as c:
                c.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


# Servers started, so that a failure half-way does not leave one running.
STARTED = []


def start(siyu, store, keys, log):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [siyu, "serve", "--addr", f"127.0.0.1:{port}", *store.args],
        stdout=log,
        stderr=log,
    )
    STARTED.append(proc)
    while True:
        if proc.poll() is not None:
            sys.exit(f"siyu serve exited with {proc.returncode}; see {log.name}")
        try:
            if request("GET", f"{base}/healthz", timeout=2)[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.01)
    healthz = time.perf_counter() - t0
    event = {
        "id": f"restart-probe-{port}",
        "type": "follow",
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "identities": {"douyin_open_id": f"restart-probe-{port}"},
    }
    status, answer = request("POST", f"{base}/api/events", keys["write_key"], [event], timeout=120)
    first = time.perf_counter() - t0
    assert status == 200 and answer["accepted"] == 1, answer
    return proc, base, healthz, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("siyu")
    ap.add_argument("--fans", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=240)
    ap.add_argument("--work", default="/tmp/siyu-restart")
    ap.add_argument("--database-url")
    ap.add_argument("--tail", type=int, default=100_000)
    ap.add_argument("--again", type=int, default=0, help="warm starts more after start 3")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    brand = os.path.join(a.work, f"brand-{a.fans}-{a.days}.jsonl")
    if not os.path.exists(brand):
        say(f"generating {a.fans} people over {a.days} days ...")
        subprocess.run(
            [a.siyu, "gen", "--fans", str(a.fans), "--days", str(a.days), "--out", brand + ".part"],
            check=True,
        )
        os.rename(brand + ".part", brand)
    store = Store(a.work, a.database_url)
    log = open(os.path.join(a.work, "serve.log"), "w")
    try:
        keys = json.loads(
            subprocess.run(
                [a.siyu, "tenant", "create", "bench", "--json", *store.args],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        say("importing ...")
        t = time.perf_counter()
        imported = json.loads(
            subprocess.run(
                [a.siyu, "import", brand, "--json", *store.args],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        say(f"imported {imported.get('accepted')} events in {time.perf_counter() - t:.1f} s")

        rows = []
        say("start 1: cold (no snapshot) ...")
        proc, base, h, f = start(a.siyu, store, keys, log)
        rows.append(("cold: no snapshot, the whole log", h, f))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
        snapshot = store.snapshot_bytes()

        say("start 2: warm (from the snapshot) ...")
        proc, base, h, f = start(a.siyu, store, keys, log)
        rows.append(("warm: from the snapshot", h, f))
        say(f"posting {a.tail} tail events, then kill -9 ...")
        for b in range(0, a.tail, 500):
            batch = [
                {
                    "id": f"tail-{b + i}",
                    "type": "video_like",
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "identities": {"douyin_open_id": f"tail-fan-{(b + i) % 50_000}"},
                }
                for i in range(min(500, a.tail - b))
            ]
            request("POST", f"{base}/api/events", keys["write_key"], batch, timeout=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        say("start 3: after kill -9 (snapshot + tail) ...")
        proc, base, h, f = start(a.siyu, store, keys, log)
        rows.append((f"after kill -9: the snapshot + {a.tail:,} events of tail", h, f))
        stats = request("GET", f"{base}/api/stats", keys["admin_key"], timeout=120)[1]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
        for i in range(a.again):
            say(f"start {4 + i}: warm again ...")
            proc, base, h, f = start(a.siyu, store, keys, log)
            rows.append((f"warm again ({i + 1} of {a.again})", h, f))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)

        result = {
            "backend": "postgres" if a.database_url else "sqlite",
            "events": imported.get("accepted"),
            "fans": stats["fans"],
            "events_at_end": stats["events"],
            "snapshot_bytes": snapshot,
            "starts": [{"start": r[0], "healthz_s": round(r[1], 3), "first_event_s": round(r[2], 3)} for r in rows],
        }
        if a.json:
            print(json.dumps(result))
        else:
            print(
                f"backend {result['backend']}, {result['events']:,} events imported, "
                f"{result['fans']:,} fans and {result['events_at_end']:,} events at the end, "
                f"snapshot {snapshot / 1e6:,.0f} MB"
            )
            print("| start | /healthz (s) | first event accepted (s) |")
            print("|---|---:|---:|")
            for r in rows:
                print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} |")
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()
        store.drop()


if __name__ == "__main__":
    main()
