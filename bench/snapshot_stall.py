#!/usr/bin/env python3
"""How long ingest waits while a running server stores a big tenant's snapshot.

Usage: bench/snapshot_stall.py PATH/TO/siyu --data DIR [--tenant NAME] [--tail EVENTS]
                               [--seconds S] [--clients N] [--batch B] [--json]

DIR holds a big tenant NAME (default `bench`, e.g. the store `bench/restart.py` leaves in
WORK/data). The script

1. imports TAIL new events (default 100,000; new open ids) into NAME with `siyu import`, so
   that the tenant's engine is far past its stored snapshot (a server stores one at its first
   tick, a minute after the start, when it is more than 20,000 log positions past the last);
2. creates a small tenant of its own and starts `siyu serve` on DIR;
3. once /healthz answers, posts batches of B events (default 100) to its own tenant from N
   clients (default 2), one request in flight each, for S seconds (default 100: past the first
   tick), timing each request from send to answer;
4. prints the latency percentiles, the worst request and when it was sent (seconds after
   /healthz answered), and the server's own log line for the snapshot it stored (encode and
   store milliseconds). The server runs at `SIYU_LOG=info,siyu_app=debug`; its log is
   DIR/../snapshot_stall.log.

All tenants share the one writer thread, so a writer busy storing NAME's snapshot holds up
every tenant's ingest: the worst request is the stall.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from restart import free_port, request


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("siyu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--tenant", default="bench")
    ap.add_argument("--tail", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=100)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    run = f"stall{os.getpid()}"
    work = os.path.dirname(os.path.abspath(a.data.rstrip("/")))

    tail = os.path.join(work, f"{run}-tail.jsonl")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(tail, "w") as f:
        for i in range(a.tail):
            f.write(json.dumps({
                "id": f"{run}-tail-{i}",
                "type": "follow",
                "ts": now,
                "identities": {"douyin_open_id": f"{run}-tail-{i}"},
            }) + "\n")
    say(f"importing {a.tail} events into {a.tenant} ...")
    subprocess.run([a.siyu, "import", "--tenant", a.tenant, "--data", a.data, tail],
                   check=True, stdout=subprocess.DEVNULL)
    os.remove(tail)
    keys = json.loads(subprocess.run(
        [a.siyu, "tenant", "create", run, "--data", a.data],
        check=True, capture_output=True, text=True).stdout)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = os.path.join(work, "snapshot_stall.log")
    log = open(log_path, "w")
    env = dict(os.environ, SIYU_LOG="info,siyu_app=debug")
    say("starting siyu serve ...")
    proc = subprocess.Popen([a.siyu, "serve", "--addr", f"127.0.0.1:{port}", "--data", a.data],
                            stdout=log, stderr=log, env=env)
    try:
        while True:
            if proc.poll() is not None:
                sys.exit(f"siyu serve exited with {proc.returncode}; see {log_path}")
            try:
                if urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        t0 = time.perf_counter()
        say(f"posting batches of {a.batch} from {a.clients} clients for {a.seconds} s ...")
        samples = []  # (sent, seconds)
        lock = threading.Lock()

        def client(c):
            n = 0
            while time.perf_counter() - t0 < a.seconds:
                batch = [{
                    "id": f"{run}-{c}-{n}-{i}",
                    "type": "follow",
                    "ts": now,
                    "identities": {"douyin_open_id": f"{run}-{c}-{n}-{i}"},
                } for i in range(a.batch)]
                n += 1
                sent = time.perf_counter()
                status, answer = request("POST", f"{base}/api/events", keys["write_key"], batch,
                                         timeout=120)
                took = time.perf_counter() - sent
                assert status == 200 and answer["accepted"] == a.batch, answer
                with lock:
                    samples.append((sent - t0, took))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        log.close()

    ms = [s[1] * 1e3 for s in samples]
    worst = max(samples, key=lambda s: s[1])
    stored = [line.strip() for line in open(log_path) if "engine snapshot stored" in line]
    fields = {}
    if stored:
        for k in ("bytes", "encode_ms", "store_ms", "last_seq"):
            m = re.search(rf"{k}=(\d+)", stored[0])
            if m:
                fields[k] = int(m.group(1))
    out = {
        "requests": len(ms),
        "events_per_second": len(ms) * a.batch / a.seconds,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": worst[1] * 1e3,
        "max_sent_at_s": worst[0],
        "over_100_ms": sum(1 for x in ms if x > 100),
        "snapshot_stored_while_serving": fields,
    }
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
