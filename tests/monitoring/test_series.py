"""Rates from counters, downsampling into the coarser tiers and retention, with controlled time."""

from __future__ import annotations

import dataclasses

from monitoring.series import (
    HOST_FIELDS,
    ROLLUPS,
    VM_FIELDS,
    Downsampler,
    host_sample,
    tiers,
    vm_sample,
)
from panel.hypervisor import DomainCounters, HostCounters

GIB = 1024**3
T0 = 900 * 1_988_888  # a whole hour: buckets start here


def counters(**values) -> DomainCounters:
    base = dict.fromkeys(f.name for f in dataclasses.fields(DomainCounters))
    base.update({k: 0 for k in base}, uuid="u", name="vm", state="running", vcpus=2)
    base.update(values)
    return DomainCounters(**base)


def vm_values(cpu: float) -> dict:
    values = dict.fromkeys(VM_FIELDS, 0)
    values["cpu"] = cpu
    return values


def test_it_turns_counters_into_percent_and_rates():
    before = counters(cpu_time_ns=0, disk_read_bytes=1000, disk_write_reqs=10, net_rx_bytes=0)
    after = counters(
        cpu_time_ns=5 * 10**9,  # 5 s of CPU over 5 s on 2 vCPUs: half the VM's CPU
        disk_read_bytes=1000 + 5 * 4096,
        disk_write_reqs=60,
        net_rx_bytes=5000,
        memory_current_bytes=GIB,
        memory_rss_bytes=GIB // 2,
    )
    sample = vm_sample(before, after, 5.0)
    assert sample["cpu"] == 50.0
    assert sample["disk_rd"] == 4096
    assert sample["disk_wr_iops"] == 10.0
    assert sample["net_rx"] == 1000
    assert sample["mem_balloon"] == GIB
    assert sample["mem_used"] == GIB // 2  # no guest figures: what the host sees it use
    bloated = vm_sample(before, dataclasses.replace(after, memory_rss_bytes=2 * GIB), 5.0)
    assert bloated["mem_used"] == GIB  # never more than the guest has
    assert vm_sample(None, after, 5.0) is None  # a first reading has nothing to compare to


def test_it_gives_no_negative_rate_when_a_counter_resets():
    before = counters(cpu_time_ns=10**12, disk_read_bytes=10**9)
    after = counters(cpu_time_ns=10**9, disk_read_bytes=10)  # the guest was reset
    sample = vm_sample(before, after, 5.0)
    assert sample["cpu"] == 0.0 and sample["disk_rd"] == 0


def test_it_sums_the_vms_into_the_host_sample():
    prev = HostCounters("test:///", 0.0, 4, 100, 1000, 8 * GIB, 2 * GIB)
    cur = HostCounters(
        "test:///", 5.0, 4, 400, 2000, 8 * GIB, 3 * GIB, (counters(), counters(uuid="v"))
    )
    vms = [dict(vm_values(10), disk_wr=100), dict(vm_values(20), disk_wr=50)]
    sample = host_sample(prev, cur, vms)
    assert set(sample) == set(HOST_FIELDS)
    assert sample["cpu"] == 30.0  # 300 busy ns of 1000
    assert sample["disk_wr"] == 150 and sample["vms"] == 2 and sample["mem_used"] == 3 * GIB


def test_it_averages_each_minute_and_quarter_hour_once_complete():
    down = Downsampler()
    finished = []
    for i in range(0, 15 * 60 // 5 + 1):  # 5 s samples from T0 to T0 + 15 min inclusive
        t = T0 + i * 5
        cpu = 10.0 if (t - T0) // 60 % 2 == 0 else 30.0  # alternating minutes
        finished += down.add("vm:u", t, vm_values(cpu))
    minutes = [(b, v["cpu"]) for tier, b, v in finished if tier.name == "1d"]
    quarters = [(b, v["cpu"]) for tier, b, v in finished if tier.name == "30d"]
    # 15 minutes completed (the sample at +15:00 opened the 16th), each the mean of 12 samples.
    assert [b for b, _ in minutes] == [T0 + 60 * m for m in range(15)]
    assert [c for _, c in minutes] == [10.0 if m % 2 == 0 else 30.0 for m in range(15)]
    # One quarter hour: 8 minutes at 10 and 7 at 30, 12 samples each.
    assert quarters == [(T0, round((8 * 10 + 7 * 30) / 15, 2))]


def test_it_keeps_buckets_of_each_series_apart_and_forgets_stopped_ones():
    down = Downsampler()
    down.add("vm:a", T0, vm_values(100))
    down.add("vm:b", T0, vm_values(0))
    down.keep_only({"vm:b"})
    done = down.add("vm:a", T0 + 60, vm_values(50)) + down.add("vm:b", T0 + 60, vm_values(0))
    assert [(v["cpu"]) for tier, _, v in done if tier.name == "1d"] == [0.0]


def test_it_stores_downsamples_and_retains_with_controlled_time(store):
    down = Downsampler(ROLLUPS)
    hours = 3
    for i in range(hours * 3600 // 5):
        t = T0 + i * 5
        values = vm_values(float(i % 100))
        rollups = [("vm", "u", tier, b, v) for tier, b, v in down.add("vm:u", t, values)]
        store.write([("vm", "u", t, values)], rollups)
    now = T0 + hours * 3600 - 5

    hour = store.history("vm", "u", "1h", now)
    assert hour["step"] == 5
    assert len(hour["t"]) == 721 and hour["t"][0] == now - 3600 and hour["t"][-1] == now
    assert hour["cpu"][-1] == float((hours * 720 - 1) % 100)
    # The raw list is capped: the first two hours of 5 s points are gone from Redis.
    raw_key = store.key("vm", "u", store.tier("1h"))
    assert store.client.llen(raw_key) == tiers(5)[0].length
    # Every list expires once its range has passed without a write (a deleted VM's history).
    assert 3600 < store.client.ttl(raw_key) <= 3605
    assert (
        30 * 86400 < store.client.ttl(store.key("vm", "u", store.tier("30d"))) <= 30 * 86400 + 900
    )

    day = store.history("vm", "u", "1d", now)
    assert day["step"] == 60 and len(day["t"]) == hours * 60 - 1  # the last minute is still open
    assert day["t"] == [T0 + 60 * m for m in range(hours * 60 - 1)]
    month = store.history("vm", "u", "30d", now)
    assert month["t"] == [T0 + 900 * q for q in range(hours * 4 - 1)]

    # A day later, the hour and the day ranges are empty; the month still has the points.
    later = now + 86400 + 3600
    assert store.history("vm", "u", "1h", later)["t"] == []
    assert store.history("vm", "u", "1d", later)["t"] == []
    assert len(store.history("vm", "u", "30d", later)["t"]) == hours * 4 - 1
    # And after 30 days nothing is shown.
    assert store.history("vm", "u", "30d", now + 31 * 86400)["t"] == []


def test_it_reads_latest_only_while_fresh(store):
    store.write([("vm", "a", T0, vm_values(42)), ("vm", "b", T0 - 100, vm_values(1))])
    assert store.latest("vm", ["a", "b", "c"], T0 + 10, 15) == {"a": {"t": T0, **vm_values(42)}}
    store.forget("vm", ["a"])
    assert store.latest("vm", ["a"], T0 + 10, 15) == {}


def test_it_marks_a_busy_domains_reading_without_disk_counters_partial():
    from panel.hypervisor.stats import domain_counters

    busy = {"state.state": 1, "cpu.time": 5, "block.count": 1, "block.0.name": "vda"}
    assert domain_counters("u", "vm", busy).partial
    full = {**busy, "block.0.rd.reqs": 3, "block.0.rd.bytes": 4096}
    counters = domain_counters("u", "vm", full)
    assert not counters.partial and counters.disk_read_bytes == 4096
    assert not domain_counters("u", "vm", {"state.state": 1}).partial  # no disks at all
