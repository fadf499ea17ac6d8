"""The image library on the running stack: an admin adds a cloud image from the mirror on
loopback through the API, the real Celery worker fetches it into a pool of qemu:///system
and verifies it by the SUMS file; a wrong checksum fails the job and leaves no volume;
then a VM is created from the image (the worker's create job) with the image as the
backing file of its disk."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from lxml import etree

from panel import services as panel_services
from panel.actors import Actor
from panel.models import Job
from storage.models import LibraryImage, Volume
from tests.create.conftest import volumes_in
from tests.library.conftest import IMAGE
from tests.storage.conftest import virsh
from tests.vms.conftest import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


@pytest.fixture
def api(stack, transactional_db, admin_user):
    token = panel_services.create_token(admin_user, actor=Actor(admin_user)).key

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"{stack.url}/api/v1/{path}",
            headers={"Authorization": f"Token {token}"},
            timeout=60,
            **kwargs,
        )

    return call


def finished(job_id: int) -> Job:
    assert wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=180)
    return Job.objects.get(pk=job_id)


def add(api, pool, mirror, **body: Any) -> dict:
    response = api(
        "POST",
        "library-images/",
        json={"kind": "cloud", "pool": pool.pk, "url": mirror.url(IMAGE), **body},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_the_worker_fetches_an_image_verified_by_its_sums_file_and_a_vm_is_made_from_it(
    api, dir_pool, stack_mirror, project, local_host, created
):
    added = add(api, dir_pool, stack_mirror, sums_url=stack_mirror.url("SHA256SUMS"), public=True)
    assert added["state"] == "fetching"
    job = finished(added["job"])
    assert job.state == "succeeded", job.log
    image = api("GET", f"library-images/{added['id']}/").json()
    assert image["state"] == "ready" and image["sha256"] == stack_mirror.sha256
    assert IMAGE in volumes_in(dir_pool.name)

    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 << 30, "memory_free_bytes": 4 << 30}
    local_host.save()
    created.append("libvm")
    response = api(
        "POST",
        "vms/",
        json={
            "name": "libvm",
            "project": project.pk,
            "memory_mib": 128,
            "disks": [{"pool": dir_pool.pk, "size_gib": 0.05}],
            "install": {"method": "cloud-image", "library_image": added["id"]},
            "start": False,
        },
    )
    assert response.status_code == 202, response.text
    job = finished(response.json()["job"])
    assert job.state == "succeeded", job.log
    root = etree.fromstring(virsh("dumpxml", "--inactive", response.json()["id"]).encode())
    overlay = root.find("./devices/disk[@device='disk']/source").get("file")
    backing = etree.fromstring(virsh("vol-dumpxml", overlay).encode())
    assert backing.findtext("./backingStore/path") == Volume.objects.get(pk=image["volume"]).path


def test_a_wrong_checksum_fails_the_fetch_and_leaves_no_volume(api, dir_pool, stack_mirror):
    wrong = "ab" * 32
    added = add(api, dir_pool, stack_mirror, sha256=wrong)
    job = finished(added["job"])
    assert job.state == "failed"
    assert f"is {stack_mirror.sha256}, but {wrong} was expected" in job.message
    assert LibraryImage.objects.get(pk=added["id"]).state == "failed"
    assert IMAGE not in volumes_in(dir_pool.name)
    assert not Volume.objects.filter(pool=dir_pool, name=IMAGE).exists()
