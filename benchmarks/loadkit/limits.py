"""The load run's goals, its fixed settings (timeouts, the shared password, the load
generator's bound) and what each role does, by weight."""

from __future__ import annotations

GOAL_RATE = 100.0  # req/s offered within the limits below
PAGE_P95_S = 0.150
API_P95_S = 0.100
EVENT_P95_S = 1.0

PASSWORD = "load-user-pass-1"  # every virtual user's, in the scratch database only
KEEPALIVE_S = 4.0  # uvicorn closes keep-alive connections idle for 5 s: reuse younger ones
REQUEST_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 2000  # the generator sheds (and counts) arrivals past this

# What each role does, by weight. Admins and operators act on VMs; viewers only look.
READS = {
    "page vm list": 22,
    "page vm": 12,
    "page dashboard": 7,
    "page host": 5,
    "page jobs": 4,
    "api vm search": 20,
    "api vm": 10,
    "api jobs": 5,
}
ACTS = {"act power": 10, "act snapshot": 3}
