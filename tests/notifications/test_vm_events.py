"""The watcher on the real libvirtd: a running tiny guest destroyed outside the panel
(virsh) is told to the subscribers who see it as stopped outside the panel; one the panel
powers off itself is not."""

from __future__ import annotations

import pytest

from panel.actors import Actor
from panel.choices import NotificationKind
from panel.models import Notification
from tests.vms.conftest import virsh, wait_for
from vms.services import perform_action

from .conftest import subscribe

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def titles(user) -> list[str]:
    return list(Notification.objects.filter(user=user).values_list("title", flat=True))


def test_it_tells_a_vm_destroyed_outside_the_panel_to_those_who_see_it(watcher, make_vm, people):
    member, outsider = people["member"], people["outsider"]
    subscribe(member, NotificationKind.VM_STOPPED, NotificationKind.VM_CRASHED)
    subscribe(outsider, NotificationKind.VM_STOPPED, NotificationKind.VM_CRASHED)
    vm = make_vm(running=True)

    virsh("destroy", str(vm.pk))

    assert wait_for(lambda: titles(member), timeout=60), "no notification reached the member"
    [note] = Notification.objects.filter(user=member)
    assert note.title == f"VM {vm.name} was stopped outside the panel"
    assert note.body == (
        f"{vm.name} on local stopped without a request through the panel. "
        "It was powered off by another tool (virsh destroy or the like)."
    )
    assert (note.link, note.target) == (f"/vms/{vm.pk}/", f"vm:{vm.pk}")
    assert titles(outsider) == []


def test_it_says_nothing_of_a_vm_the_panel_powered_off_itself(watcher, make_vm, people):
    member = people["member"]
    subscribe(member, NotificationKind.VM_STOPPED)
    by_panel, outside = make_vm(running=True), make_vm(running=True)

    perform_action(by_panel, "force-off", actor=Actor(member))
    # The watcher applies events in order: once the second stop is told, the first
    # one was seen, and passed over.
    virsh("destroy", str(outside.pk))

    assert wait_for(lambda: titles(member), timeout=60), "no notification reached the member"
    assert titles(member) == [f"VM {outside.name} was stopped outside the panel"]
