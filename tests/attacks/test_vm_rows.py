"""Attacks on the VM list's live socket: following VMs of another project.

The VM list opens one websocket, ``/ws/vm-rows/?ids=<uuid>,...``, that names the VMs its
rows show, and gets their state changes. The ids are in the page, so a hostile member can
put any VM's id there: one learned from an audit log, a job target, or guessed from an
earlier list. Were the socket to follow whatever ids it is given, a member of one project
would watch another's VMs start, stop and change address.

What the panel does: the socket follows only the ids the user may see (checked when it
opens, and again at each access check), passes on a change only when the VM's project is
one of the user's, closes with 4404 when none of the ids is theirs, and with 4400 when the
query is not a list of at most 100 VM ids.
"""

from __future__ import annotations

import json

import pytest

from panel import hypervisor
from tests.conftest import LOCAL_URI
from tests.stack import refusal
from vms import services as vm_services
from vms.models import VirtualMachine

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def changed_on_host(vm: VirtualMachine) -> None:
    """The guest started behind the panel's back and the watcher's sync of it: what pushes
    the VM's change to every list that shows it."""
    info = hypervisor.start_domain(LOCAL_URI, str(vm.pk))
    vm_services.sync_domain(vm.host, info)


def test_a_member_cannot_follow_another_projects_vms(attacker, make_vm, beta, local_host):
    theirs = make_vm()  # alpha's
    ours = make_vm()
    VirtualMachine.objects.filter(pk=ours.pk).update(project=beta)
    outsider = attacker("outsider")  # a member of beta

    with outsider.ws(f"/ws/vm-rows/?ids={theirs.pk},{ours.pk}") as ws:
        watching = json.loads(ws.recv(timeout=10))
        changed_on_host(theirs)
        changed_on_host(ours)
        pushed = [json.loads(ws.recv(timeout=30))]
        while pushed[-1]["vm"]["id"] != str(ours.pk):
            pushed.append(json.loads(ws.recv(timeout=30)))

    assert watching == {"type": "vms.watch", "vms": [str(ours.pk)]}
    assert {m["vm"]["id"] for m in pushed} == {str(ours.pk)}
    assert pushed[-1]["vm"]["state"] == "running"
    # Only the other project's ids: nothing to follow.
    assert refusal(outsider.stack, f"/ws/vm-rows/?ids={theirs.pk}", outsider.sessionid) == (
        "close 4404"
    )
    # The alpha member who owns it does get it.
    member = attacker("member")
    with member.ws(f"/ws/vm-rows/?ids={theirs.pk},{ours.pk}") as ws:
        assert json.loads(ws.recv(timeout=10))["vms"] == [str(theirs.pk)]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?ids=",
        "?ids=../../hosts/1",
        "?ids=1%20or%201=1",
        "?ids=" + ",".join(f"00000000-0000-4000-8000-{n:012d}" for n in range(101)),
    ],
    ids=["none", "empty", "path", "sql", "too-many"],
)
def test_a_socket_asked_for_what_is_not_a_list_of_vm_ids_closes(attacker, query):
    admin = attacker("admin")

    assert refusal(admin.stack, f"/ws/vm-rows/{query}", admin.sessionid) == "close 4400"
