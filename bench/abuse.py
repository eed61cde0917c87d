#!/usr/bin/env python3
"""What abusive clients cost `siyu serve`: memory, and the latency of everyone else.

Usage: bench/abuse.py PATH/TO/siyu [--posts 100] [--body-mb 8] [--idle 500] [--probes 200]
                      [--hold S] [--json]

Builds nothing: give it a release binary (`cargo build --release -p siyu`). Python 3.11, the
standard library only.

1. `siyu tenant create abuse` on a fresh temporary data directory, then `siyu serve` on it with
   its default settings (no flags), on a free port; waits for /healthz.
2. Reads the server's RSS (VmRSS in /proc/PID/status) before, samples it every 20 ms during,
   and reads it again after (once the abusive connections are gone, or --hold seconds).
3. At once:
   - POSTS connections send `POST /api/events` with no Authorization header,
     `Content-Length: BODY-MB MB` and then the body, as fast as the server takes it;
     each records when it got an answer (and its status) or saw the connection closed or
     reset, and how much of its body its socket had taken by then (sent to the kernel: an
     upper bound on what the server read);
   - IDLE connections are opened and held: half send nothing, half send the start of a
     request's headers and never finish them; each records when the server closed it;
   - meanwhile PROBES sequential `GET /healthz` (a new connection each) are timed.
4. Prints the RSS figures (before, peak during, after; growth = peak - before), what happened
   to the abusive connections and when, and the /healthz latency (p50, p99, max), as a
   Markdown summary or one JSON object (--json). A server that never closes an idle
   connection is reported with those still open after --hold seconds.
"""
import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from restart import free_port


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def healthz(port, timeout=30):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
        r.read()
        return r.status


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Sampler(threading.Thread):
    """The server's RSS every 20 ms; `peak` is the largest seen."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.02)


def abusive_post(port, body_bytes, t0, out):
    """One unauthenticated 8 MB POST; appends what happened to `out`."""
    head = (
        "POST /api/events HTTP/1.1\r\nHost: siyu\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_bytes}\r\n\r\n"
    ).encode()
    chunk = b" " * 65536
    sent, status, how = 0, None, None
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
    except OSError as e:
        out.append({"outcome": f"connect failed: {e}", "at": time.monotonic() - t0, "sent": 0})
        return
    try:
        s.sendall(head)
        while sent < body_bytes:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            n = s.send(chunk[: min(len(chunk), body_bytes - sent)])
            sent += n
        # The answer, whether the server answered early or after the whole body.
        s.settimeout(60)
        data = s.recv(4096)
        if data.startswith(b"HTTP/1.1 "):
            status = int(data.split(b" ")[1])
            how = "answered"
        else:
            how = "closed"
    except (ConnectionResetError, BrokenPipeError):
        how = "reset"
    except OSError as e:
        how = f"error: {e}"
    finally:
        s.close()
    out.append({"outcome": how, "status": status, "at": time.monotonic() - t0, "sent": sent})


def hold_idle(port, n, hold, t0, out):
    """Opens `n` connections (every other one with half-sent headers) and records when the
    server closes each, for at most `hold` seconds."""
    socks = {}
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as e:
            out.append({"kind": "connect", "closed_at": None, "error": str(e)})
            continue
        kind = "half_headers" if i % 2 else "silent"
        if kind == "half_headers":
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: siyu\r\nX-Slow: ")
        s.setblocking(False)
        socks[s] = kind
    deadline = time.monotonic() + hold
    while socks and time.monotonic() < deadline:
        readable, _, _ = select.select(list(socks), [], [], 0.05)
        for s in readable:
            try:
                data = s.recv(4096)
            except (ConnectionResetError, BlockingIOError, OSError):
                data = b""
            out.append(
                {"kind": socks.pop(s), "closed_at": time.monotonic() - t0, "answer": data[:12].decode("latin-1")}
            )
            s.close()
    for s, kind in socks.items():
        out.append({"kind": kind, "closed_at": None})
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("siyu")
    ap.add_argument("--posts", type=int, default=100)
    ap.add_argument("--body-mb", type=int, default=8, help="MB (10^6 bytes) per POST body")
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--hold", type=float, default=40.0, help="seconds to wait for idle connections to be closed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="siyu-abuse-")
    data = os.path.join(work, "data")
    server = None
    try:
        subprocess.run(
            [args.siyu, "tenant", "create", "abuse", "--data", data],
            check=True, capture_output=True,
        )
        port = free_port()
        server = subprocess.Popen(
            [args.siyu, "serve", "--data", data, "--addr", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(500):
            try:
                healthz(port, timeout=1)
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError("the server did not answer /healthz")
        for _ in range(20):
            healthz(port)
        time.sleep(0.5)
        before = rss_mb(server.pid)
        sampler = Sampler(server.pid)
        sampler.start()

        t0 = time.monotonic()
        posts, idle = [], []
        threads = [
            threading.Thread(target=abusive_post, args=(port, args.body_mb * 1_000_000, t0, posts), daemon=True)
            for _ in range(args.posts)
        ]
        threads.append(threading.Thread(target=hold_idle, args=(port, args.idle, args.hold, t0, idle), daemon=True))
        for t in threads:
            t.start()
        latencies, failed = [], 0
        for _ in range(args.probes):
            t = time.perf_counter()
            try:
                healthz(port)
                latencies.append((time.perf_counter() - t) * 1000)
            except OSError:
                failed += 1
            time.sleep(0.01)
        for t in threads:
            t.join()
        time.sleep(1.0)
        after = rss_mb(server.pid)
        sampler.stop.set()
        sampler.join()
        peak = max(sampler.peak, before, after)

        def times(rows, key):
            v = [r[key] for r in rows if r.get(key) is not None]
            return {"n": len(v), "p50_s": percentile(v, 50), "max_s": max(v) if v else None}

        statuses = {}
        for p in posts:
            k = str(p["status"]) if p["status"] else p["outcome"]
            statuses[k] = statuses.get(k, 0) + 1
        refused_early = sum(1 for p in posts if p["sent"] < args.body_mb * 1_000_000)
        idle_by_kind = {}
        for kind in ("silent", "half_headers"):
            rows = [r for r in idle if r["kind"] == kind]
            closed = [r for r in rows if r["closed_at"] is not None]
            idle_by_kind[kind] = {
                "held": len(rows),
                "closed_by_server": len(closed),
                "still_open_after_hold": len(rows) - len(closed),
                "closed_at": times(closed, "closed_at"),
            }
        result = {
            "binary": os.path.abspath(args.siyu),
            "settings": "siyu serve defaults (no flags)",
            "rss_mb": {
                "before": round(before, 1),
                "peak_during": round(peak, 1),
                "after": round(after, 1),
                "growth_peak": round(peak - before, 1),
                "growth_after": round(after - before, 1),
            },
            "posts": {
                "sent": args.posts,
                "body_bytes": args.body_mb * 1_000_000,
                "answers": statuses,
                "refused_before_body_sent": refused_early,
                "body_mb_sent_by_clients": round(sum(p["sent"] for p in posts) / 1e6, 1),
                "answered_at": times(posts, "at"),
            },
            "idle": idle_by_kind,
            "healthz_ms": {
                "probes": args.probes,
                "failed": failed,
                "p50": round(percentile(latencies, 50), 2) if latencies else None,
                "p99": round(percentile(latencies, 99), 2) if latencies else None,
                "max": round(max(latencies), 2) if latencies else None,
            },
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(result, indent=2))
        return
    r, p, h = result["rss_mb"], result["posts"], result["healthz_ms"]
    print(f"RSS: before {r['before']} MB, peak during {r['peak_during']} MB, after {r['after']} MB "
          f"(growth: peak {r['growth_peak']} MB, after {r['growth_after']} MB)")
    print(f"{p['sent']} unauthenticated POSTs of {p['body_bytes']:,} bytes: answers {p['answers']}; "
          f"{p['refused_before_body_sent']} refused before their body was sent; the clients' sockets "
          f"took {p['body_mb_sent_by_clients']} MB of body in all; answered or closed within "
          f"p50 {p['answered_at']['p50_s']:.3f} s, max {p['answered_at']['max_s']:.3f} s")
    for kind, v in result["idle"].items():
        at = v["closed_at"]
        when = f"p50 {at['p50_s']:.2f} s, max {at['max_s']:.2f} s" if at["n"] else "-"
        print(f"idle ({kind}): {v['held']} held, {v['closed_by_server']} closed by the server ({when}), "
              f"{v['still_open_after_hold']} still open after {args.hold:.0f} s")
    print(f"/healthz during: {h['probes']} probes, {h['failed']} failed, p50 {h['p50']} ms, "
          f"p99 {h['p99']} ms, max {h['max']} ms")


if __name__ == "__main__":
    sys.exit(main())
