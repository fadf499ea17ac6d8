"""Attack: read other people's passwords out of jobs and seed images.

An operator creates a VM with cloud-init (a user and a password, which the panel turns
into a password hash in the user-data) or with a kickstart (``rootpw``). A viewer of the
project, who may look at jobs, reads the create job through ``jobs/`` and ``ws/jobs/`` and
downloads the VM's NoCloud seed ISO, looking for the password, its hash or the user-data.

What the panel does: user-data, meta-data, network-config and kickstarts travel in the
job's secrets, which no API answer, websocket message, log line or audit row shows, and
which are emptied once the task has used them or the job ended; the seed ISO (like every
volume) is read only by those who may change it: the VM's owner, operators, admins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from panel.actors import Actor
from panel.models import Job
from storage.models import Volume
from tests.attacks.media import BOOT_DISK, shared_file, unique
from tests.stack import free_port
from tests.vms.conftest import wait_for
from vms.services import create

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

PASSWORD = "Tangerine-Vault-8841"
ROOTPW = "Basalt-Orchard-2290"
KICKSTART = f"lang en_US.UTF-8\nrootpw --plaintext {ROOTPW}\n%packages\n@core\n%end\n"
# What must never reach a viewer: the password, a crypt hash, the user-data and kickstart.
LEAKS = (PASSWORD, ROOTPW, "$6$", "passwd", "#cloud-config", "user_data", "rootpw", "kickstart")


@pytest.fixture
def image(media_pool, people):
    """A cloud image an admin published: a raw disk whose boot sector prints on ttyS0."""
    return shared_file(media_pool, BOOT_DISK, "cloud-base.img", people["admin"])


def create_cloud_init_vm(operator, people, media_pool, image, name: str) -> int:
    response = operator.api(
        "POST",
        "vms/",
        json={
            "name": name,
            "project": people.alpha.pk,
            "memory_mib": 96,
            "disks": [{"pool": media_pool.pk, "size_gib": 0.05}],
            "networks": [],
            "install": {
                "method": "cloud-image",
                "image_volume": image.pk,
                "cloud_init": {"user": "alice", "password": PASSWORD},
            },
            "start": False,
        },
    )
    assert response.status_code == 202, response.text
    return response.json()["job"]


def watch_job(viewer, job_id: int) -> list[str]:
    """Every message ws/jobs/<id>/ sends the viewer until the job ends."""
    seen: list[str] = []
    with viewer.ws(f"/ws/jobs/{job_id}/") as ws:
        while True:
            try:
                message = ws.recv(timeout=120)
            except (TimeoutError, ConnectionClosed):
                break
            seen.append(message)
            if json.loads(message)["job"]["state"] in ("succeeded", "failed", "cancelled"):
                break
    return seen


def what_the_viewer_reads(viewer, job_id: int, pushed: list[str]) -> str:
    detail = viewer.api("GET", f"jobs/{job_id}/")
    listing = viewer.api("GET", "jobs/")
    assert detail.status_code == 200 and listing.status_code == 200
    assert job_id in [j["id"] for j in listing.json()["results"]]
    return "\n".join([*pushed, detail.text, listing.text])


def test_it_keeps_cloud_init_secrets_out_of_the_job_a_viewer_reads(
    attacker, people, media_pool, image, created_vms
):
    operator, viewer = attacker("operator"), attacker("viewer")
    name = unique("ptatk-ci")
    created_vms.append(name)
    job_id = create_cloud_init_vm(operator, people, media_pool, image, name)
    pushed = watch_job(viewer, job_id)

    job = Job.objects.get(pk=job_id)
    assert job.state == "succeeded", job.log
    assert pushed and json.loads(pushed[-1])["job"]["state"] == "succeeded"
    read = what_the_viewer_reads(viewer, job_id, pushed)
    for leak in LEAKS:
        assert leak not in read, f"the viewer read {leak!r}"
    # The secrets did reach the guest: the seed holds the user and the hash, and the job
    # holds them no more.
    seed = Path(Volume.objects.get(name=f"{name}-cidata.iso").path).read_bytes()
    assert re.search(rb"passwd: \$6\$", seed) and b"alice" in seed
    assert job.secrets == {}


def test_it_keeps_a_kickstart_out_of_the_job_a_viewer_reads(
    attacker, people, media_pool, created_vms, settings
):
    """The operator's install tree is a mirror that only this test's settings allow, on
    127.0.0.1 where nothing listens: the stack's worker refuses to fetch from it, so the
    job ends failed without any traffic, while the viewer reads it."""
    settings.PANEL_INSTALL_MIRRORS = [f"http://127.0.0.1:{free_port()}/tree/"]
    viewer = attacker("viewer")
    name = unique("ptatk-ks")
    created_vms.append(name)
    job = create.create_vm(
        create.CreateRequest.parse(
            {
                "name": name,
                "project": people.alpha.pk,
                "memory_mib": 96,
                "disks": [{"pool": media_pool.pk, "size_gib": 0.05}],
                "networks": [],
                "install": {
                    "method": "url",
                    "location": settings.PANEL_INSTALL_MIRRORS[0] + "fedora/",
                    "kickstart": KICKSTART,
                },
                "start": False,
            }
        ),
        actor=Actor(people["operator"]),
    )
    pushed = watch_job(viewer, job.pk)
    read = what_the_viewer_reads(viewer, job.pk, pushed)
    for leak in LEAKS:
        assert leak not in read, f"the viewer read {leak!r}"
    job.refresh_from_db()
    assert job.state == "failed" and "loopback" in job.message, job.message
    assert job.secrets == {}


def test_it_refuses_the_seed_iso_to_a_viewer_and_to_another_member(
    attacker, people, media_pool, image, created_vms
):
    operator = attacker("operator")
    name = unique("ptatk-seed")
    created_vms.append(name)
    job_id = create_cloud_init_vm(operator, people, media_pool, image, name)
    assert wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=120)
    assert Job.objects.get(pk=job_id).state == "succeeded", Job.objects.get(pk=job_id).log
    seed = Volume.objects.get(name=f"{name}-cidata.iso")

    for persona in ("viewer", "member2"):
        response = attacker(persona).api("GET", f"volumes/{seed.pk}/download/")
        assert response.status_code == 403, (persona, response.status_code)
        assert b"passwd" not in response.content and PASSWORD.encode() not in response.content
    page = attacker("viewer").page(f"/storage/volumes/{seed.pk}/")
    assert page.status_code == 200
    assert "/download/" not in page.text  # no Download button for those who may not
    # The operator who made the VM (and may change it) still reads it.
    mine = operator.api("GET", f"volumes/{seed.pk}/download/")
    assert mine.status_code == 200
    assert b"passwd: $6$" in mine.content
