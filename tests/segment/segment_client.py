"""Sends events to a running Siyu with Segment's own Python library, unchanged, and checks
that they landed. Run by tests/segment/run.sh (which starts the server) from .ci/run.

Environment: SIYU_URL, SIYU_WRITE_KEY, SIYU_ADMIN_KEY.
"""

import json
import os
import sys

import segment.analytics as analytics

import siyu_api

url = os.environ["SIYU_URL"]
write_key = os.environ["SIYU_WRITE_KEY"]

errors = []
client = analytics.Client(
    write_key=write_key,
    host=url,
    gzip=True,
    max_retries=2,
    on_error=lambda e, batch: errors.append((e, batch)),
)
client.identify("user-1", {"phone": "138 0013 8000", "email": "Li.Hua@Example.com", "name": "李华"})
client.track("user-1", "Order Completed", {"order_id": "o-1", "total": 199.0})
client.track("user-1", "follow")
client.track("user-1", "Coupon Viewed", {"coupon": "DOUBLE11"})
client.page("user-1", "Docs", "Home")
client.alias("anon-9", "user-1")
client.track(anonymous_id="anon-9", event="live_enter")
client.flush()
client.join()

if errors:
    sys.exit(f"the client reported errors: {errors}")

stats = siyu_api.stats()
print(json.dumps(stats, ensure_ascii=False))

expected = {"x_identify": 1, "order": 1, "follow": 1, "x_coupon_viewed": 1, "x_page": 1, "x_alias": 1, "live_enter": 1}
assert stats["events"] == 7, stats
for t, n in expected.items():
    assert stats["by_type"].get(t) == n, (t, stats)
assert stats["fans"] == 1, f"every message is one person (alias linked anon-9): {stats}"
print("segment-analytics-python: 7 events landed, 1 fan")
