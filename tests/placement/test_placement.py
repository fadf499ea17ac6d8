"""Placement without a host named: spread or pack by free memory, hosts that lack what the
request names or are in maintenance left out with their reason, and affinity groups; and a
restore into a host in maintenance refused."""

from __future__ import annotations

from uuid import uuid4

import pytest

from panel.actors import Actor
from panel.choices import HostState
from panel.exceptions import ConflictError
from panel.models import Host
from storage.models import StoragePool
from tests.placement.conftest import facts
from vms.models import AffinityGroup, Backup, VirtualMachine
from vms.services import placement, restores

pytestmark = pytest.mark.django_db


@pytest.fixture
def hosts(db):
    """Three hosts of libvirt's test driver: a with 2 GiB free, b with 6, c with 4."""
    made = {}
    for name, free in (("a", 2), ("b", 6), ("c", 4)):
        host = Host.objects.create(
            name=name, uri=f"test:///default#{name}", state=HostState.UP, domain_type="test"
        )
        made[name] = facts(host, free)
    return made


def pick(user, need):
    found = placement.place(user, need)
    return found.host.name if found.host else found.refusal()


def test_it_spreads_to_the_most_free_memory_and_packs_into_the_least_that_fits(
    settings, hosts, admin
):
    need = placement.Need(memory_mib=3 * 1024, vcpus=2)
    assert pick(admin, need) == "b"
    settings.PANEL_PLACEMENT = "pack"
    # a has 2 GiB free: too little for 3 GiB; c is the fullest that fits.
    assert pick(admin, need) == "c"
    assert pick(admin, placement.Need(memory_mib=512, vcpus=1)) == "a"


def test_spread_breaks_a_tie_by_the_fewest_vms(hosts, admin, alpha):
    facts(hosts["c"], 6)
    VirtualMachine.objects.create(
        pk=uuid4(), name="one", host=hosts["b"], project=alpha, state="running"
    )
    assert pick(admin, placement.Need(memory_mib=512, vcpus=1)) == "c"


def test_a_refusal_says_why_each_host_was_left_out(hosts, admin):
    hosts["a"].maintenance = True
    hosts["a"].save()
    hosts["c"].state = HostState.DOWN
    hosts["c"].save()
    need = placement.Need(
        memory_mib=8 * 1024, vcpus=8, holdings=(placement.Holding("pool 'images'", hosts["b"].pk),)
    )
    assert pick(admin, need) == (
        "No host can take it (host a: in maintenance; host b: 4 CPUs, 8 vCPUs asked; host c: down)."
    )
    need = placement.Need(memory_mib=8 * 1024, vcpus=1, holdings=need.holdings)
    assert "host b: 6144 MiB free, 8192 MiB needed" in pick(admin, need)
    facts(hosts["c"], 10)
    hosts["c"].state = HostState.UP
    hosts["c"].save()
    assert "host c: no pool 'images'" in pick(admin, need)


def test_apart_keeps_a_group_on_different_hosts_and_together_on_one(hosts, admin, alpha):
    web1 = VirtualMachine.objects.create(pk=uuid4(), name="web1", host=hosts["b"], project=alpha)
    apart = AffinityGroup.objects.create(project=alpha, name="web", kind="apart")
    apart.vms.add(web1)
    need = placement.Need(memory_mib=512, vcpus=1, groups=(apart,))
    assert pick(admin, need) == "c"
    together = AffinityGroup.objects.create(project=alpha, name="db", kind="together")
    together.vms.add(web1)
    need = placement.Need(memory_mib=512, vcpus=1, groups=(together,))
    assert pick(admin, need) == "b"
    # Both: nowhere.
    need = placement.Need(memory_mib=512, vcpus=1, groups=(apart, together))
    assert "host b: runs web1 of group 'web' (kept apart)" in pick(admin, need)
    assert "host c: group 'db' keeps its VMs together on another host" in pick(admin, need)


def test_a_restore_into_a_host_in_maintenance_is_refused(hosts, admin, alpha):
    source, target = hosts["a"], hosts["b"]
    vm = VirtualMachine.objects.create(pk=uuid4(), name="db", host=source, project=alpha)
    kept = StoragePool.objects.create(host=source, name="backups", type="dir", state="active")
    there = StoragePool.objects.create(host=target, name="images", type="dir", state="active")
    backup = Backup.objects.create(
        vm=vm, vm_uuid=vm.pk, vm_name=vm.name, project=alpha, host=source, pool=kept, state="good"
    )
    target.maintenance = True
    target.save()
    with pytest.raises(ConflictError) as refused:
        restores.restore_backup(backup, name="db2", pool=there, actor=Actor(admin))
    assert refused.value.message == (
        "b is in maintenance and takes no new VMs: restore to another host, or ask an admin "
        "to make it active again."
    )
