"""Pure arithmetic of the time series: rates from counters, tiers, downsampling.

Nothing here reads a clock or does I/O, so tests drive it with any time they like.
"""

from __future__ import annotations

from dataclasses import dataclass

from panel.hypervisor import DomainCounters, HostCounters

# The order of the values in a stored point, after its timestamp.
RATE_FIELDS = ("disk_rd", "disk_wr", "disk_rd_iops", "disk_wr_iops", "net_rx", "net_tx")
VM_FIELDS = ("cpu", "mem_used", "mem_balloon", "mem_max", *RATE_FIELDS)
HOST_FIELDS = ("cpu", "mem_used", "mem_total", *RATE_FIELDS, "vms")
FIELDS = {"vm": VM_FIELDS, "host": HOST_FIELDS, "fleet": HOST_FIELDS}
# What a stored point keeps: a VM's maximum memory changes only with its definition, so it
# is in the latest sample but not repeated in every point (a tenth of the history's size).
STORED = {
    "vm": tuple(f for f in VM_FIELDS if f != "mem_max"),
    "host": HOST_FIELDS,
    "fleet": HOST_FIELDS,
}


@dataclass(frozen=True)
class Tier:
    """One resolution of a series: a point every `step` seconds, kept for `keep` seconds."""

    name: str
    step: int
    keep: int

    @property
    def length(self) -> int:
        """How many points the tier holds at most."""
        return -(-self.keep // self.step) + 1

    def bucket(self, t: float) -> int:
        """The start of the step that t falls in."""
        return int(t // self.step * self.step)


HOUR, DAY = 3600, 86400
ROLLUPS = (Tier("1d", 60, DAY), Tier("30d", 900, 30 * DAY))
RANGES = ("1h", "1d", "30d")


def tiers(interval: int) -> tuple[Tier, ...]:
    """The raw tier (one point per collector interval, an hour long) then the rollups."""
    return (Tier("1h", interval, HOUR), *ROLLUPS)


def _rate(before: int, after: int, seconds: float) -> float:
    # A counter that went down was reset (guest rebooted, disk detached): no rate.
    return max(after - before, 0) / seconds


def vm_sample(prev: DomainCounters | None, cur: DomainCounters, seconds: float) -> dict | None:
    """A VM's usage between two readings: CPU % of its vCPUs, memory bytes, byte and op rates."""
    if prev is None or seconds <= 0:
        return None
    cpu = _rate(prev.cpu_time_ns, cur.cpu_time_ns, seconds) / 1e9 / max(cur.vcpus, 1) * 100
    # The guest's own figure needs its balloon driver; else what the host gives it (qemu's
    # RSS, which counts qemu itself too, so capped at the guest's current memory).
    used = cur.memory_guest_used_bytes or min(
        cur.memory_rss_bytes or cur.memory_current_bytes, cur.memory_current_bytes
    )
    return {
        "cpu": round(min(cpu, 100.0), 2),
        "mem_used": used,
        "mem_balloon": cur.memory_current_bytes,
        "mem_max": cur.memory_max_bytes,
        "disk_rd": round(_rate(prev.disk_read_bytes, cur.disk_read_bytes, seconds)),
        "disk_wr": round(_rate(prev.disk_write_bytes, cur.disk_write_bytes, seconds)),
        "disk_rd_iops": round(_rate(prev.disk_read_reqs, cur.disk_read_reqs, seconds), 2),
        "disk_wr_iops": round(_rate(prev.disk_write_reqs, cur.disk_write_reqs, seconds), 2),
        "net_rx": round(_rate(prev.net_rx_bytes, cur.net_rx_bytes, seconds)),
        "net_tx": round(_rate(prev.net_tx_bytes, cur.net_tx_bytes, seconds)),
    }


def host_sample(prev: HostCounters | None, cur: HostCounters, vms: list[dict]) -> dict | None:
    """A host's CPU % (all its CPUs) and memory, with the I/O of its VMs summed."""
    if prev is None:
        return None
    total = cur.cpu_total_ns - prev.cpu_total_ns
    busy = cur.cpu_busy_ns - prev.cpu_busy_ns
    sample = {
        "cpu": round(min(max(busy / total * 100, 0.0), 100.0), 2) if total > 0 else 0.0,
        "mem_used": cur.memory_used_bytes,
        "mem_total": cur.memory_total_bytes,
    }
    for name in RATE_FIELDS:
        sample[name] = round(sum(vm[name] for vm in vms), 2)
    sample["vms"] = len(cur.domains)
    return sample


def fleet_sample(hosts: list[dict]) -> dict:
    """Every host's sample summed; CPU % is the mean weighted by nothing (hosts differ)."""
    sample = {name: round(sum(h[name] for h in hosts), 2) for name in HOST_FIELDS}
    sample["cpu"] = round(sample["cpu"] / len(hosts), 2) if hosts else 0.0
    return sample


class Downsampler:
    """Averages raw samples into the coarser tiers, handing back each bucket once complete.

    A bucket is complete when a sample of a later bucket arrives for the same
    series; the point is stamped with the bucket's start.
    """

    def __init__(self, rollups: tuple[Tier, ...] = ROLLUPS) -> None:
        self.rollups = rollups
        self._open: dict[tuple[str, str], tuple[int, int, dict[str, float]]] = {}

    def add(self, series: str, t: float, values: dict) -> list[tuple[Tier, int, dict]]:
        done = []
        for tier in self.rollups:
            start = tier.bucket(t)
            key = (series, tier.name)
            current = self._open.get(key)
            if current is not None and current[0] != start:
                bucket, count, sums = current
                done.append((tier, bucket, {k: round(v / count, 2) for k, v in sums.items()}))
                current = None
            if current is None:
                self._open[key] = (start, 1, dict(values))
            else:
                bucket, count, sums = current
                for k, v in values.items():
                    sums[k] = sums.get(k, 0) + v
                self._open[key] = (bucket, count + 1, sums)
        return done

    def keep_only(self, series: set[str]) -> None:
        """Forget the open buckets of series no longer collected (VMs gone, hosts removed)."""
        for key in [k for k in self._open if k[0] not in series]:
            del self._open[key]
