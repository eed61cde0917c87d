"""Seeds the server Schemathesis runs against (tests/schemathesis/run.sh) with a little of
everything, so generated requests meet real fans and not only empty answers: events of a few
fans across the three domains (two of them possible duplicates, two merged), a saved segment, a tag, and a
Douyin client secret."""

import json
import os
import urllib.request

URL = os.environ["SIYU_URL"]
ADMIN_KEY = os.environ["SIYU_ADMIN_KEY"]
WRITE_KEY = os.environ["SIYU_WRITE_KEY"]


def call(method, path, body, key):
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{URL}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def event(n, type_, identities, **extra):
    return {"id": f"seed-{n}", "type": type_, "ts": f"2026-10-0{1 + n % 9}T12:00:00+08:00",
            "identities": identities, "source": "seed", **extra}


events = [
    event(1, "follow", {"douyin_open_id": "dy-1", "phone": "13800138001"}),
    event(2, "private_message_in", {"douyin_open_id": "dy-1"}, props={"text": "你好"}),
    event(3, "order", {"phone": "13800138001"}, props={"order_id": "o-1", "amount": 88.0}),
    event(4, "follow", {"douyin_open_id": "dy-2", "email": "a@example.com"}),
    event(5, "subscribe", {"douyin_open_id": "dy-2"}),
    event(6, "lead_form", {"lead_id": "clue-1", "phone": "13800138009"}, props={"channel": "live"}),
    event(7, "lead_form", {"douyin_open_id": "dy-3", "phone": "13800138009"}, props={"channel": "ads"}),
    event(8, "lead_form", {"douyin_open_id": "dy-4", "phone": "13800138009"}, props={"channel": "ads"}),
    event(9, "x_quiz", {"user_id": "u-1"}, domain="private"),
    # Two fans, then one event carrying both: a merge (fan 11 into fan 10).
    event(10, "follow", {"email": "b@example.com"}),
    event(11, "video_like", {"phone": "13800138002"}),
    event(12, "private_message_in", {"email": "b@example.com", "phone": "13800138002"}, props={"text": "hi"}),
]
outcome = call("POST", "/api/events", events, WRITE_KEY)
assert outcome["accepted"] == len(events), outcome
call("POST", "/api/segments", {"name": "followers", "expr": "layer >= passerby", "tag": "粉丝"}, ADMIN_KEY)
call("POST", "/api/tags", {"tag": "高意向", "expr": "layer >= favorable"}, ADMIN_KEY)
call("PUT", "/api/connectors/douyin", {"client_secret": "seed-client-secret"}, ADMIN_KEY)
print(f"seeded {len(events)} events, a segment, a tag and a Douyin secret")
