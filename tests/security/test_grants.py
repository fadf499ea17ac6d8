"""A VM that vanishes from its host keeps who may use it: project, owner and the members
an operator granted it stay on the row (as missing), and come back with the domain,
so a sync never hands a VM to nobody (or to everybody)."""

from __future__ import annotations

from panel import hypervisor
from panel.services.hosts import reconcile_host
from vms import services as vm_services
from vms.models import VirtualMachine


def test_it_keeps_a_vanished_vms_project_owner_and_grants(world, client_for):
    team = world.teams["beta"]  # kvm-beta is test:///default, a hypervisor that answers
    reconcile_host(team.host, checks=False)
    vm = VirtualMachine.objects.filter(host=team.host, name="test").get()
    vm.project, vm.owner = team.project, world.users["outsider"]
    vm.save()
    vm.granted_users.add(world.users["member"])
    domains = hypervisor.list_domains(team.host.uri)

    vm_services.sync_domains(team.host, [])  # the host reports no domain at all
    gone = VirtualMachine.objects.get(pk=vm.pk)
    seen_while_gone = client_for("outsider").get(f"/vms/{vm.pk}/").status_code
    vm_services.sync_domains(team.host, domains)  # and then it is back
    back = VirtualMachine.objects.get(pk=vm.pk)

    assert gone.state == "missing"
    assert (gone.project, gone.owner) == (team.project, world.users["outsider"])
    assert list(gone.granted_users.all()) == [world.users["member"]]
    assert seen_while_gone == 200
    assert back.state == "running"
    assert (back.project, back.owner) == (team.project, world.users["outsider"])
    assert list(back.granted_users.all()) == [world.users["member"]]
    assert client_for("viewer").get(f"/vms/{vm.pk}/").status_code == 404
