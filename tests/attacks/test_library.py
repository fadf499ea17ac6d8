"""Attack: reach another project's private image in the image library, or make the
library fetch what it must not.

An admin publishes a cloud image to project alpha only. The outsider (beta; made an
operator of beta here, so the full wizard and API create are open to them) looks for it
in the library's list and pages, the API, the create wizard, and asks for a VM made from
it by its id, directly or through a template an admin offered to both projects; alpha's
member tries to change or remove it. And the library is pointed at the panel's own
machine, at a file: URL, and at images whose header names a backing file (/etc/shadow,
or another project's volume).

What the panel does: an image outside the user's projects does not exist for them (not
listed; 404 on its page and in the API; a create naming it is refused with 400 on
library_image, as an id that does not exist, and queues nothing); only admins add,
change or delete images (403); URLs are http(s) only, on the allowed mirrors or public
addresses (400 on url or sums_url); a header that names any file is refused by the fetch
job, which removes the volume it was writing.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from panel.actors import Actor
from panel.models import Job, Membership
from storage import services as storage_services
from storage.models import LibraryImage, Volume
from tests.attacks.media import unique
from tests.library.conftest import IMAGE, stack_mirror  # noqa: F401  (fixture)
from tests.stack import LIBRARY_MIRROR
from tests.vms.conftest import wait_for
from vms.models import Template

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def fetched(image: LibraryImage) -> LibraryImage:
    assert wait_for(lambda: Job.objects.get(pk=image.job_id).is_finished, timeout=120)
    image.refresh_from_db()
    return image


def publish(pool, mirror, admin, file: str, **spec) -> LibraryImage:
    digest = hashlib.sha256((mirror.root / file).read_bytes()).hexdigest()
    image = storage_services.add_from_url(
        pool,
        storage_services.ImageSpec(name=spec.pop("name", file), kind="cloud", **spec),
        url=mirror.url(file),
        sha256=digest,
        actor=Actor(admin),
    )
    return fetched(image)


@pytest.fixture
def private_image(people, media_pool, stack_mirror, local_host) -> LibraryImage:  # noqa: F811
    """The tiny cloud image, published to alpha only; the outsider is beta's operator."""
    Membership.objects.filter(user=people["outsider"], project=people.beta).update(role="operator")
    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 << 30, "memory_free_bytes": 4 << 30}
    local_host.save()
    image = publish(media_pool, stack_mirror, people["admin"], IMAGE, projects=(people.alpha,))
    assert image.state == "ready", image.message
    return image


def vm_request(project, pool, **install) -> dict:
    return {
        "name": unique("stolen"),
        "project": project.pk,
        "memory_mib": 128,
        "disks": [{"pool": pool.pk, "size_gib": 0.05}],
        "install": {"method": "cloud-image", **install},
        "start": False,
    }


def test_an_outsider_never_sees_another_projects_private_image(attacker, private_image):
    outsider = attacker("outsider")
    assert private_image.name not in outsider.page("/storage/library/").text
    assert outsider.page(f"/storage/library/{private_image.pk}/").status_code == 404
    listed = outsider.api("GET", "library-images/").json()
    assert private_image.pk not in [i["id"] for i in listed["results"]]
    assert outsider.api("GET", f"library-images/{private_image.pk}/").status_code == 404
    wizard = outsider.page("/vms/new/")
    assert wizard.status_code == 200
    assert f"library:{private_image.pk}" not in wizard.text
    assert private_image.name not in wizard.text
    # Nor may they change or remove it: it does not exist for them.
    assert outsider.api("PATCH", f"library-images/{private_image.pk}/", json={}).status_code == 404
    assert outsider.api("DELETE", f"library-images/{private_image.pk}/").status_code == 404
    assert outsider.post_form(f"/storage/library/{private_image.pk}/delete/").status_code == 404
    assert LibraryImage.objects.filter(pk=private_image.pk, state="ready").exists()


def test_an_outsider_cannot_create_a_vm_from_it_by_its_id(
    attacker, people, private_image, media_pool
):
    outsider = attacker("outsider")
    jobs = Job.objects.count()
    for install in (
        {"library_image": private_image.pk},
        # The volume behind it, named directly: not shared, not theirs.
        {"image_volume": private_image.volume_id},
    ):
        response = outsider.api("POST", "vms/", json=vm_request(people.beta, media_pool, **install))
        assert response.status_code == 400, response.text
    nowhere = outsider.api(
        "POST", "vms/", json=vm_request(people.beta, media_pool, library_image=999999)
    )
    answered = outsider.api(
        "POST", "vms/", json=vm_request(people.beta, media_pool, library_image=private_image.pk)
    )
    # The same answer as for an image that does not exist, but for the id.
    assert list(answered.json()) == list(nowhere.json()) == ["library_image"]
    said = answered.json()["library_image"][0].replace(str(private_image.pk), "999999")
    assert said == nowhere.json()["library_image"][0]
    assert Job.objects.count() == jobs


def test_an_outsider_cannot_reach_it_through_a_template_offered_to_both(
    attacker, people, private_image, media_pool
):
    template = Template.objects.create(
        name="shared-by-mistake",
        source="cloud-image",
        image_id=private_image.volume_id,
        disk_gib=1,
        max_disk_gib=2,
        memory_mib=128,
        max_memory_mib=256,
    )
    template.projects.add(people.alpha, people.beta)
    template.pools.add(media_pool)
    jobs = Job.objects.count()
    response = attacker("outsider").api(
        "POST",
        "vms/",
        json={"template": template.pk, "project": people.beta.pk, "name": unique("t")},
    )
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["library_image"]
    assert Job.objects.count() == jobs


def test_alphas_member_sees_it_but_only_admins_change_it(attacker, people, private_image):
    member = attacker("member")
    assert member.api("GET", f"library-images/{private_image.pk}/").status_code == 200
    patch = member.api("PATCH", f"library-images/{private_image.pk}/", json={"public": True})
    assert patch.status_code == 403
    assert member.api("DELETE", f"library-images/{private_image.pk}/").status_code == 403
    add = member.api("POST", "library-images/", json={"kind": "cloud", "url": "https://x.test/a"})
    assert add.status_code == 403
    private_image.refresh_from_db()
    assert private_image.public is False and private_image.state == "ready"


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("url", "file:///etc/shadow"),
        ("url", "http://127.0.0.1:{port}/api/v1/"),
        ("url", "http://169.254.169.254/latest/meta-data/"),
        ("url", "http://[::ffff:127.0.0.1]:{port}/"),
        ("sums_url", "http://localhost:{port}/SHA256SUMS"),
    ],
)
def test_the_library_never_fetches_from_the_panels_own_machine_or_files(
    attacker, people, media_pool, stack, field, url
):
    body = {"kind": "cloud", "pool": media_pool.pk, "url": LIBRARY_MIRROR + "a.qcow2"}
    body |= {field: url.format(port=stack.port)}
    if field == "url":
        body["sha256"] = "a" * 64
    response = attacker("admin").api("POST", "library-images/", json=body)
    assert response.status_code == 400, response.text
    assert list(response.json()) == [field]
    assert not LibraryImage.objects.exists() and not Job.objects.filter(kind="library.fetch")


def test_without_mirrors_loopback_and_private_addresses_are_refused(people, media_pool, settings):
    settings.PANEL_LIBRARY_MIRRORS = []
    client = Client()
    client.force_login(people["admin"])
    for url in ("http://127.0.0.1:8000/a.qcow2", "http://10.0.0.1/a.qcow2", "http://localhost/a"):
        response = client.post(
            "/api/v1/library-images/",
            {"kind": "cloud", "pool": media_pool.pk, "url": url, "sha256": "a" * 64},
            content_type="application/json",
        )
        assert response.status_code == 400, response.content
        assert "loopback, private or link-local" in response.json()["url"][0]
    assert not LibraryImage.objects.exists()


def test_images_whose_header_names_a_backing_file_are_refused(
    stack,
    transactional_db,
    people,
    media_pool,
    stack_mirror,  # noqa: F811
    make_volume,
):
    theirs = make_volume(people.beta, "outsider", fmt="raw", content=b"beta's data")
    other = stack_mirror.root / "other.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            theirs.path,
            "-F",
            "raw",
            str(other),
            "32M",
        ],
        check=True,
        capture_output=True,
    )
    for file, named in (("shadow.qcow2", "/etc/shadow"), ("other.qcow2", theirs.path)):
        image = publish(media_pool, stack_mirror, people["admin"], file, public=True)
        job = Job.objects.get(pk=image.job_id)
        assert image.state == "failed" and job.state == "failed"
        assert f"backing file {named}" in job.message
        assert not Volume.objects.filter(pool=media_pool, name=file).exists()
        assert not Path(media_pool.target_path, file).exists()
