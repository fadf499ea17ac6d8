"""Quotas: what a project uses, counted from its inventory, and reservations that
refuse to go past a limit, even when many requests race for the last slots."""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from django.db import connection, transaction

from panel import quotas, services
from panel.actors import Actor
from panel.models import Job
from panel.quotas import QuotaExceeded, Usage
from storage.models import Volume
from vms.models import Backup, Snapshot, VirtualMachine

from .conftest import GIB, make_vm, texts

RACERS = 8


def test_it_counts_a_projects_vms_vcpus_memory_and_disk(alpha, beta):
    assert quotas.usage(alpha) == Usage(vms=2, vcpus=3, memory_mib=1536, disk_gib=2)
    assert quotas.usage(beta) == Usage(vms=1, vcpus=1, memory_mib=256, disk_gib=1)


def test_it_leaves_vanished_vms_out_and_rounds_disk_up_to_whole_gib(world, alpha, member):
    team = world.teams["alpha"]
    gone = make_vm("alpha-gone", team.host, alpha, member, 4, 4096)
    gone.state = "missing"
    gone.save()
    Volume.objects.create(pool=team.pool, project=alpha, name="alpha-half", capacity=GIB // 2)

    assert quotas.usage(alpha) == Usage(vms=2, vcpus=3, memory_mib=1536, disk_gib=3)


def test_it_counts_each_vm_at_the_most_it_may_grow_to(world, alpha, member):
    team = world.teams["alpha"]
    vm = make_vm("alpha-grows", team.host, alpha, member, 1, 256)
    VirtualMachine.objects.filter(pk=vm.pk).update(max_vcpus=4, max_memory_mib=1024)

    assert quotas.usage(alpha) == Usage(vms=3, vcpus=3 + 4, memory_mib=1536 + 1024, disk_gib=2)


def test_it_counts_backups_and_snapshots_in_their_own_quota(world, alpha, member):
    team = world.teams["alpha"]
    vm = make_vm("alpha-kept", team.host, alpha, member, 1, 256)
    Backup.objects.create(
        vm=vm,
        vm_uuid=vm.pk,
        vm_name=vm.name,
        project=alpha,
        host=team.host,
        state="good",
        size=GIB // 2,
    )
    Snapshot.objects.create(vm=vm, name="s1", size=GIB)
    assert quotas.usage(alpha).backup_gib == 2  # 1.5 GiB held, rounded up

    # A backup being taken counts what its job reserved, not the copies written so far.
    job = Job.objects.create(
        kind="vm.backup",
        project=alpha,
        state="running",
        target=f"vm:{vm.pk}",
        result={"reserve": {"backup_gib": 5}},
    )
    Backup.objects.create(
        vm=vm,
        vm_uuid=vm.pk,
        vm_name=vm.name,
        project=alpha,
        host=team.host,
        job=job,
        state="verifying",
        size=3 * GIB,
    )
    assert quotas.usage(alpha).backup_gib == 2 + 5
    Job.objects.filter(pk=job.pk).update(state="succeeded")
    assert quotas.usage(alpha).backup_gib == 5  # 0.5 + 1 + 3 GiB, rounded up


def test_it_refuses_growth_within_a_maximum_while_the_project_is_over_its_quota(alpha):
    quota = quotas.quota_of(alpha)
    quota.vcpus = 2  # lowered below the 3 vCPUs its VMs may use
    quota.save()

    with pytest.raises(QuotaExceeded) as refused, transaction.atomic():
        quotas.reserve(alpha, growing=("vcpus",))
    assert "uses 3 vCPUs of 2 allowed" in refused.value.message
    assert "nothing may grow" in refused.value.message
    with transaction.atomic():
        quotas.reserve(alpha, growing=("memory_mib",))  # within its memory quota


def test_it_shows_use_against_limits_on_the_project_page_and_in_the_api(alpha, client_for, api_for):
    spans = texts(client_for("viewer").get(f"/projects/{alpha.pk}/"), "//div[@data-quota]//span")
    api = api_for("viewer").get(f"/api/v1/projects/{alpha.pk}/").json()

    assert dict(zip(spans[::2], spans[1::2], strict=True)) == {
        "VMs": "2 of 3",
        "vCPUs": "3 of 4",
        "memory (MiB)": "1536 of 2048",
        "disk (GiB)": "2 of 10",
        "backups and snapshots (GiB)": "0 of no limit",
    }
    assert api["usage"] == {
        "vms": 2,
        "vcpus": 3,
        "memory_mib": 1536,
        "disk_gib": 2,
        "backup_gib": 0,
    }
    assert api["quota"] == {
        "vms": 3,
        "vcpus": 4,
        "memory_mib": 2048,
        "disk_gib": 10,
        "backup_gib": None,
    }


def test_it_reserves_up_to_exactly_the_limit(alpha):
    with transaction.atomic():
        current = quotas.reserve(alpha, vms=1, vcpus=1, memory_mib=512, disk_gib=8)

    assert current == Usage(vms=2, vcpus=3, memory_mib=1536, disk_gib=2)


@pytest.mark.parametrize(
    ("wanted", "says"),
    [
        ({"vms": 2}, "VMs would be 4 of 3 allowed (2 in use, 2 requested)"),
        ({"vcpus": 2}, "vCPUs would be 5 of 4 allowed (3 in use, 2 requested)"),
        (
            {"memory_mib": 1024},
            "memory (MiB) would be 2560 of 2048 allowed (1536 in use, 1024 requested)",
        ),
        ({"disk_gib": 9}, "disk (GiB) would be 11 of 10 allowed (2 in use, 9 requested)"),
    ],
)
def test_it_refuses_past_a_limit_naming_the_quota_and_the_numbers(alpha, wanted, says):
    with pytest.raises(QuotaExceeded) as refused, transaction.atomic():
        quotas.reserve(alpha, **wanted)

    assert refused.value.status_code == 403
    assert refused.value.message.startswith(f"Quota exceeded for project alpha: {says}.")
    assert "ask an admin to raise the quota" in refused.value.message


def test_it_does_not_limit_a_project_without_a_quota(beta):
    with transaction.atomic():
        quotas.reserve(beta, vms=100, vcpus=1000, memory_mib=10**6, disk_gib=10**4)


def test_it_follows_a_raised_quota_at_once(alpha, admin):
    services.update_project(alpha, quota={"vcpus": 8}, actor=Actor(admin))

    with transaction.atomic():
        quotas.reserve(alpha, vcpus=5)
    assert quotas.limits(alpha)["vcpus"] == 8


@pytest.mark.sqlite
def test_it_lets_exactly_the_quota_win_when_eight_requests_race(transactional_db, world, admin):
    project = services.create_project(name="race", quota={"vms": 3}, actor=Actor(admin))
    host = world.teams["alpha"].host
    barrier = threading.Barrier(RACERS)
    outcomes: list[object] = [None] * RACERS

    def create(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                quotas.reserve(project, vms=1, vcpus=1, memory_mib=128)
                VirtualMachine.objects.create(
                    id=uuid.uuid4(),
                    name=f"race-{i}",
                    host=host,
                    project=project,
                    vcpus=1,
                    memory_mib=128,
                )
            outcomes[i] = "created"
        except Exception as exc:  # every outcome is asserted below
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    other = [o for o in outcomes if o != "created" and not isinstance(o, QuotaExceeded)]
    assert other == [], f"neither created nor refused by the quota: {other!r}"
    assert outcomes.count("created") == 3, outcomes
    assert len(refused) == RACERS - 3
    assert all(re.search(r"VMs would be 4 of 3 allowed", e.message) for e in refused)
    assert VirtualMachine.objects.filter(project=project).count() == 3
    assert quotas.usage(project).vms == 3
