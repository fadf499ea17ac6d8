"""Attacks on what the pages now show around the content: the sidebar's resource tree,
the task panel, and tags.

A hostile user of another project (or a viewer) tries to learn about VMs that are not
theirs through the side doors the new pages open: a host's branch of the tree, the task
panel's rows, a tag filter guessed on the VM list or the API, the palette's search; and to
change a VM's tags without the right.

What the panel does: every one of those reads goes through the permission module. A
branch lists only the VMs, pools and networks the user may see (404 for a host they may
not see), the task panel only their jobs, a tag filter only narrows the VMs they already
see; setting tags is a change like any other (404 out of scope, 403 for a viewer), and a
refused change leaves the tags as they were.
"""

from __future__ import annotations

import pytest

from panel import jobs
from panel.actors import Actor
from panel.choices import JobKind
from vms.models import VirtualMachine
from vms.services.tags import set_vm_tags

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(240)]

SECRET = "secret-prod"


@pytest.fixture
def tagged(make_vm, people):
    """alpha's VM (a real tiny guest) tagged SECRET, with a job of alpha's on it."""
    vm = make_vm()
    set_vm_tags(vm, [SECRET], actor=Actor(people["member"]))
    job = jobs.create_job(
        JobKind.VM_SNAPSHOT_CREATE,
        target=f"vm:{vm.pk}",
        actor=Actor(people["member"]),
        project=vm.project,
    )
    job.result = {"vm_name": vm.name}
    job.save(update_fields=["result"])
    return VirtualMachine.objects.get(pk=vm.pk)


def test_an_outsider_learns_nothing_of_anothers_vm_through_tree_panel_tags_or_search(
    attacker, tagged, local_host
):
    outsider = attacker("outsider")

    branch = outsider.page(f"/vms/tree/hosts/{local_host.pk}/")
    listed = outsider.page(f"/vms/?tag={SECRET}")
    api = outsider.api("GET", f"vms/?tag={SECRET}")
    searched = outsider.api("GET", f"vms/?search={tagged.name}")
    panel = outsider.page("/jobs/panel/")

    assert branch.status_code in (200, 404)
    assert tagged.name not in branch.text
    assert listed.status_code == 200 and tagged.name not in listed.text
    assert api.status_code == 200 and api.json()["count"] == 0
    assert searched.status_code == 200 and searched.json()["count"] == 0
    assert (
        panel.status_code == 200
        and tagged.name not in panel.text
        and str(tagged.pk) not in panel.text
    )
    # A member of the VM's project does see it everywhere (the checks above can fail).
    member = attacker("member")
    assert tagged.name in member.page(f"/vms/?tag={SECRET}").text
    assert tagged.name in member.page("/jobs/panel/").text


def test_tags_are_changed_only_with_the_right_to_change_the_vm(attacker, tagged):
    outsider, viewer = attacker("outsider"), attacker("viewer")

    form = outsider.post_form(f"/vms/{tagged.pk}/tags/", {"tags": "mine"})
    api = outsider.api("PATCH", f"vms/{tagged.pk}/", json={"tags": ["mine"]})
    # The viewer's page form is refused 403 too (the security matrix); over HTTP the API:
    viewers = viewer.api("PATCH", f"vms/{tagged.pk}/", json={"tags": ["mine"]})

    assert (form.status_code, api.status_code, viewers.status_code) == (404, 404, 403)
    assert VirtualMachine.objects.get(pk=tagged.pk).tags == [SECRET]
