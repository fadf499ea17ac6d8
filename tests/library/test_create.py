"""VMs made from the image library on the real libvirtd: a cloud image fetched from the
mirror on loopback becomes the backing file of a new VM's disk, for the project it is
shared with, through the API and the wizard."""

from __future__ import annotations

import json

import pytest
from lxml import etree

from panel.actors import Actor
from panel.models import Job, Membership
from storage import services
from storage.models import LibraryImage, Volume
from storage.tasks import library_fetch_task
from tests.library.conftest import IMAGE
from tests.storage.conftest import virsh
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


@pytest.fixture
def library_image(dir_pool, mirror, admin_user, project) -> LibraryImage:
    """The tiny cloud image in the library, private to project alpha."""
    spec = services.ImageSpec(name=IMAGE, kind="cloud", projects=(project,))
    image = services.add_from_url(
        dir_pool,
        spec,
        url=mirror.url(IMAGE),
        sums_url=mirror.url("SHA256SUMS"),
        actor=Actor(admin_user),
    )
    library_fetch_task(image.job_id)
    image.refresh_from_db()
    assert image.state == "ready", Job.objects.get(pk=image.job_id).log
    return image


@pytest.fixture
def operator_client(client, plain_user, project):
    Membership.objects.create(user=plain_user, project=project, role="operator")
    client.force_login(plain_user)
    return client


def request_for(name: str, project, pool, image: LibraryImage) -> dict:
    return {
        "name": name,
        "project": project.pk,
        "memory_mib": 128,
        "disks": [{"pool": pool.pk, "size_gib": 0.05}],
        "install": {
            "method": "cloud-image",
            "library_image": image.pk,
            "cloud_init": {"user_data": "#cloud-config\n{}\n"},
        },
        "start": False,
    }


def overlay_backing(vm_id: str) -> str:
    root = etree.fromstring(virsh("dumpxml", "--inactive", vm_id).encode())
    overlay = root.find("./devices/disk[@device='disk']/source").get("file")
    return etree.fromstring(virsh("vol-dumpxml", overlay).encode()).findtext("./backingStore/path")


def test_a_project_member_creates_a_vm_on_a_private_library_image(
    operator_client, host_facts, dir_pool, library_image, project, created
):
    created.append("lib1")
    response = operator_client.post(
        "/api/v1/vms/",
        json.dumps(request_for("lib1", project, dir_pool, library_image)),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    vm_create_task(response.json()["job"])
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == "succeeded", job.log
    image_path = Volume.objects.get(pk=library_image.volume_id).path
    assert overlay_backing(response.json()["id"]) == image_path


def test_the_wizard_offers_the_library_image_and_creates_from_it(
    admin_client, host_facts, dir_pool, library_image, project, created
):
    page = admin_client.get("/vms/new/")
    assert f'value="library:{library_image.pk}"' in page.content.decode()
    form = {
        "name": "lib2",
        "project": project.pk,
        "host": host_facts.pk,
        "memory_mib": 128,
        "vcpus": 1,
        "disk_pool": dir_pool.pk,
        "disk_size_gib": "0.05",
        "method": "cloud-image",
        "image_volume": f"library:{library_image.pk}",
        "linked": "1",
        "ci_mode": "simple",
        "ci_user": "cloud",
        "ci_password": "secret-pass",
    }
    # A refused form comes back with the library image still chosen.
    again = admin_client.post("/vms/new/", {**form, "vcpus": "many"})
    assert again.status_code == 400 and "vCPUs" in again.content.decode()
    assert f'value="library:{library_image.pk}" selected' in again.content.decode()
    created.append("lib2")
    response = admin_client.post("/vms/new/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    job = Job.objects.filter(kind="vm.create").latest("pk")
    vm_create_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.log
    image_path = Volume.objects.get(pk=library_image.volume_id).path
    assert overlay_backing(job.result["vm"]) == image_path
