"""pools/ and volumes/ through the API: bad input changes nothing, scopes, quotas,
and on the running stack an upload/download round trip and a conversion by the worker."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from urllib.parse import urlsplit

import pytest

from panel import services as panel_services
from panel.actors import Actor
from panel.models import Job, Membership
from storage import services
from storage.models import StoragePool, Volume
from tests.storage.conftest import MIB

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def post(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def listing(path) -> set[str]:
    return set(os.listdir(path))


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "../escape"}, "name", "not a valid volume name"),
        ({"name": "a/b"}, "name", "not a valid volume name"),
        ({"name": "bad\x00name"}, "name", "Null characters are not allowed"),
        ({"name": "<disk>"}, "name", "not a valid volume name"),
        ({"name": "x" * 101}, "name", "longer than 100"),
        ({"capacity_gib": "-1"}, "capacity_gib", "more than 0"),
        ({"capacity_gib": "0"}, "capacity_gib", "more than 0"),
        ({"capacity_gib": "ten"}, "capacity_gib", "number of GiB"),
        ({"capacity_gib": "1e9"}, "capacity_gib", "allows for one volume"),
        ({"capacity_gib": "60000"}, "capacity_gib", "more than pool"),
        ({"format": "exe"}, "format", "not a format qemu-img"),
        ({"preallocation": "some"}, "preallocation", "Unknown preallocation"),
        ({"format": "raw", "preallocation": "metadata"}, "preallocation", "qcow2 only"),
    ],
)
def test_bad_volume_input_is_refused_and_nothing_is_written(
    dir_pool, pool_dir, admin_client, body, field, message
):
    before = listing(pool_dir)
    data = {"pool": dir_pool.pk, "name": "ok.qcow2", "capacity_gib": "1", **body}
    response = post(admin_client, "/api/v1/volumes/", data)
    assert response.status_code == 400, response.content
    assert message in response.json()[field][0]
    assert listing(pool_dir) == before
    assert not Volume.objects.filter(pool=dir_pool).exists()


def test_a_preallocated_volume_larger_than_the_free_space_is_refused(
    dir_pool, pool_dir, admin_client
):
    dir_pool.available = 64 * MIB
    dir_pool.save()
    response = post(
        admin_client,
        "/api/v1/volumes/",
        {
            "pool": dir_pool.pk,
            "name": "big.img",
            "format": "raw",
            "capacity_gib": "1",
            "preallocation": "full",
        },
    )
    assert response.status_code == 400
    assert "does not fit" in response.json()["capacity_gib"][0]
    assert listing(pool_dir) == set()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/etc/panel-pool", "outside the directories allowed"),
        ("/var/lib/libvirt/images/../../../etc", "not a clean absolute path"),
        ("relative/dir", "not a clean absolute path"),
    ],
)
def test_a_dir_pool_outside_the_allowed_roots_is_refused(local_host, admin_client, target, message):
    response = post(
        admin_client,
        "/api/v1/pools/",
        {"host": local_host.pk, "name": "escape", "type": "dir", "target_path": target},
    )
    assert response.status_code == 400
    assert message in response.json()["target_path"][0]
    assert not os.path.exists("/etc/panel-pool")
    assert not StoragePool.objects.filter(name="escape").exists()


def test_a_duplicate_volume_name_is_refused(dir_pool, pool_dir, admin_client):
    body = {"pool": dir_pool.pk, "name": "twice.qcow2", "capacity_gib": "0.01"}
    assert post(admin_client, "/api/v1/volumes/", body).status_code == 201
    before = {p: os.stat(pool_dir / p).st_mtime_ns for p in listing(pool_dir)}
    response = post(admin_client, "/api/v1/volumes/", body)
    assert response.status_code == 400
    assert "already has a volume named twice.qcow2" in response.json()["name"][0]
    assert {p: os.stat(pool_dir / p).st_mtime_ns for p in listing(pool_dir)} == before


def test_members_create_inside_their_quota_only(dir_pool, pool_dir, admin_user, plain_user, client):
    project = panel_services.create_project(
        name="alpha", quota={"disk_gib": 1}, actor=Actor(admin_user)
    )
    Membership.objects.create(user=plain_user, project=project, role="member")
    client.force_login(plain_user)
    body = {"pool": dir_pool.pk, "project": project.pk, "format": "qcow2"}

    first = post(client, "/api/v1/volumes/", {**body, "name": "a.qcow2", "capacity_gib": "0.5"})
    assert first.status_code == 201, first.content
    assert first.json()["owner"] == plain_user.username

    second = post(client, "/api/v1/volumes/", {**body, "name": "b.qcow2", "capacity_gib": "1"})
    assert second.status_code == 403
    assert "Quota exceeded for project alpha: disk (GiB)" in second.json()["detail"]
    assert listing(pool_dir) == {"a.qcow2"}

    # Members do not manage pools.
    assert client.post(f"/api/v1/pools/{dir_pool.pk}/refresh/").status_code == 403
    assert client.delete(f"/api/v1/pools/{dir_pool.pk}/").status_code == 403


def test_outsiders_do_not_see_volumes_and_viewers_cannot_change_them(
    dir_pool, admin_user, plain_user, client, django_user_model
):
    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    volume = services.create_volume(
        dir_pool, name="v.qcow2", capacity_gib=0.01, project=project, actor=Actor(admin_user)
    )
    outsider = django_user_model.objects.create_user("bob", password="bob-pass-4Kw8")
    client.force_login(outsider)
    assert client.get(f"/api/v1/volumes/{volume.pk}/").status_code == 404
    assert client.get("/api/v1/volumes/").json()["count"] == 0

    Membership.objects.create(user=plain_user, project=project, role="viewer")
    client.force_login(plain_user)
    assert client.get(f"/api/v1/volumes/{volume.pk}/").status_code == 200
    response = post(client, f"/api/v1/volumes/{volume.pk}/resize/", {"capacity_gib": "1"})
    assert response.status_code == 403
    assert client.delete(f"/api/v1/volumes/{volume.pk}/").status_code == 403
    assert os.path.exists(volume.path)


def test_a_volume_in_use_by_a_vm_is_not_deleted(dir_pool, local_host, admin_user, admin_client):
    from vms.models import VirtualMachine

    volume = services.create_volume(
        dir_pool, name="used.qcow2", capacity_gib=0.01, actor=Actor(admin_user)
    )
    VirtualMachine.objects.create(
        pk="6f1c2f7e-0000-4000-8000-000000000001",
        name="web1",
        host=local_host,
        disks=[{"target": "vda", "device": "disk", "source": volume.path}],
    )
    response = admin_client.delete(f"/api/v1/volumes/{volume.pk}/")
    assert response.status_code == 409
    assert "is a disk of web1" in response.json()["detail"]
    assert os.path.exists(volume.path)


# --- on the running stack ----------------------------------------------------------------


def _request(stack, method, path, token, body=None, headers=None):
    parts = urlsplit(stack.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request(
        method, path, body=body, headers={"Authorization": f"Token {token}", **(headers or {})}
    )
    return conn.getresponse()


@pytest.mark.stack
def test_upload_then_download_through_the_web_server(stack, transactional_db, dir_pool, admin_user):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=admin_user).key
    data = os.urandom(20 * MIB)
    volume = services.create_volume(
        dir_pool, name="image.raw", format="raw", capacity_gib=20 / 1024, actor=Actor(admin_user)
    )
    response = _request(
        stack,
        "PUT",
        f"/api/v1/volumes/{volume.pk}/upload/",
        token,
        body=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
    )
    answer = json.loads(response.read())
    assert response.status == 202, answer
    job = Job.objects.get(pk=answer["job"])
    assert (job.state, job.progress, job.kind) == ("succeeded", 100, "volume.upload")

    response = _request(stack, "GET", f"/api/v1/volumes/{volume.pk}/download/", token)
    assert response.status == 200
    digest = hashlib.sha256()
    while chunk := response.read(MIB):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.stack
def test_the_worker_converts_a_volume_and_reports_progress(
    stack, transactional_db, dir_pool, admin_user
):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=admin_user).key
    volume = services.create_volume(
        dir_pool, name="src.raw", format="raw", capacity_gib=8 / 1024, actor=Actor(admin_user)
    )
    payload = os.urandom(4 * MIB)
    with open(volume.path, "r+b") as f:
        f.write(payload)
    response = _request(
        stack,
        "POST",
        f"/api/v1/volumes/{volume.pk}/convert/",
        token,
        body=json.dumps({"name": "dst.qcow2", "format": "qcow2"}),
        headers={"Content-Type": "application/json"},
    )
    answer = json.loads(response.read())
    assert response.status == 202, answer
    deadline = time.monotonic() + 60
    while (job := Job.objects.get(pk=answer["job"])).state in ("queued", "running"):
        assert time.monotonic() < deadline, f"job still {job.state}"
        time.sleep(0.2)
    assert job.state == "succeeded", job.message
    assert "copy finished" in job.log
    converted = Volume.objects.get(pool=dir_pool, name="dst.qcow2")
    assert converted.format == "qcow2"
    assert converted.synced is not None
