"""The layer rules of DESIGN.md in SQL, run by DuckDB over the same events Siyu sees.

`siyu bench layers --duckdb` writes the events (one row per event, with the fan Siyu resolved
it to, the arrival order, the time and the properties the rules read) and runs this script;
the counts per layer must be identical, and the script reports DuckDB's time for the full
query (loading the file is timed separately and not compared).

Usage: python3 bench/layers_duckdb.py EVENTS.csv AS_OF_MS [--threads N]
Prints one JSON object: {"counts": {...}, "load_seconds": s, "query_seconds": s, "runs": [...]}.
"""

import json
import sys
import time

import duckdb

WEIGHTS = {
    "video_like": 1, "video_comment": 3, "video_share": 3, "homepage_visit": 1,
    "live_enter": 1, "live_comment": 2, "private_message_in": 4, "subscribe": 4,
    "group_message": 2, "coupon_claim": 3, "store_visit": 5,
}
DAY_MS = 86_400_000

# The features every fan has as of $as_of (DESIGN.md), as common table expressions ending in
# `features`; bench/segments_duckdb.py builds on them too.
FEATURES_CTE = """
WITH e AS (SELECT * FROM events WHERE ts <= $as_of),
fans AS (SELECT DISTINCT fan FROM e),
follows AS (
    SELECT fan, arg_max(type = 'follow', struct_pack(ts := ts, seq := seq)) AS follows
    FROM e WHERE type IN ('follow', 'unfollow') GROUP BY fan),
subscribed AS (
    SELECT fan, arg_max(type = 'subscribe', struct_pack(ts := ts, seq := seq)) AS subscribed
    FROM e WHERE type IN ('subscribe', 'unsubscribe') GROUP BY fan),
membership AS (
    SELECT fan, grp, arg_max(type = 'group_join', struct_pack(ts := ts, seq := seq)) AS joined
    FROM e WHERE type IN ('group_join', 'group_leave') GROUP BY fan, grp),
in_group AS (SELECT fan, bool_or(joined) AS in_group FROM membership GROUP BY fan),
engagement AS (
    SELECT fan, sum(CASE type {weights}
                    WHEN 'live_watch' THEN floor(duration_s / 300)
                    ELSE 0 END) AS engagement
    FROM e WHERE ts > $as_of - 30 * {day}::BIGINT GROUP BY fan),
orders AS (
    SELECT fan, count(*) AS orders FROM e
    WHERE type = 'order' AND ts > $as_of - 180 * {day}::BIGINT GROUP BY fan),
features AS (
    SELECT fans.fan,
           coalesce(follows.follows, false) AS follows,
           coalesce(subscribed.subscribed, false) AS subscribed,
           coalesce(in_group.in_group, false) AS in_group,
           coalesce(engagement.engagement, 0) AS engagement,
           coalesce(orders.orders, 0) AS orders
    FROM fans
    LEFT JOIN follows USING (fan) LEFT JOIN subscribed USING (fan)
    LEFT JOIN in_group USING (fan) LEFT JOIN engagement USING (fan) LEFT JOIN orders USING (fan))
""".format(
    weights=" ".join(f"WHEN '{t}' THEN {w}" for t, w in WEIGHTS.items()),
    day=DAY_MS,
)

# The first rule that holds, as a name.
LAYER_CASE = """CASE
         WHEN NOT follows THEN 'potential'
         WHEN orders >= 2 OR (orders >= 1 AND engagement >= 10) OR (in_group AND engagement >= 20)
           THEN 'true_love'
         WHEN engagement >= 10 OR subscribed OR in_group THEN 'favorable'
         ELSE 'passerby'
       END"""

LAYERS_SQL = FEATURES_CTE + f"""
SELECT {LAYER_CASE} AS layer, count(*) AS fans
FROM features GROUP BY layer
"""

# The columns `siyu bench` writes.
COLUMNS = (
    "{'fan': 'BIGINT', 'seq': 'BIGINT', 'ts': 'BIGINT', 'type': 'VARCHAR', "
    "'duration_s': 'DOUBLE', 'grp': 'VARCHAR', 'amount_fen': 'BIGINT', 'kinds': 'INTEGER', "
    "'domain': 'VARCHAR'}"
)


def load(path, threads=None):
    """Connects and loads the events; returns (connection, seconds)."""
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    con.execute(
        f"CREATE TABLE events AS SELECT * FROM read_csv(?, header = true, columns = {COLUMNS})",
        [path],
    )
    return con, time.perf_counter() - started


def main():
    path, as_of = sys.argv[1], int(sys.argv[2])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--threads" else None
    con, load_seconds = load(path, threads)
    runs = []
    counts = {}
    for _ in range(3):
        t = time.perf_counter()
        rows = con.execute(LAYERS_SQL, {"as_of": as_of}).fetchall()
        runs.append(time.perf_counter() - t)
        counts = {layer: n for layer, n in rows}
    for layer in ("potential", "passerby", "favorable", "true_love"):
        counts.setdefault(layer, 0)
    print(json.dumps({
        "counts": counts,
        "load_seconds": load_seconds,
        "query_seconds": min(runs),
        "runs": runs,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "duckdb": duckdb.__version__,
    }))


if __name__ == "__main__":
    main()
