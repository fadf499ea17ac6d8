"""Host leases (panel/leases.py) share the hosts out among watcher and collector processes,
on SQLite and PostgreSQL alike: one process takes every host, a newcomer gets its share, a
dead process's hosts go to the others only once its leases have ended, a process stops
using a host before anyone else may take it, and under contention no host ever has two
holders.

Each LeaseKeeper here stands for one process; a test runs its rounds (heartbeat()) itself,
or in threads for the races. The processes themselves are tested in test_shared_hosts.py.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection, transaction

from panel.choices import ProcessRole
from panel.leases import LeaseKeeper, database_now
from panel.models import Host, HostLease, ProcessHeartbeat

WATCHER = ProcessRole.WATCHER


def make_hosts(count: int, start: int = 0) -> set[int]:
    return {
        Host.objects.create(name=f"sim-{n}", uri=f"test:///sim-{n}.xml").pk
        for n in range(start, start + count)
    }


def holders(role: ProcessRole = WATCHER) -> dict[int, str]:
    """{host id: owner} of the leases that hold now, as the database says."""
    now = database_now()
    return dict(
        HostLease.objects.filter(role=role, expires_at__gte=now).values_list("host_id", "owner")
    )


def settle(*keepers: LeaseKeeper, rounds: int = 3) -> None:
    for _ in range(rounds):
        for keeper in keepers:
            keeper.heartbeat()


@pytest.fixture(autouse=True)
def _no_other_processes(db):
    """Only the keepers of the test count as live (a process of an earlier test may have
    left its heartbeat behind)."""
    ProcessHeartbeat.objects.all().delete()


def test_a_lone_process_takes_every_host_and_renews_its_leases(db):
    hosts = make_hosts(5)
    a = LeaseKeeper(WATCHER, name="a")
    a.heartbeat()
    assert a.owned() == hosts
    assert holders() == dict.fromkeys(hosts, "a")
    assert ProcessHeartbeat.objects.filter(name="a", role=WATCHER).exists()
    first_end = HostLease.objects.get(host_id=min(hosts), role=WATCHER).expires_at

    time.sleep(0.05)
    a.heartbeat()
    assert a.owned() == hosts
    assert HostLease.objects.get(host_id=min(hosts), role=WATCHER).expires_at > first_end
    # New hosts nobody held: nothing to catch up.
    assert a.take_overs() == set()


def test_a_newcomer_gets_its_share_and_the_shares_stay_even(db):
    hosts = make_hosts(7)
    a, b, c = (LeaseKeeper(WATCHER, name=n) for n in "abc")
    a.heartbeat()
    b.heartbeat()
    # a holds every lease and they have not expired: b takes none yet.
    assert (len(a.owned()), len(b.owned())) == (7, 0)
    a.heartbeat()  # a sees two live processes: its share is 4, it releases 3
    b.heartbeat()  # ... which b takes at its next round
    assert (len(a.owned()), len(b.owned())) == (4, 3)
    assert a.owned() | b.owned() == hosts
    # Taken from a previous holder: the watcher catches those hosts up.
    assert b.take_overs() == b.owned()

    settle(a, b, c, rounds=2)
    owned = [a.owned(), b.owned(), c.owned()]
    assert sorted(len(o) for o in owned) == [2, 2, 3]
    assert set().union(*owned) == hosts
    assert sum(len(o) for o in owned) == 7, "a host has two holders"
    assert holders() == {h: k.name for k in (a, b, c) for h in k.owned()}


def test_a_dead_process_keeps_its_hosts_until_its_leases_end_then_the_others_take_them(db):
    hosts = make_hosts(6)
    a = LeaseKeeper(WATCHER, name="a", lease_seconds=2)
    b = LeaseKeeper(WATCHER, name="b", lease_seconds=2)
    settle(a, b)
    a_hosts = a.owned()
    assert len(a_hosts) == 3 and a_hosts | b.owned() == hosts
    b.take_overs()

    # a stops renewing (killed, paused, or its database unreachable).
    a.heartbeat()
    last_round = time.monotonic()
    b.heartbeat()
    assert b.owned() == hosts - a_hosts, "b took leases that had not ended"

    # a stops using its hosts before its leases end (b goes on renewing its own)...
    time.sleep(max(0.0, last_round + 0.9 - time.monotonic()))
    b.heartbeat()
    time.sleep(max(0.0, last_round + 1.7 - time.monotonic()))
    assert a.owned() == frozenset()
    assert {h for h, owner in holders().items() if owner == "a"} == a_hosts
    b.heartbeat()
    assert b.owned() == hosts - a_hosts

    # ... and once they have ended (a counts as dead too), b takes them.
    time.sleep(max(0.0, last_round + 2.2 - time.monotonic()))
    b.heartbeat()
    assert b.owned() == hosts
    assert holders() == dict.fromkeys(hosts, "b")
    assert b.take_overs() == a_hosts


def test_a_process_that_stops_releases_its_hosts_for_the_others_at_once(db):
    hosts = make_hosts(4)
    a, b = LeaseKeeper(WATCHER, name="a"), LeaseKeeper(WATCHER, name="b")
    settle(a, b)
    a_hosts = a.owned()
    b.take_overs()
    a.release()
    assert a.owned() == frozenset()
    assert not ProcessHeartbeat.objects.filter(name="a").exists()
    b.heartbeat()
    assert b.owned() == hosts
    assert b.take_overs() == a_hosts


def test_it_takes_hosts_added_later_and_drops_removed_ones(db):
    hosts = make_hosts(2)
    a = LeaseKeeper(WATCHER, name="a")
    a.heartbeat()
    added = make_hosts(1, start=10)
    a.heartbeat()
    assert a.owned() == hosts | added
    Host.objects.filter(pk__in=added).delete()
    a.heartbeat()
    assert a.owned() == hosts


def test_watchers_and_collectors_share_out_separately(db):
    hosts = make_hosts(3)
    watcher = LeaseKeeper(ProcessRole.WATCHER, name="w")
    collectors = [LeaseKeeper(ProcessRole.COLLECTOR, name=n) for n in ("c1", "c2")]
    settle(watcher, *collectors)
    assert watcher.owned() == hosts
    assert sorted(len(c.owned()) for c in collectors) == [1, 2]
    assert collectors[0].owned() | collectors[1].owned() == hosts
    # The first collector by name writes the fleet's series; only one is first.
    assert [c.first for c in collectors] == [True, False]


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_process_cut_off_from_the_database_stops_using_its_hosts_then_takes_them_back(
    transactional_db,
):
    """Its rounds block on a lock another connection holds (as on a database that stopped
    answering): it stops using its hosts before its leases end; once the database
    answers again it takes them back, and reports them taken over (events went unseen)."""
    hosts = make_hosts(3)
    keeper = LeaseKeeper(WATCHER, name="a", lease_seconds=1.0, heartbeat_seconds=0.1)
    keeper.start()
    try:
        assert wait_for(lambda: keeper.owned() == hosts, 10)
        keeper.take_overs()
        locked, release = threading.Event(), threading.Event()

        def hold_the_lease_table() -> None:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute(
                            f"LOCK TABLE {HostLease._meta.db_table} IN ACCESS EXCLUSIVE MODE"
                        )
                else:  # SQLite: the first write takes the database's one write lock
                    HostLease.objects.filter(pk=-1).update(owner="x")
                locked.set()
                release.wait(10)

        holder = threading.Thread(target=lambda: _in_threads(hold_the_lease_table))
        holder.start()
        try:
            assert locked.wait(10)
            cut_off = time.monotonic()
            assert wait_for(lambda: keeper.owned() == frozenset(), 5)
            # Within the lease (1 s) less the margin, plus the round that was under way.
            assert time.monotonic() - cut_off < 1.0
            # Cut off past the end of its leases too.
            time.sleep(1.0)
            assert keeper.owned() == frozenset()
        finally:
            release.set()
            holder.join(15)
        assert wait_for(lambda: keeper.owned() == hosts, 10)
        assert keeper.take_overs() == hosts
    finally:
        keeper.stop()
    assert not ProcessHeartbeat.objects.filter(name="a").exists()
    assert holders() == {}


# --- races: keepers in threads, each with its own database connection -------------------


def _in_threads(*targets) -> None:
    errors: list[BaseException] = []

    def run(target) -> None:  # type: ignore[no-untyped-def]
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_two_processes_taking_at_the_same_moment_never_get_the_same_host(transactional_db):
    hosts = make_hosts(30)
    for attempt in range(8):
        keepers = [LeaseKeeper(WATCHER, name=f"{n}-{attempt}") for n in ("a", "b")]
        start = threading.Barrier(2)

        def take(keeper: LeaseKeeper, start: threading.Barrier = start) -> None:
            start.wait(10)
            keeper.heartbeat()

        _in_threads(*(lambda k=k: take(k) for k in keepers))
        a, b = (k.owned() for k in keepers)
        assert not a & b, f"both took {sorted(a & b)}"
        assert holders() == {h: k.name for k in keepers for h in k.owned()}
        assert a | b <= hosts
        for keeper in keepers:
            keeper.release()
        ProcessHeartbeat.objects.all().delete()


def test_under_contention_no_host_ever_has_two_holders(transactional_db):
    """Three processes on short leases, each now and then stalling past its lease (as one
    paused or cut off from the database would), for a few seconds: an observer checks all
    the while that no host is in use by two of them, and leases do change hands."""
    hosts = make_hosts(12)
    keepers = [
        LeaseKeeper(WATCHER, name=n, lease_seconds=1.0, heartbeat_seconds=0.2) for n in "abc"
    ]
    stop = threading.Event()
    overlaps: list[str] = []
    handovers = [0]

    def process(keeper: LeaseKeeper, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            keeper.heartbeat()
            if rng.random() < 0.15:
                stop.wait(1.3)  # past the lease: the others may take its hosts
            else:
                stop.wait(rng.uniform(0.0, 0.2))

    def observe() -> None:
        previous: dict[int, str] = {}
        while not stop.is_set():
            seen: dict[int, str] = {}
            for keeper in keepers:
                for host in keeper.owned():
                    if host in seen:
                        overlaps.append(f"host {host}: {seen[host]} and {keeper.name}")
                    seen[host] = keeper.name
            handovers[0] += sum(
                1 for h, name in seen.items() if h in previous and previous[h] != name
            )
            previous.update(seen)
            time.sleep(0.002)

    def run_for_a_while() -> None:
        time.sleep(8)
        stop.set()

    _in_threads(
        *(lambda k=k, s=s: process(k, s) for s, k in enumerate(keepers)),
        observe,
        run_for_a_while,
    )
    assert not overlaps, overlaps[:5]
    assert handovers[0] >= 3, "no lease changed hands: the test did not test anything"
    # Running normally again, they settle with every host held once.
    settle(*keepers, rounds=4)
    owned = [k.owned() for k in keepers]
    assert sorted(len(o) for o in owned) == [4, 4, 4]
    assert set().union(*owned) == hosts
