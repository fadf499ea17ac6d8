"""Attacks on HA.

A tenant who could confirm a host off would have the panel start that host's HA VMs
elsewhere while they still run there: their disks used twice, other projects' VMs
among them. One who could change a host's fencing could turn it off (no VM of that host
would ever be restarted) or on. One who could mark another project's VM HA would
change where that VM runs, and learn that it exists.

What the panel does: fencing and the confirmation are admins' alone (403 to the members
of a project that uses the host, 404 to those who do not see it) and change nothing; a
VM is marked HA only by those with the right to change its CPU and memory (a viewer:
403; another project: 404, as if it did not exist).
"""

from __future__ import annotations

import pytest

from panel import services
from panel.actors import Actor
from panel.models import AuditEvent, Host, Job
from vms.models import VirtualMachine

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def test_a_tenant_cannot_confirm_a_host_off_or_change_its_fencing(
    attacker, beta, local_host, make_vm
):
    vm = make_vm(running=False)
    VirtualMachine.objects.filter(pk=vm.pk).update(ha=True, ha_definition="<domain/>")
    Host.objects.filter(pk=local_host.pk).update(fencing="manual")
    operator, outsider = attacker("operator"), attacker("outsider")
    alpha_only = Host.objects.create(name="alpha-only", uri="test:///default", state="up")
    beta.allowed_hosts.set([local_host])

    for who in (operator, outsider):
        host = local_host.pk
        assert who.api("POST", f"hosts/{host}/confirm-off/").status_code == 403, who.name
        response = who.api("POST", f"hosts/{host}/fencing/", json={"fencing": ""})
        assert response.status_code == 403, (who.name, response.text)
    # A host the outsider's project may not use: not even its existence.
    assert outsider.api("POST", f"hosts/{alpha_only.pk}/confirm-off/").status_code == 404
    assert outsider.api("POST", f"hosts/{alpha_only.pk}/fencing/").status_code == 404

    local_host.refresh_from_db()
    assert (local_host.fencing, local_host.fenced_at) == ("manual", None)
    assert not Job.objects.filter(kind="vm.ha_restart").exists()
    assert not AuditEvent.objects.filter(action__startswith="host.", result="success").exists()


def test_a_tenant_cannot_mark_another_projects_vm_ha(attacker, people, beta, make_vm):
    theirs = make_vm(running=False)  # alpha's
    services.add_member(
        beta, user=people["outsider"], role="operator", actor=Actor(people["admin"])
    )
    outsider, viewer = attacker("outsider"), attacker("viewer")

    response = outsider.api("POST", f"vms/{theirs.pk}/ha/", json={"enabled": True})
    assert response.status_code == 404, response.text
    assert theirs.name not in response.text
    assert outsider.post_form(f"/vms/{theirs.pk}/ha/", {"ha": "on"}).status_code == 404
    # alpha's viewer sees the VM but may not change it.
    assert viewer.api("POST", f"vms/{theirs.pk}/ha/", json={"enabled": True}).status_code == 403

    theirs.refresh_from_db()
    assert (theirs.ha, theirs.ha_definition) == (False, "")
    assert not AuditEvent.objects.filter(action="vm.ha", result="success").exists()
