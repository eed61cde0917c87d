"""The admin API of a running Siyu, as the client tests read it (tests/*/run.sh start the
server and export SIYU_URL and SIYU_ADMIN_KEY)."""

import json
import os
import urllib.parse
import urllib.request

URL = os.environ["SIYU_URL"]
ADMIN_KEY = os.environ["SIYU_ADMIN_KEY"]


def get(path):
    """GETs `path` with the admin key and returns the JSON answer."""
    request = urllib.request.Request(f"{URL}{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def stats():
    """`GET /api/stats`: events, fans, by_type, by_domain."""
    return get("/api/stats")


def fans_of(kind, value):
    """The ids of the fans holding an identity value (normalized by the server, as at ingest)."""
    query = urllib.parse.urlencode({"kind": kind, "value": value})
    return [f["fan"] for f in get(f"/api/fans/lookup?{query}")["fans"]]
