"""Sends events to a running Siyu with RudderStack's own Python SDK (rudder-sdk-python), unchanged
and with its default retries and timeouts, and checks what a RudderStack user would:

- identify, track, page, alias and anonymous-only events land, and become the right fans;
- a batch whose every event is refused, and a wrong write key, come back to the caller within
  seconds: the SDK reads the top-level `code` of the error body, takes a 4xx other than 429 as
  final, and makes exactly one request (without that `code` it raised KeyError, took it for a
  network error and retried with back-off for about 8 minutes while flush() blocked);
- alias with an existing *user id* as previousId merges the two users' fans.

Run by tests/rudderstack/run.sh (which starts the server) from .ci/run.
Environment: SIYU_URL, SIYU_WRITE_KEY, SIYU_ADMIN_KEY.
"""

import json
import os
import sys
import threading
import time

from rudderstack.analytics import Client
from rudderstack.analytics import request as sdk_request
from rudderstack.analytics.request import APIError

import siyu_api

url = os.environ["SIYU_URL"]
write_key = os.environ["SIYU_WRITE_KEY"]

# Count the SDK's HTTP requests by wrapping its session's post, which it calls unchanged: a
# refused batch must cost one request, not one per retry.
requests_made = []
_post = sdk_request._session.post


def _counting_post(*args, **kwargs):
    requests_made.append(args[0] if args else kwargs.get("url"))
    return _post(*args, **kwargs)


sdk_request._session.post = _counting_post

# A refused flush must return long before the SDK's back-off would (10 retries: minutes).
FLUSH_BOUND_S = 20


def client(key, errors):
    """A client with the SDK's defaults (max_retries, timeout, upload_interval) that records
    what it reports through on_error."""
    return Client(write_key=key, host=url, on_error=lambda e, batch: errors.append((e, batch)))


def flush_timed(c):
    """Flushes and returns how long it took; fails once flush() has blocked FLUSH_BOUND_S (the
    SDK retrying), rather than waiting out its back-off."""
    start = time.monotonic()
    flushing = threading.Thread(target=c.flush, daemon=True)
    flushing.start()
    flushing.join(FLUSH_BOUND_S)
    took = time.monotonic() - start
    if flushing.is_alive():
        print(
            f"flush() still blocked after {took:.0f} s: the SDK is retrying "
            f"({len(requests_made)} requests so far)",
            file=sys.stderr,
        )
        # Not sys.exit: the SDK's atexit hook would wait for the retries to end.
        os._exit(1)
    return took


# 1. Good events land.
errors = []
c = client(write_key, errors)
c.identify("user-1", {"phone": "138 0013 8000", "email": "Li.Hua@Example.com", "name": "李华"})
c.track("user-1", "Order Completed", {"order_id": "o-1", "total": 199.0})
c.track("user-1", "follow")
c.page("user-1", "Docs", "Home")
c.track(anonymous_id="anon-7", event="live_enter")
c.page(anonymous_id="anon-7", name="Landing")
c.alias("anon-7", "user-1")
c.identify("user-old", {"email": "old@example.com"})
c.identify("user-new", {"email": "new@example.com"})
flush_timed(c)
if errors:
    sys.exit(f"the SDK reported errors for good events: {errors}")

stats = siyu_api.stats()
print(json.dumps(stats, ensure_ascii=False))
expected = {"x_identify": 3, "order": 1, "follow": 1, "x_page": 2, "live_enter": 1, "x_alias": 1}
assert stats["events"] == 9, stats
for t, n in expected.items():
    assert stats["by_type"].get(t) == n, (t, stats)
user_1 = siyu_api.fans_of("user_id", "user-1")
assert len(user_1) == 1, user_1
assert siyu_api.fans_of("anonymous_id", "anon-7") == user_1, "alias linked the anonymous visitor"
assert siyu_api.fans_of("phone", "+86 138-0013-8000") == user_1, "traits.phone is an identity"
assert siyu_api.fans_of("user_id", "user-old") != siyu_api.fans_of("user_id", "user-new")
assert stats["fans"] == 3, stats

# 2. alias(previousId=<an existing user id>) merges the two users.
c.alias(previous_id="user-old", user_id="user-new")
flush_timed(c)
if errors:
    sys.exit(f"the SDK reported errors for the alias: {errors}")
merged = siyu_api.fans_of("user_id", "user-new")
assert len(merged) == 1 and siyu_api.fans_of("user_id", "user-old") == merged, merged
fan = siyu_api.get(f"/api/fans/{merged[0]}")
assert [m["cause"] for m in fan["merges"]] == ["alias"], fan["merges"]
assert siyu_api.stats()["fans"] == 2
c.join()


def refused(key, send, status, code, what):
    """Sends with a fresh client and checks the flush comes back at once with one request and
    the server's code reaching on_error."""
    errors = []
    c = client(key, errors)
    send(c)
    before = len(requests_made)
    took = flush_timed(c)
    c.join()
    made = len(requests_made) - before
    assert took < FLUSH_BOUND_S, f"{what}: flush() blocked {took:.1f} s"
    assert len(errors) == 1, f"{what}: {errors}"
    e = errors[0][0]
    assert isinstance(e, APIError), f"{what}: the SDK could not read the error body: {e!r}"
    assert (e.status, e.code) == (status, code), f"{what}: {e}"
    assert made == 1, f"{what}: {made} requests; a refused batch is not retried"
    print(f"{what}: {status} {code} in {took:.2f} s, {made} request")


# 3. A batch whose every event is refused (an invalid phone in the traits) is final.
events_before = siyu_api.stats()["events"]
refused(
    write_key,
    lambda c: c.track("user-9", "Coupon Viewed", context={"traits": {"phone": "138-abc"}}),
    400,
    "all_events_rejected",
    "every event refused",
)
# 4. So is a wrong write key.
refused(
    "sy_w_not_a_key",
    lambda c: c.track("user-9", "follow"),
    401,
    "unauthorized",
    "wrong write key",
)
assert siyu_api.stats()["events"] == events_before, "nothing refused was stored"
print("rudder-sdk-python: 10 events landed, alias merged two user ids, refusals final at once")
