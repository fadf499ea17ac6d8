"""Attack: read a disk one may only look at.

A viewer of alpha sees every volume of the project; member2 sees member's volumes too.
Each tries to read one: the viewer downloads it, member2 clones it, converts it, or puts
a qcow2 overlay on it, and would own the copy (and so read, attach or download it).

What the panel does: downloading, cloning, converting and overlaying read a disk's whole
content, so each needs the right to change that volume (its owner, the project's
operators, admins); an overlay may also go on a shared image an admin published.
Everyone else gets 403, and no copy is made.
"""

from __future__ import annotations

import pytest

from panel.hypervisor import storage as hv_storage
from panel.models import Job
from storage.models import Volume
from tests.attacks.media import unique
from tests.conftest import LOCAL_URI
from tests.vms.conftest import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

SECRET = b"member's private notes: the launch is on friday"


@pytest.fixture
def members_disk(make_volume, people):
    return make_volume(people.alpha, "member", content=SECRET)


def on_host(media_pool) -> set[str]:
    return {v.name for v in hv_storage.list_volumes(LOCAL_URI, media_pool.name)}


def test_it_refuses_a_viewer_the_download_of_a_volume(attacker, members_disk):
    viewer = attacker("viewer")
    assert viewer.api("GET", f"volumes/{members_disk.pk}/").status_code == 200  # seen
    response = viewer.api("GET", f"volumes/{members_disk.pk}/download/")
    assert response.status_code == 403
    assert SECRET not in response.content
    page = viewer.page(f"/storage/volumes/{members_disk.pk}/")
    assert page.status_code == 200 and "/download/" not in page.text
    # Its owner reads it, as before.
    mine = attacker("member").api("GET", f"volumes/{members_disk.pk}/download/")
    assert mine.status_code == 200 and mine.content.startswith(SECRET)


def test_it_refuses_member2_a_clone_of_members_volume(attacker, members_disk, media_pool):
    before = on_host(media_pool)
    copy = unique("stolen")
    response = attacker("member2").api(
        "POST", f"volumes/{members_disk.pk}/clone/", json={"name": copy, "pool": media_pool.pk}
    )
    assert response.status_code == 403, response.text
    assert not Volume.objects.filter(name=copy).exists()
    assert not Job.objects.filter(kind="volume.clone").exists()
    assert on_host(media_pool) == before


def test_it_refuses_member2_a_conversion_of_members_volume(attacker, members_disk, media_pool):
    before = on_host(media_pool)
    copy = unique("stolen")
    response = attacker("member2").api(
        "POST",
        f"volumes/{members_disk.pk}/convert/",
        json={"name": copy, "pool": media_pool.pk, "format": "qcow2"},
    )
    assert response.status_code == 403, response.text
    assert not Volume.objects.filter(name=copy).exists()
    assert on_host(media_pool) == before


def test_it_refuses_member2_an_overlay_on_members_volume(
    attacker, people, members_disk, media_pool
):
    before = on_host(media_pool)
    overlay = unique("stolen") + ".qcow2"
    response = attacker("member2").api(
        "POST",
        "volumes/",
        json={
            "pool": media_pool.pk,
            "project": people.alpha.pk,
            "name": overlay,
            "format": "qcow2",
            "backing_volume": members_disk.pk,
        },
    )
    assert response.status_code == 403, response.text
    assert not Volume.objects.filter(name=overlay).exists()
    assert on_host(media_pool) == before


def test_it_lets_the_owner_clone_and_overlay_their_volume(
    attacker, people, members_disk, media_pool
):
    """The allowed way, for contrast: the owner copies their own disk."""
    member = attacker("member")
    copy = unique("mine")
    response = member.api(
        "POST", f"volumes/{members_disk.pk}/clone/", json={"name": copy, "pool": media_pool.pk}
    )
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert wait_for(lambda: Job.objects.get(pk=job).is_finished, timeout=60)
    assert Job.objects.get(pk=job).state == "succeeded", Job.objects.get(pk=job).log
    assert Volume.objects.get(name=copy).owner == people["member"]
    response = member.api(
        "POST",
        "volumes/",
        json={
            "pool": media_pool.pk,
            "project": people.alpha.pk,
            "name": copy + "-top.qcow2",
            "format": "qcow2",
            "backing_volume": members_disk.pk,
        },
    )
    assert response.status_code == 201, response.text
