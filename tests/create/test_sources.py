"""Install sources on the real libvirtd: a cloud image with its NoCloud seed, and an install
tree with a kickstart injected into the initrd; then bad input and self-service refusals."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from lxml import etree

from panel import hypervisor, quotas
from panel.actors import Actor
from panel.models import Job, Membership
from storage import services as storage_services
from storage.models import Volume
from tests.conftest import LOCAL_URI
from tests.create.conftest import GUEST_DIR, domain_names, volumes_in
from tests.storage.conftest import virsh
from vms.install import cloudinit, kickstart
from vms.models import Template, VirtualMachine
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]

USER_DATA = "#cloud-config\nhostname: web1\npackages:\n  - nginx\n"
META_DATA = "instance-id: web1-0001\nlocal-hostname: web1\n"
KICKSTART = """lang en_US.UTF-8
keyboard us
timezone UTC
rootpw --plaintext panel-test
bootloader --location=mbr
clearpart --all --initlabel
autopart
%packages
@core
%end
reboot
"""


@pytest.fixture
def image(dir_pool, admin_user):
    volume = storage_services.create_volume(
        dir_pool,
        name="cloud-base.qcow2",
        format="qcow2",
        capacity_gib=0.03,
        actor=Actor(admin_user),
    )
    return storage_services.set_shared(volume, True, actor=Actor(admin_user))


def post(client, data):
    return client.post("/api/v1/vms/", json.dumps(data), content_type="application/json")


def cloud_image_vm(name: str, project, pool, image, **install) -> dict:
    """A request for a stopped VM made from image, with a 0.05 GiB disk in pool."""
    return {
        "name": name,
        "project": project.pk,
        "memory_mib": 128,
        "disks": [{"pool": pool.pk, "size_gib": 0.05}],
        "install": {
            "method": "cloud-image",
            "image_volume": image.pk,
            "cloud_init": {"user_data": USER_DATA, "meta_data": META_DATA},
            **install,
        },
        "start": False,
    }


def run(job_id: int) -> Job:
    vm_create_task(job_id)
    return Job.objects.get(pk=job_id)


def test_a_cloud_image_vm_gets_an_overlay_and_a_seed_with_the_users_data(
    admin_client, host_facts, dir_pool, image, project, created
):
    created.append("web1")
    response = post(admin_client, cloud_image_vm("web1", project, dir_pool, image))
    assert response.status_code == 202, response.content
    job = run(response.json()["job"])
    assert job.state == "succeeded", job.log

    seed = Volume.objects.get(pool=dir_pool, name="web1-cidata.iso")
    files = cloudinit.read_seed_iso(Path(seed.path).read_bytes())
    assert files == {"user-data": USER_DATA, "meta-data": META_DATA}
    assert seed.project == project

    root = etree.fromstring(virsh("dumpxml", "--inactive", response.json()["id"]).encode())
    disk = root.find("./devices/disk[@device='disk']")
    overlay = disk.find("source").get("file")
    assert overlay.endswith("/web1-disk0.qcow2")
    assert disk.find("driver").get("type") == "qcow2"
    cdrom = root.find("./devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == seed.path
    backing = etree.fromstring(virsh("vol-dumpxml", overlay).encode()).findtext(
        "./backingStore/path"
    )
    assert backing == image.path
    # 0.05 GiB rounded up to whole MiB, larger than the 31 MiB image.
    assert Volume.objects.get(path=overlay).capacity == 52 * 1024 * 1024


def test_a_full_copy_of_a_cloud_image_is_grown_to_the_disk_size_asked(
    admin_client, host_facts, dir_pool, image, project, created
):
    created.append("web2")
    response = post(admin_client, cloud_image_vm("web2", project, dir_pool, image, linked=False))
    assert response.status_code == 202, response.content
    job = run(response.json()["job"])
    assert job.state == "succeeded", job.log

    copy = Volume.objects.get(pool=dir_pool, name="web2-disk0.qcow2")
    described = etree.fromstring(virsh("vol-dumpxml", copy.path).encode())
    assert described.find("./backingStore/path") is None
    assert int(described.findtext("capacity")) == 52 * 1024 * 1024
    assert copy.capacity == 52 * 1024 * 1024


@pytest.fixture
def install_tree(tmp_path, settings):
    """The tiny guest's kernel and initrd laid out like a Fedora tree, served on 127.0.0.1
    and allowed as the one install mirror."""
    pxe = tmp_path / "tree" / "images" / "pxeboot"
    pxe.mkdir(parents=True)
    shutil.copy(f"{GUEST_DIR}/vmlinuz", pxe / "vmlinuz")
    shutil.copy(f"{GUEST_DIR}/initrd.img", pxe / "initrd.img")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.PANEL_INSTALL_MIRRORS = [f"http://127.0.0.1:{server.server_address[1]}/tree/"]
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tree/"
    finally:
        server.shutdown()


def test_an_install_tree_boots_its_kernel_with_the_kickstart_in_the_initrd(
    admin_client, host_facts, dir_pool, project, created, install_tree
):
    created.append("ks1")
    response = post(
        admin_client,
        {
            "name": "ks1",
            "project": project.pk,
            "memory_mib": 128,
            "disks": [{"pool": dir_pool.pk, "size_gib": 0.05}],
            "install": {
                "method": "url",
                "location": install_tree,
                "extra_args": "console=ttyS0",
                "kickstart": KICKSTART,
            },
            "start": True,
        },
    )
    assert response.status_code == 202, response.content
    uuid = response.json()["id"]
    job = run(response.json()["job"])
    assert job.state == "succeeded", job.log
    assert "kickstart injected into the initrd as /ks.cfg" in job.log

    initrd = Volume.objects.get(pool=dir_pool, name="ks1-initrd.img")
    assert (
        kickstart.list_initrd_files(Path(initrd.path).read_bytes())["ks.cfg"] == KICKSTART.encode()
    )

    live = etree.fromstring(virsh("dumpxml", uuid).encode())
    assert live.findtext("./os/initrd") == initrd.path
    cmdline = live.findtext("./os/cmdline")
    assert "inst.ks=file:/ks.cfg" in cmdline and f"inst.repo={install_tree}" in cmdline
    # After the installer's boot the VM starts from its disk, as virt-install leaves it.
    final = etree.fromstring(virsh("dumpxml", "--inactive", uuid).encode())
    assert final.find("./os/kernel") is None
    assert final.find("./os/boot").get("dev") == "hd"

    console = hypervisor.open_console(LOCAL_URI, uuid)
    try:
        console.send(b"\n")
        console.read_until(b"guest# ", 30)
        mark = len(console.output())
        console.send(b"cat /ks.cfg; cat /proc/cmdline\n")
        out = console.read_until(b"inst.ks=file:/ks.cfg", 15, start=mark)[mark:].decode()
        assert "rootpw --plaintext panel-test" in out
    finally:
        console.close()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": "bad name"}, "name", "1 to 63 letters"),
        ({"name": "x" * 64}, "name", "1 to 63 letters"),
        ({"name": "a<b>"}, "name", "1 to 63 letters"),
        ({"vcpus": 0}, "vcpus", "between 1 and 2"),
        ({"memory_mib": 10**9}, "memory_mib", "Memory in MiB"),
        (
            {"install": {"method": "kernel", "kernel": "/etc/passwd"}},
            "kernel",
            "allowed for boot files",
        ),
        (
            {
                "install": {
                    "method": "kernel",
                    "kernel": "/var/lib/libvirt/boot/../../../etc/shadow",
                }
            },
            "kernel",
            "clean absolute path",
        ),
        ({"install": {"method": "floppy"}}, "install", "Unknown install method"),
        ({"install": {"method": "pxe"}}, "networks", "needs a network"),
        (
            {"install": {"method": "url", "location": "file:///etc/passwd"}},
            "location",
            "not an http",
        ),
        (
            {
                "install": {
                    "method": "url",
                    "location": "http://mirror.example.org/os/",
                    "kickstart": "lang en_US\n%packages\n@core\n",
                }
            },
            "kickstart",
            "line 2",
        ),
        ({"disks": [{"pool": 999999, "size_gib": 1}]}, "disks", "No pool"),
        ({"disks": [{"pool": "POOL", "size_gib": -1}]}, "disks", "more than 0"),
        ({"firmware": "coreboot"}, "firmware", "bios or uefi"),
    ],
)
def test_bad_requests_are_refused_and_create_nothing(
    admin_client, host_facts, dir_pool, project, change, field, message
):
    data = {
        "name": "ok1",
        "project": project.pk,
        "vcpus": 1,
        "memory_mib": 128,
        "disks": [{"pool": dir_pool.pk, "size_gib": 0.05}],
        "install": {"method": "kernel", "kernel": f"{GUEST_DIR}/vmlinuz"},
        **change,
    }
    for disk in data["disks"]:
        if disk.get("pool") == "POOL":
            disk["pool"] = dir_pool.pk
    response = post(admin_client, data)
    assert response.status_code == 400, response.content
    assert message in response.json()[field][0]
    assert not Job.objects.filter(kind="vm.create").exists()
    assert volumes_in(dir_pool.name) == set()


def test_invalid_cloud_init_yaml_names_the_line(admin_client, host_facts, dir_pool, image, project):
    bad = "#cloud-config\nusers:\n  - name: a\n\tshell: /bin/sh\n"
    response = post(
        admin_client,
        {
            "name": "ci1",
            "project": project.pk,
            "disks": [{"pool": dir_pool.pk, "size_gib": 0.05}],
            "install": {
                "method": "cloud-image",
                "image_volume": image.pk,
                "cloud_init": {"user_data": bad},
            },
        },
    )
    assert response.status_code == 400
    assert "user-data line 4" in response.json()["user_data"][0]
    assert not Job.objects.filter(kind="vm.create").exists()


def test_a_duplicate_name_on_the_host_is_refused(
    admin_client, host_facts, dir_pool, project, local_host
):
    VirtualMachine.objects.create(
        pk="7b0c1a5e-0000-4000-8000-000000000001", name="taken", host=local_host
    )
    response = post(
        admin_client,
        {
            "name": "taken",
            "project": project.pk,
            "install": {"method": "kernel", "kernel": f"{GUEST_DIR}/vmlinuz"},
        },
    )
    assert response.status_code == 400
    assert "already has a VM named taken" in response.json()["name"][0]


@pytest.fixture
def member_client(client, plain_user, project):
    Membership.objects.create(user=plain_user, project=project, role="member")
    client.force_login(plain_user)
    return client


@pytest.fixture
def template(image, dir_pool, project):
    t = Template.objects.create(
        name="small",
        source="cloud-image",
        image=image,
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
        max_vcpus=2,
        max_memory_mib=512,
        max_disk_gib=2,
    )
    t.projects.add(project)
    t.pools.add(dir_pool)
    return t


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkAZ7J2Q7TzY8sVBvKqN8m5w4D6zH6h3V8p9zTQ3W1x me@laptop"


@pytest.mark.parametrize("keys", [5, [5], [KEY, {"key": 1}]], ids=["number", "numbers", "object"])
def test_ssh_keys_that_are_not_text_are_refused_on_ssh_keys(
    admin_client, host_facts, dir_pool, image, project, keys
):
    request = cloud_image_vm("ci2", project, dir_pool, image)
    request["install"]["cloud_init"] = {"user": "alice", "ssh_keys": keys}
    response = post(admin_client, request)
    assert response.status_code == 400, response.content
    assert "ssh_keys" in response.json(), response.json()
    assert not Job.objects.filter(kind="vm.create").exists()


def test_members_create_from_their_template_within_quota(
    member_client, host_facts, template, project, dir_pool, created
):
    created.append("self1")
    ok = post(
        member_client,
        {
            "template": template.pk,
            "project": project.pk,
            "name": "self1",
            "size_gib": 0.05,
            "ssh_key": KEY,
        },
    )
    assert ok.status_code == 202, ok.content
    job = Job.objects.get(pk=ok.json()["job"])
    assert job.result["install"]["method"] == "cloud-image"
    assert job.result["memory_mib"] == 256

    # Above the template's limits: refused, whatever the quota says.
    refused = post(
        member_client,
        {
            "template": template.pk,
            "project": project.pk,
            "name": "self2",
            "memory_mib": 1024,
            "ssh_key": KEY,
        },
    )
    assert refused.status_code == 400
    assert "allows at most 512 MiB" in refused.json()["memory_mib"][0]


def test_members_over_quota_get_403_naming_the_quota(
    member_client, host_facts, template, project, created
):
    quota = project.quota
    quota.memory_mib = 300
    quota.save()
    first = post(
        member_client,
        {
            "template": template.pk,
            "project": project.pk,
            "name": "q1",
            "size_gib": 0.05,
            "ssh_key": KEY,
        },
    )
    assert first.status_code == 202, first.content
    second = post(
        member_client,
        {
            "template": template.pk,
            "project": project.pk,
            "name": "q2",
            "size_gib": 0.05,
            "ssh_key": KEY,
        },
    )
    assert second.status_code == 403
    assert (
        "Quota exceeded for project alpha: memory (MiB) would be 512 of 300"
        in second.json()["detail"]
    )
    assert quotas.usage(project).vms == 1


def test_members_cannot_pick_a_template_their_project_is_not_offered(
    member_client, host_facts, template, project, image, dir_pool
):
    other = Template.objects.create(name="big", source="cloud-image", image=image)
    response = post(
        member_client, {"template": other.pk, "project": project.pk, "name": "t1", "ssh_key": KEY}
    )
    assert response.status_code == 400
    assert "No template with id" in response.json()["template"][0]
    without = post(
        member_client,
        {
            "project": project.pk,
            "name": "t2",
            "install": {"method": "kernel", "kernel": f"{GUEST_DIR}/vmlinuz"},
        },
    )
    assert without.status_code == 403
    assert "choose a template" in without.json()["detail"]
    assert not Job.objects.filter(kind="vm.create").exists()
    assert "t1" not in domain_names() and "t2" not in domain_names()
