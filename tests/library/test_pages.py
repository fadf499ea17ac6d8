"""The library's pages on the real libvirtd: an admin adds an image from a URL and from a
volume, the list searches, members see what is theirs, and removing an image removes
its volume."""

from __future__ import annotations

import pytest

from panel.actors import Actor
from panel.models import Membership
from storage import services
from storage.models import LibraryImage, Volume
from storage.tasks import library_fetch_task
from tests.create.conftest import volumes_in
from tests.library.conftest import IMAGE

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def test_an_admin_adds_an_image_from_a_url_on_the_page(admin_client, dir_pool, mirror):
    response = admin_client.post(
        "/storage/library/add/",
        {
            "kind": "cloud",
            "url": mirror.url(IMAGE),
            "pool": dir_pool.pk,
            "sha256": mirror.sha256,
            "os_variant": "debian12",
            "public": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[-1500:]
    image = LibraryImage.objects.get(name=IMAGE)
    assert response["Location"] == f"/storage/library/{image.pk}/"
    assert b"Library image fetch" in admin_client.get(response["Location"]).content
    library_fetch_task(image.job_id)
    page = admin_client.get(response["Location"]).content.decode()
    assert "Ready" in page and mirror.sha256 in page and "debian12" in page


def test_a_bad_url_is_shown_on_the_form_and_adds_nothing(admin_client, dir_pool, mirror):
    response = admin_client.post(
        "/storage/library/add/",
        {"kind": "cloud", "url": "ftp://example.org/a.qcow2", "pool": dir_pool.pk, "sha256": ""},
    )
    assert response.status_code == 400
    assert "is not an http or https URL" in response.content.decode()
    assert not LibraryImage.objects.exists() and IMAGE not in volumes_in(dir_pool.name)


def test_an_admin_publishes_a_volume_and_removes_it(admin_client, admin_user, dir_pool):
    volume = services.create_volume(
        dir_pool, name="rescue.iso", format="raw", capacity_gib=0.01, actor=Actor(admin_user)
    )
    response = admin_client.post(
        "/storage/library/add/", {"kind": "iso", "volume": volume.pk, "name": "Rescue"}
    )
    assert response.status_code == 302, response.content.decode()[-1500:]
    image = LibraryImage.objects.get(volume=volume)
    assert (image.state, image.format, image.kind) == ("ready", "raw", "iso")

    response = admin_client.post(f"/storage/library/{image.pk}/delete/")
    assert response.status_code == 302
    assert not LibraryImage.objects.exists() and not Volume.objects.filter(pk=volume.pk).exists()
    assert "rescue.iso" not in volumes_in(dir_pool.name)


def test_a_projects_volume_is_not_published(admin_client, admin_user, dir_pool, project):
    volume = services.create_volume(
        dir_pool,
        name="theirs.iso",
        format="raw",
        capacity_gib=0.01,
        project=project,
        actor=Actor(admin_user),
    )
    response = admin_client.post("/storage/library/add/", {"kind": "iso", "volume": volume.pk})
    assert response.status_code == 400
    assert "belongs to project alpha" in response.content.decode()
    assert not LibraryImage.objects.exists()


def test_members_see_public_images_and_their_projects_and_search(
    client, plain_user, admin_user, dir_pool, project
):
    Membership.objects.create(user=plain_user, project=project, role="member")
    other = services.create_volume(
        dir_pool, name="other.iso", format="raw", capacity_gib=0.01, actor=Actor(admin_user)
    )
    for name, public, projects in (
        ("public.iso", True, ()),
        ("alpha.iso", False, (project,)),
    ):
        volume = services.create_volume(
            dir_pool, name=name, format="raw", capacity_gib=0.01, actor=Actor(admin_user)
        )
        spec = services.ImageSpec(name=name, kind="iso", public=public, projects=projects)
        services.add_from_volume(volume, spec, actor=Actor(admin_user))
    hidden = services.add_from_volume(
        other, services.ImageSpec(name="other.iso", kind="iso"), actor=Actor(admin_user)
    )
    client.force_login(plain_user)
    page = client.get("/storage/library/").content.decode()
    assert "public.iso" in page and "alpha.iso" in page and "other.iso" not in page
    assert "Add an image" not in page
    searched = client.get("/storage/library/?q=alpha").content.decode()
    assert "alpha.iso" in searched and "public.iso" not in searched
    assert client.get(f"/storage/library/{hidden.pk}/").status_code == 404
