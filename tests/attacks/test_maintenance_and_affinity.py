"""Attacks on maintenance and affinity groups.

A tenant who could drain a host would move every VM on it, other projects' included, and
shut the host to new VMs; one who could end a maintenance would let VMs onto a host an
admin is working on. A tenant who could put another project's VM into their own
affinity group would steer where that VM may run (an "apart" group keeps it off a host,
a "together" group pins it) and learn, from the answers, that it exists; naming another
project's group at create would do the same through placement.

What the panel does: drains, drain plans and activation are admins' alone (403 to the
members of a project that uses the host, 404 to those who do not see it), and change
nothing; a group takes only VMs of its own project (another project's VM is 404, as if
it did not exist) and a create names only groups of its own project (400).
"""

from __future__ import annotations

import pytest

from panel import services
from panel.actors import Actor
from panel.models import AuditEvent, Host, Job
from tests.placement.conftest import kernel_vm
from vms.models import AffinityGroup

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def test_a_tenant_cannot_drain_a_host_or_end_its_maintenance(attacker, beta, local_host, make_vm):
    make_vm(running=False)
    operator, outsider = attacker("operator"), attacker("outsider")
    host = local_host.pk
    # beta's members see the local host alone, not this one.
    alpha_only = Host.objects.create(name="alpha-only", uri="test:///default", state="up")
    beta.allowed_hosts.set([local_host])

    for who in (operator, outsider):
        for method, path in (
            ("GET", f"hosts/{host}/drain-plan/"),
            ("POST", f"hosts/{host}/drain/"),
            ("POST", f"hosts/{host}/activate/"),
        ):
            assert who.api(method, path).status_code == 403, (who.name, path)
    # A host the outsider's project may not use: not even its existence.
    assert outsider.api("GET", f"hosts/{alpha_only.pk}/drain-plan/").status_code == 404
    assert outsider.api("POST", f"hosts/{alpha_only.pk}/drain/").status_code == 404

    local_host.refresh_from_db()
    assert local_host.maintenance is False
    assert not Job.objects.filter(kind="host.drain").exists()
    assert not AuditEvent.objects.filter(action__startswith="host.", result="success").exists()


def test_a_group_takes_no_vm_of_another_project(attacker, people, alpha, beta, make_vm):
    theirs = make_vm(running=False)  # alpha's
    # The outsider runs beta: its operator, who may change beta's groups.
    services.add_member(
        beta, user=people["outsider"], role="operator", actor=Actor(people["admin"])
    )
    outsider = attacker("outsider")
    group = outsider.api("POST", "affinity-groups/", json={"project": beta.pk, "name": "mine"})
    assert group.status_code == 201, group.text
    group_id = group.json()["id"]

    response = outsider.api("POST", f"affinity-groups/{group_id}/add/", json={"vm": str(theirs.pk)})
    assert response.status_code == 404, response.text
    assert theirs.name not in response.text
    # A group of alpha's, and alpha's own group, stay out of reach.
    alpha_group = AffinityGroup.objects.create(project=alpha, name="web")
    for method, path in (
        ("GET", f"affinity-groups/{alpha_group.pk}/"),
        ("POST", f"affinity-groups/{alpha_group.pk}/add/"),
        ("DELETE", f"affinity-groups/{alpha_group.pk}/"),
    ):
        assert outsider.api(method, path, json={"vm": str(theirs.pk)}).status_code == 404
    # A group made in a project the attacker is not in.
    response = outsider.api("POST", "affinity-groups/", json={"project": alpha.pk, "name": "x"})
    assert response.status_code == 400 and "project" in response.text
    # A create in alpha naming beta's group (alpha's operator).
    response = attacker("operator").api(
        "POST", "vms/", json=kernel_vm(alpha, "sneak", affinity_group=group_id)
    )
    assert response.status_code == 400, response.text
    assert "affinity_group" in response.text and "mine" not in response.text

    assert list(AffinityGroup.objects.get(pk=group_id).vms.all()) == []
    assert list(alpha_group.vms.all()) == []
    assert AffinityGroup.objects.filter(pk=alpha_group.pk).exists()
