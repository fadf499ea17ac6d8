"""Attack: disk image metadata that reads host files (issue 18, item 1).

A tenant writes a disk image header that names another file: a qcow2 backing file
(`/etc/shadow`, another project's volume, a `json:` pseudo-protocol), a qcow2 external
data file, a VMDK extent. Upload it into a raw volume, or declare it the format it
claims, or write it from inside a guest onto its own raw disk; then let the pool refresh
and clone, back up, boot or download, hoping the panel (libvirt, qemu-img) follows the
header and copies the host's file into something the tenant can read.

What the panel does: a volume's format is what the panel made or its owner declared,
never what the content says (a pool refresh changes no recorded format), and qemu and
qemu-img are always told the format and the backing chain. The first bytes of an upload
are checked (oslo.utils' format inspector) against the declared format before anything
is written: a disguised image, or one naming any file but a volume of the same project
in that pool, is refused (400) and the refusal audited. A raw disk a guest scribbled a
header onto stays raw: clones, backups and boots read it as bytes.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from panel.models import AuditEvent
from panel.services import update_project
from storage import services as storage_services
from storage.models import StoragePool
from tests.conftest import LOCAL_URI
from tests.vms.conftest import IMAGES, virsh, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.libvirt]

MIB = 1024 * 1024
# What the attacks reach for. The tests run as root on the host, so they can read it and
# look for it in whatever the attacker gets back.
SHADOW = Path("/etc/shadow")
FINISHED = ("succeeded", "failed", "cancelled")


def secret_of(path: Path) -> bytes:
    """A stretch of the file that cannot turn up anywhere by chance."""
    data = path.read_bytes()
    assert len(data) >= 32, f"{path} is too short to recognise"
    return data[:64]


# --- the images the attacker builds on their own machine ---------------------------------


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True)


def qcow2_backed_by(backing: str, backing_format: str = "raw") -> bytes:
    """A qcow2 header naming backing (-u: qemu-img does not open it to write the header)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "evil.qcow2"
        qemu_img(
            "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", backing, "-u", str(out), "1M"
        )
        return out.read_bytes()


def qcow2_with_data_file(target: str) -> bytes:
    """A qcow2 whose external (raw) data file is target. qemu-img would create (truncate!)
    the data file it is given, so the header is made naming a scratch file of the same
    length and the name is swapped for target's afterwards."""
    scratch = f"/tmp/{secrets.token_hex(len(target) - 5)[: len(target) - 5]}"
    assert len(scratch) == len(target)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "evil.qcow2"
        try:
            qemu_img(
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                f"data_file={scratch},data_file_raw=on",
                str(out),
                "1M",
            )
        finally:
            Path(scratch).unlink(missing_ok=True)
        data = out.read_bytes()
    assert data.count(scratch.encode()) == 1
    return data.replace(scratch.encode(), target.encode())


def vmdk_extent_on(target: str) -> bytes:
    """A VMDK descriptor file whose one (flat) extent is target."""
    return (
        "# Disk DescriptorFile\n"
        "version=1\n"
        "CID=fffffffe\n"
        "parentCID=ffffffff\n"
        'createType="monolithicFlat"\n'
        f'RW 2048 FLAT "{target}" 0\n'
        'ddb.adapterType = "ide"\n'
    ).encode()


# --- the stage: a pool both projects may use ---------------------------------------------


@pytest.fixture
def shared_pool(local_host, people) -> Any:
    """A dir pool on the real host that alpha and beta may both use."""
    target = IMAGES / f"paneltest-{uuidlib.uuid4().hex[:8]}"
    pool = storage_services.create_pool(
        local_host,
        {"name": target.name, "type": "dir", "target_path": str(target)},
        actor=Actor(people["admin"]),
    )
    target.chmod(0o755)  # qemu (libvirt-qemu) reaches the disks of the guest test
    for project in (people.alpha, people.beta):
        update_project(
            project, allowed_hosts=[local_host], allowed_pools=[pool], actor=Actor(people["admin"])
        )
    try:
        yield pool
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(LOCAL_URI, pool.name)
        shutil.rmtree(target, ignore_errors=True)


def refresh(pool: StoragePool, admin: Any) -> None:
    """The next pool refresh, as an admin (or the periodic reconcile) runs it."""
    storage_services.pool_action(pool, "refresh", actor=Actor(admin))


def new_volume(who: Any, pool: StoragePool, project: Any, name: str, fmt: str) -> dict:
    answer = who.api(
        "POST",
        "volumes/",
        json={
            "pool": pool.pk,
            "name": name,
            "format": fmt,
            "capacity_gib": str(64 * MIB / 1024**3),
            "project": project.pk,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def upload(who: Any, volume_id: int, data: bytes) -> Any:
    return who.api(
        "PUT",
        f"volumes/{volume_id}/upload/",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def finished(who: Any, job_id: int) -> dict:
    state: dict = {}

    def done() -> bool:
        state.update(who.api("GET", f"jobs/{job_id}/").json())
        return state.get("state") in FINISHED

    assert wait_for(done, timeout=300, step=0.5), f"job {job_id} did not finish: {state}"
    return state


def clone_and_download(who: Any, volume_id: int, name: str) -> tuple[dict, bytes]:
    """Clone the volume through the API; the job, and the clone's contents (downloaded
    when the clone was made)."""
    answer = who.api("POST", f"volumes/{volume_id}/clone/", json={"name": name})
    if answer.status_code != 202:
        return {"state": "refused", "message": answer.text}, b""
    job = finished(who, answer.json()["job"])
    if job["state"] != "succeeded":
        return job, b""
    copy = next(v for v in who.api("GET", "volumes/?search=" + name).json()["results"])
    download = who.api("GET", f"volumes/{copy['id']}/download/")
    assert download.status_code == 200, download.text
    return job | {"copy": copy}, download.content


def refusals(action: str, volume_name: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action=action, target=volume_name).exclude(result="success")
    )


# --- the attacks ---------------------------------------------------------------------------


def test_it_refuses_a_qcow2_backed_by_etc_shadow_uploaded_into_a_raw_volume(
    attacker, people, shared_pool
):
    operator = attacker("operator")
    secret = secret_of(SHADOW)
    volume = new_volume(operator, shared_pool, people.alpha, "evil.img", "raw")

    answer = upload(operator, volume["id"], qcow2_backed_by(str(SHADOW)))

    assert answer.status_code == 400, answer.text
    assert "qcow2 image, not raw" in answer.text
    assert refusals("volume.upload", "evil.img"), "the refused upload was not audited"
    refresh(shared_pool, people["admin"])
    assert operator.api("GET", f"volumes/{volume['id']}/").json()["format"] == "raw"
    job, content = clone_and_download(operator, volume["id"], "evil-copy.img")
    assert job["state"] == "succeeded", job
    assert job["copy"]["format"] == "raw"
    assert secret not in content


@pytest.mark.parametrize("declared", ["raw", "qcow2"])
def test_it_refuses_an_image_backed_by_another_projects_volume(
    attacker, people, shared_pool, declared
):
    outsider, operator = attacker("outsider"), attacker("operator")
    theirs = new_volume(outsider, shared_pool, people.beta, "beta-secret.img", "raw")
    secret = b"BETA-SECRET-" + secrets.token_hex(32).encode()
    assert upload(outsider, theirs["id"], secret * 64).status_code == 202
    volume = new_volume(operator, shared_pool, people.alpha, f"evil.{declared}", declared)

    answer = upload(operator, volume["id"], qcow2_backed_by(theirs["path"]))

    assert answer.status_code == 400, answer.text
    assert refusals("volume.upload", f"evil.{declared}"), "the refused upload was not audited"
    refresh(shared_pool, people["admin"])
    assert operator.api("GET", f"volumes/{volume['id']}/").json()["format"] == declared
    job, content = clone_and_download(operator, volume["id"], f"evil-copy.{declared}")
    assert job["state"] == "succeeded", job
    assert secret[:48] not in content


@pytest.mark.parametrize(
    ("kind", "declared"),
    [("json-backing", "qcow2"), ("data-file", "qcow2"), ("vmdk-extent", "vmdk")],
)
def test_it_refuses_images_that_reach_host_files_by_other_ways(
    attacker, people, shared_pool, kind, declared
):
    operator = attacker("operator")
    secret = secret_of(SHADOW)
    image = {
        "json-backing": lambda: qcow2_backed_by(
            'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}'
        ),
        "data-file": lambda: qcow2_with_data_file(str(SHADOW)),
        "vmdk-extent": lambda: vmdk_extent_on(str(SHADOW)),
    }[kind]()
    name = f"evil-{kind}.{declared}"
    volume = new_volume(operator, shared_pool, people.alpha, name, declared)

    answer = upload(operator, volume["id"], image)

    assert answer.status_code == 400, answer.text
    assert refusals("volume.upload", name), "the refused upload was not audited"
    refresh(shared_pool, people["admin"])
    assert operator.api("GET", f"volumes/{volume['id']}/").json()["format"] == declared
    job, content = clone_and_download(operator, volume["id"], f"copy-{kind}.{declared}")
    assert job["state"] == "succeeded", job
    assert secret not in content


def test_it_never_follows_a_header_a_guest_writes_onto_its_raw_disk(
    attacker, people, shared_pool, make_vm
):
    member = attacker("member")
    secret = secret_of(SHADOW)
    volume = new_volume(member, shared_pool, people.alpha, "guest-disk.img", "raw")
    vm = make_vm(
        disks=(hypervisor.DiskSpec(path=volume["path"], target="vdb", format="raw"),),
    )
    # What the guest does with its own disk: dd the header onto /dev/vdb.
    header = qcow2_backed_by(str(SHADOW))
    with open(volume["path"], "r+b") as disk:
        disk.write(header)

    refresh(shared_pool, people["admin"])
    assert member.api("GET", f"volumes/{volume['id']}/").json()["format"] == "raw"

    job, content = clone_and_download(member, volume["id"], "guest-disk-copy.img")
    assert job["state"] == "succeeded", job
    assert job["copy"]["format"] == "raw"
    assert content.startswith(header), "the clone is not the disk's bytes as they are"
    assert secret not in content

    answer = member.api(
        "POST", f"vms/{vm.pk}/backups/", json={"pool": shared_pool.pk, "method": "offline"}
    )
    assert answer.status_code == 202, answer.text
    job = finished(member, answer.json()["job"])
    assert job["state"] == "succeeded", job
    backup = member.api("GET", f"vms/{vm.pk}/backups/{answer.json()['backup']}/").json()
    copy = next(d for d in backup["disks"] if d["target"] == "vdb")
    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "vdb.raw"
        qemu_img("convert", "-f", "qcow2", "-O", "raw", copy["path"], str(flat))
        backed_up = flat.read_bytes()
    assert backed_up.startswith(header), "the backup is not the disk's bytes as they are"
    assert secret not in backed_up

    answer = member.api("POST", f"vms/{vm.pk}/start/")
    assert answer.status_code == 200, answer.text
    try:
        live = virsh("dumpxml", str(vm.pk))
        assert str(SHADOW) not in live
        pid = Path(f"/run/libvirt/qemu/{vm.name}.pid").read_text().strip()
        assert str(SHADOW) not in Path(f"/proc/{pid}/cmdline").read_text()
        assert all(str(SHADOW) not in str(p.resolve()) for p in Path(f"/proc/{pid}/fd").iterdir())
    finally:
        member.api("POST", f"vms/{vm.pk}/force-off/")
