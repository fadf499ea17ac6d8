"""Oversized input: uploads past the volume or the pool, bodies that lie about their
length, and request bodies or text fields megabytes long. Always a clear 4xx (or a
failed job for a body that stops short), never a 500, and nothing left behind."""

from __future__ import annotations

import json
import socket
import time

import pytest

from panel.actors import Actor
from panel.models import Job
from storage import services
from storage.models import Volume
from tests.storage.conftest import MIB
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt]


def put(client, volume, body: bytes, **extra):
    return client.generic(
        "PUT",
        f"/api/v1/volumes/{volume.pk}/upload/",
        body,
        content_type="application/octet-stream",
        **extra,
    )


@pytest.fixture
def small_volume(dir_pool, admin_user):
    return services.create_volume(
        dir_pool, name="small.img", format="raw", capacity_gib=1 / 1024, actor=Actor(admin_user)
    )


def test_an_upload_bigger_than_the_volume_is_refused(admin_client, small_volume):
    response = put(admin_client, small_volume, b"\x07" * (MIB + 1))
    assert response.status_code == 400
    assert "holds 1048576" in response.json()["detail"]
    assert not Job.objects.filter(kind="volume.upload").exists()
    with open(small_volume.path, "rb") as f:
        assert f.read() == b"\x00" * MIB


def test_an_upload_past_the_pools_free_space_is_refused(admin_client, small_volume):
    pool = small_volume.pool
    pool.available = 1024
    pool.save(update_fields=["available"])
    Volume.objects.filter(pk=small_volume.pk).update(allocation=0)
    response = put(admin_client, small_volume, b"\x07" * (MIB // 2))
    assert response.status_code == 400
    assert "free" in response.json()["detail"]
    with open(small_volume.path, "rb") as f:
        assert f.read(16) == b"\x00" * 16


@pytest.mark.stack
def test_a_body_shorter_than_its_content_length_changes_nothing(
    stack, transactional_db, dir_pool, admin_user
):
    """On the web server: the client announces 1 MiB, sends 1000 bytes and stops."""
    from rest_framework.authtoken.models import Token

    volume = services.create_volume(
        dir_pool, name="short.img", format="raw", capacity_gib=1 / 1024, actor=Actor(admin_user)
    )
    token, _ = Token.objects.get_or_create(user=admin_user)
    before = (stack.logs / "web.log").read_text(errors="replace").count("Traceback")
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT /api/v1/volumes/{volume.pk}/upload/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{stack.port}\r\nAuthorization: Token {token.key}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {MIB}\r\n\r\n"
            ).encode()
            + b"\x07" * 1000
        )
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(4096)
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    time.sleep(1)
    for job in Job.objects.filter(kind="volume.upload"):
        assert job.state == "failed", job.state
    with open(volume.path, "rb") as f:
        assert f.read(1000) == b"\x00" * 1000
    assert (stack.logs / "web.log").read_text(errors="replace").count("Traceback") == before


def test_a_content_length_that_is_not_a_number_is_refused(admin_client, small_volume):
    response = put(admin_client, small_volume, b"\x07" * 10, CONTENT_LENGTH="lots")
    assert response.status_code == 400
    assert not Job.objects.filter(kind="volume.upload").exists()


@pytest.mark.parametrize("size", [3 * MIB, 12 * MIB])
def test_a_json_body_over_the_upload_limit_gets_a_400(admin_client, size, settings):
    body = json.dumps({"name": "big", "install": {"user_data": "#" * size}})
    response = admin_client.post("/api/v1/vms/", body, content_type="application/json")
    assert response.status_code == 400, response.status_code
    assert not VirtualMachine.objects.exists()


def test_megabytes_of_cloud_init_get_a_field_error(admin_client, local_host, dir_pool, admin_user):
    from panel import services as panel_services

    project = panel_services.create_project(
        name="big",
        quota={"vms": 3, "vcpus": 4, "memory_mib": 1024, "disk_gib": 4},
        actor=Actor(admin_user),
    )
    image = services.create_volume(
        dir_pool, name="img.qcow2", format="qcow2", capacity_gib=1 / 1024, actor=Actor(admin_user)
    )
    user_data = "#cloud-config\n" + "# padding line\n" * 140_000  # about 2 MB
    body = {
        "name": "big",
        "project": project.pk,
        "host": local_host.pk,
        "vcpus": 1,
        "memory_mib": 64,
        "install": {
            "method": "cloud-image",
            "image_volume": image.pk,
            "cloud_init": {"user_data": user_data},
        },
    }
    response = admin_client.post("/api/v1/vms/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    # Read and checked as any user-data (no size limit cuts it short): the field is named.
    assert list(response.json()) == ["user_data"], response.json()
    assert "holds nothing" in response.json()["user_data"][0]
    assert not Job.objects.filter(kind="vm.create").exists()
