"""Three of docs/analytics.md's reports in SQL, run by DuckDB over the same events Siyu sees.

`siyu bench analytics --duckdb` writes the events (one row per event, with the fan Siyu resolved
it to, the arrival order, the time, the type, the order amount and the domain) and runs this
script: attribution of the period's orders (first touch, last touch, linear over 30 days),
historical LTV as of the period's end, and weekly retention of the 12 weeks before it. The
figures Siyu compares (orders, revenue, first-touch credit per domain, LTV's fans, revenue and
repeat buyers) must be identical; loading the file is timed apart and not compared.

Usage: python3 bench/analytics_duckdb.py EVENTS.csv FROM_MS TO_MS [--threads N]
Prints one JSON object: {"attribution": {...}, "ltv": {...}, "retention_cohorts": n,
"load_seconds": s, "seconds": {"attribution": s, "ltv": s, "retention": s}}.
"""

import json
import sys
import time

import duckdb

DAY_MS = 86_400_000
OFFSET_MS = 8 * 3_600_000  # Asia/Shanghai
NOT_TOUCHES = "('order', 'refund', 'private_message_out', 'ad_impression')"

ATTRIBUTION = f"""
WITH touches AS (
    SELECT fan, ts, seq, domain FROM events WHERE type NOT IN {NOT_TOUCHES}
),
orders AS (
    SELECT fan, ts, seq, amount_fen FROM events
    WHERE type = 'order' AND ts >= $from AND ts < $to
),
first_touch AS (
    SELECT fan, ts, seq, domain FROM (
        SELECT *, row_number() OVER (PARTITION BY fan ORDER BY ts, seq) AS rn FROM touches
    ) WHERE rn = 1
),
first_credit AS (
    SELECT CASE WHEN f.fan IS NOT NULL AND (f.ts < o.ts OR (f.ts = o.ts AND f.seq < o.seq))
                THEN f.domain ELSE 'private' END AS domain,
           o.amount_fen
    FROM orders o LEFT JOIN first_touch f USING (fan)
),
last_credit AS (
    SELECT coalesce(t.domain, 'private') AS domain, o.amount_fen
    FROM orders o ASOF LEFT JOIN touches t ON o.fan = t.fan AND o.ts >= t.ts
),
windowed AS (
    SELECT o.fan, o.seq AS order_seq, o.amount_fen, t.domain
    FROM orders o JOIN touches t
      ON t.fan = o.fan AND t.ts > o.ts - {30 * DAY_MS}
     AND (t.ts < o.ts OR (t.ts = o.ts AND t.seq < o.seq))
),
linear_credit AS (
    SELECT domain, sum(amount_fen / n) AS revenue, sum(1.0 / n) AS orders FROM (
        SELECT *, count(*) OVER (PARTITION BY order_seq) AS n FROM windowed
    ) GROUP BY domain
)
SELECT 'first' AS model, domain, count(*)::DOUBLE AS orders, sum(amount_fen)::DOUBLE AS revenue
  FROM first_credit GROUP BY domain
UNION ALL
SELECT 'last', domain, count(*)::DOUBLE, sum(amount_fen)::DOUBLE FROM last_credit GROUP BY domain
UNION ALL
SELECT 'linear', domain, orders, revenue FROM linear_credit
"""

LTV = """
WITH e AS (SELECT * FROM events WHERE ts <= $to),
per_fan AS (
    SELECT fan,
           count(*) FILTER (WHERE type = 'order') AS orders,
           coalesce(sum(amount_fen) FILTER (WHERE type = 'order'), 0) AS revenue,
           coalesce(sum(amount_fen) FILTER (WHERE type = 'refund'), 0) AS refunds
    FROM e GROUP BY fan
)
SELECT count(*) AS fans, sum(revenue)::BIGINT AS revenue, sum(refunds)::BIGINT AS refunds,
       count(*) FILTER (WHERE orders > 1) AS repeat_buyers,
       count(*) FILTER (WHERE orders > 0) AS buyers
FROM per_fan
"""

RETENTION = f"""
WITH act AS (
    SELECT fan, ts FROM events
    WHERE ts <= $to AND type NOT IN ('refund', 'private_message_out', 'ad_impression')
),
weeks AS (
    SELECT fan, ((ts + {OFFSET_MS}) // {DAY_MS} - 4) // 7 AS week FROM act
),
cohort AS (SELECT fan, min(week) AS w0 FROM weeks GROUP BY fan),
chosen AS (
    SELECT c.fan, c.w0 FROM cohort c
    WHERE c.w0 * 7 + 4 >= ($from_week_day) AND c.w0 * 7 + 4 < ($to_week_day)
)
SELECT ch.w0, w.week - ch.w0 AS k, count(DISTINCT w.fan) AS active
FROM chosen ch JOIN weeks w USING (fan)
WHERE w.week - ch.w0 BETWEEN 0 AND 11
GROUP BY ch.w0, k ORDER BY ch.w0, k
"""


def best_of(con, sql, params, runs=3):
    best, rows = None, None
    for _ in range(runs):
        t = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    return best, rows


def main():
    path, from_ms, to_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    threads = 2
    if "--threads" in sys.argv:
        threads = int(sys.argv[sys.argv.index("--threads") + 1])
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    t = time.perf_counter()
    con.execute(
        "CREATE TABLE events AS SELECT * FROM read_csv($p, header = true, columns = {"
        "'fan': 'BIGINT', 'seq': 'BIGINT', 'ts': 'BIGINT', 'type': 'VARCHAR', "
        "'duration_s': 'INTEGER', 'grp': 'VARCHAR', 'amount_fen': 'BIGINT', "
        "'kinds': 'INTEGER', 'domain': 'VARCHAR'})",
        {"p": path},
    )
    load = time.perf_counter() - t

    a_s, a_rows = best_of(con, ATTRIBUTION, {"from": from_ms, "to": to_ms})
    first = {d: (0, 0) for d in ("public", "commercial", "private")}
    for model, domain, orders, revenue in a_rows:
        if model == "first":
            first[domain] = (int(orders), int(revenue))
    orders = sum(o for o, _ in first.values())
    revenue = sum(r for _, r in first.values())

    l_s, l_rows = best_of(con, LTV, {"to": to_ms})
    fans, rev, refunds, repeat, buyers = l_rows[0]

    to_day = (to_ms + OFFSET_MS) // DAY_MS
    from_day = (to_ms - 84 * DAY_MS + OFFSET_MS) // DAY_MS
    # Cohorts whose week starts in the 12 weeks' span: the week containing from_day onward.
    from_week_day = ((from_day - 4) // 7) * 7 + 4
    r_sql = RETENTION.replace("$from_week_day", str(from_week_day)).replace(
        "$to_week_day", str(to_day + 1)
    )
    r_s, r_rows = best_of(con, r_sql, {"to": to_ms})
    cohorts = len({w for w, _, _ in r_rows})

    print(json.dumps({
        "attribution": {
            "orders": orders,
            "revenue_fen": revenue,
            "first_touch": [[d, *first[d]] for d in ("public", "commercial", "private")],
        },
        "ltv": {"fans": fans, "revenue_fen": rev, "refunds_fen": refunds,
                "repeat_buyers": repeat, "buyers": buyers},
        "retention_cohorts": cohorts,
        "load_seconds": load,
        "seconds": {"attribution": a_s, "ltv": l_s, "retention": r_s},
        "threads": threads,
    }))


if __name__ == "__main__":
    main()
