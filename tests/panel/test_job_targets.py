"""Jobs name what they act on, linked to its page: the job list and a job's page show a
VM, a volume or a host by name rather than its raw target, and no link to what a job
deleted or has not made yet."""

from __future__ import annotations

import uuid

import pytest
from lxml import html

from panel.models import Host, Job


@pytest.fixture
def jobs_of_each_kind(db):
    host = Host.objects.create(name="kvm7", uri="test:///default")
    vm, gone, unmade = (str(uuid.uuid4()) for _ in range(3))
    return {
        "snapshot": Job.objects.create(
            kind="vm.snapshot.delete",
            target=f"vm:{vm}",
            state="succeeded",
            result={"vm_name": "web1"},
        ),
        "deleted": Job.objects.create(
            kind="vm.delete", target=f"vm:{gone}", state="succeeded", result={"vm_name": "old1"}
        ),
        "creating": Job.objects.create(
            kind="vm.create", target=f"vm:{unmade}", result={"vm_name": "new1"}
        ),
        "wipe": Job.objects.create(
            kind="volume.wipe", target="volume:42", result={"volume_name": "data.qcow2"}
        ),
        "refresh": Job.objects.create(kind="host.refresh", target="host:kvm7", host=host),
        "ids": {"vm": vm, "host": host.pk},
    }


def target_cells(admin_client) -> dict[str, tuple[str, str | None]]:
    """{text: href or None} of the Target column of the job list."""
    page = html.fromstring(admin_client.get("/jobs/").content)
    cells = {}
    for cell in page.xpath("//main//table//tr/td[3]"):
        link = cell.find("a")
        cells[cell.text_content().strip()] = link.get("href") if link is not None else None
    return cells


def test_the_job_list_names_and_links_each_target(jobs_of_each_kind, admin_client):
    ids = jobs_of_each_kind["ids"]
    assert target_cells(admin_client) == {
        "web1": f"/vms/{ids['vm']}/",
        "old1 (deleted)": None,
        "new1": None,
        "data.qcow2": "/storage/volumes/42/",
        "kvm7": f"/hosts/{ids['host']}/",
    }


def test_a_jobs_page_links_its_target(jobs_of_each_kind, admin_client):
    job = jobs_of_each_kind["snapshot"]
    page = html.fromstring(admin_client.get(f"/jobs/{job.pk}/").content)
    (link,) = page.xpath("//p[contains(@class, 'text-body-secondary')]/a")
    assert (link.text, link.get("href")) == ("web1", f"/vms/{jobs_of_each_kind['ids']['vm']}/")


def test_the_job_list_shows_fifty_jobs_a_page_newest_first(admin_client, db):
    made = [Job.objects.create(kind="host.refresh", target=f"host:kvm{n}").pk for n in range(60)]

    first = html.fromstring(admin_client.get("/jobs/").content)
    second = html.fromstring(admin_client.get("/jobs/?page=2").content)

    def ids(page) -> list[int]:
        return [int(a.text_content()) for a in page.xpath("//main//table//tr/td[1]//a")]

    assert ids(first) + ids(second) == sorted(made, reverse=True)
    assert len(ids(first)) == 50
    assert first.xpath("//nav[@aria-label='Pages']//a/@href") == ["?page=2"]
