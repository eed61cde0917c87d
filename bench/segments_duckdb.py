"""The segment benchmark's expression in SQL, run by DuckDB over the same events Siyu sees.

    layer >= favorable and count(live_watch, 7d) >= 1
    and sum(order.amount, 180d) > 100 and not count(private_message_in, 30d) >= 3 and has(phone)

The layer comes from the same rules SQL as bench/layers_duckdb.py (DuckDB has no live layers:
it computes them from the events, as an analyst's query would). Amounts are in fen, as Siyu
keeps them, so sums are exact; `has(phone)` reads the identity-kind bits of each event
(phone is bit 4). `siyu bench segments --duckdb` writes the events and runs this script.

Usage: python3 bench/segments_duckdb.py EVENTS.csv AS_OF_MS [--threads N]
Prints one JSON object: {"count": n, "load_seconds": s, "query_seconds": s, "runs": [...]}.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb  # noqa: E402
from layers_duckdb import DAY_MS, FEATURES_CTE, LAYER_CASE, load  # noqa: E402

PHONE_BIT = 1 << 4

SEGMENT_SQL = FEATURES_CTE + f"""
, layered AS (
    SELECT fan, CASE {LAYER_CASE} WHEN 'potential' THEN 0 WHEN 'passerby' THEN 1
                     WHEN 'favorable' THEN 2 ELSE 3 END AS layer_rank
    FROM features),
live_watches AS (
    SELECT fan, count(*) AS n FROM e
    WHERE type = 'live_watch' AND ts > $as_of - 7 * {DAY_MS}::BIGINT GROUP BY fan),
spent AS (
    SELECT fan, sum(amount_fen) AS fen FROM e
    WHERE type = 'order' AND ts > $as_of - 180 * {DAY_MS}::BIGINT GROUP BY fan),
messages AS (
    SELECT fan, count(*) AS n FROM e
    WHERE type = 'private_message_in' AND ts > $as_of - 30 * {DAY_MS}::BIGINT GROUP BY fan),
phones AS (SELECT DISTINCT fan FROM e WHERE (kinds & {PHONE_BIT}) <> 0)
SELECT count(*) FROM layered
LEFT JOIN live_watches USING (fan) LEFT JOIN spent USING (fan) LEFT JOIN messages USING (fan)
WHERE layer_rank >= 2
  AND coalesce(live_watches.n, 0) >= 1
  AND coalesce(spent.fen, 0) > 10000
  AND NOT coalesce(messages.n, 0) >= 3
  AND fan IN (SELECT fan FROM phones)
"""


def main():
    path, as_of = sys.argv[1], int(sys.argv[2])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--threads" else None
    con, load_seconds = load(path, threads)
    runs = []
    count = None
    for _ in range(3):
        t = time.perf_counter()
        count = con.execute(SEGMENT_SQL, {"as_of": as_of}).fetchone()[0]
        runs.append(time.perf_counter() - t)
    print(json.dumps({
        "count": count,
        "load_seconds": load_seconds,
        "query_seconds": min(runs),
        "runs": runs,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "duckdb": duckdb.__version__,
    }))


if __name__ == "__main__":
    main()
