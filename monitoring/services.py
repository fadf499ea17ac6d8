"""Reading the stats for pages and the API: latest values and ranges, never libvirt."""

from __future__ import annotations

import json
import time

from panel.exceptions import ServiceError
from panel.models import Host
from vms.models import VirtualMachine

from .series import RANGES
from .store import StatsStore, interval


def _range(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if value not in RANGES:
        raise ServiceError(
            f"Unknown range '{value}': use one of {', '.join(RANGES)} (last hour, day, 30 days).",
            field="range",
        )
    return value


def max_age() -> float:
    """A latest sample older than three intervals is stale: the VM or host stopped reporting."""
    return 3 * interval()


def _stats_json(kind: str, ident: str, range_name: str | None, now: float | None) -> bytes:
    range_name = _range(range_name)
    now = time.time() if now is None else now
    store = StatsStore()
    latest = store.latest(kind, [ident], now, max_age()).get(ident)
    body = b'{"interval":%d,"latest":%s' % (interval(), json.dumps(latest).encode())
    if range_name:
        body += b',"history":' + store.history_json(kind, ident, range_name, now)
    return body + b"}"


def vm_stats_json(
    vm: VirtualMachine, range_name: str | None = None, *, now: float | None = None
) -> bytes:
    """The VM's newest sample (null when it is not running) and, with a range, its history,
    as the API's JSON: {"interval", "latest", "history": {"range", "step", "fields", "points"}}.
    """
    return _stats_json("vm", str(vm.pk), range_name, now)


def host_stats_json(
    host: Host, range_name: str | None = None, *, now: float | None = None
) -> bytes:
    """The host's newest sample and, with a range, its history (as vm_stats_json)."""
    return _stats_json("host", str(host.pk), range_name, now)


def fleet_stats_json(range_name: str | None = None, *, now: float | None = None) -> bytes:
    """All hosts together (as vm_stats_json)."""
    return _stats_json("fleet", "all", range_name, now)


def latest_vms(ids: list[str], *, now: float | None = None) -> dict[str, dict]:
    """{vm id: newest sample} for the VMs of a page, in one read."""
    now = time.time() if now is None else now
    return StatsStore().latest("vm", ids, now, max_age())
