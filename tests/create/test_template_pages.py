"""The admins' template page and the easy form, as users see them."""

from __future__ import annotations

import pytest

from panel.actors import Actor
from storage import services as storage_services
from tests.panel.conftest import page_text
from vms.models import Template

pytestmark = [pytest.mark.libvirt]


def test_an_admin_adds_a_template_and_a_member_sees_it_in_the_easy_form(
    admin_client, admin_user, plain_user, client, dir_pool, project
):
    from panel.models import Membership

    image = storage_services.create_volume(
        dir_pool, name="img.qcow2", capacity_gib=0.01, actor=Actor(admin_user)
    )
    response = admin_client.post(
        "/vms/templates/",
        {
            "name": "small-debian",
            "source": "cloud-image",
            "image": image.pk,
            "os_variant": "generic",
            "vcpus": "1",
            "memory_mib": "512",
            "disk_gib": "5",
            "max_vcpus": "2",
            "max_memory_mib": "2048",
            "max_disk_gib": "20",
            "projects": [project.pk],
            "pools": [dir_pool.pk],
        },
    )
    assert response.status_code == 302
    template = Template.objects.get(name="small-debian")
    assert list(template.projects.all()) == [project]
    text = page_text(admin_client.get("/vms/templates/"))
    assert "Template small-debian saved." in text
    assert "1 vCPU, 512 MiB, 5 GiB" in text and "2 vCPU, 2048 MiB, 20 GiB" in text

    refused = admin_client.post("/vms/templates/", {"name": "x", "source": "cloud-image"})
    assert refused.status_code == 400
    assert "Choose the image volume." in page_text(refused)

    Membership.objects.create(user=plain_user, project=project, role="member")
    client.force_login(plain_user)
    assert client.get("/vms/templates/").status_code == 403
    assert client.get("/vms/new/").url == "/vms/new/from-template/"
    assert "small-debian — 1 vCPU, 512 MiB, 5 GiB (up to 20 GiB)" in page_text(
        client.get("/vms/new/from-template/")
    )
