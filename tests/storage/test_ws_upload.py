"""Browser uploads over the websocket, on the running stack: straight into the volume,
refused when they should be, and a connection dropped mid-way removes the volume."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from panel import services as panel_services
from panel.actors import Actor
from panel.models import Job, Membership
from storage import services
from storage.models import Volume
from tests.stack import open_ws, refusal
from tests.storage.conftest import MIB

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(120)]


def session(client, user) -> str:
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_a_file_sent_over_the_websocket_lands_in_the_volume(
    stack, transactional_db, client, dir_pool, admin_user
):
    data = os.urandom(5 * MIB + 123)
    volume = services.create_volume(
        dir_pool, name="ws.img", format="raw", capacity_gib=6 / 1024, actor=Actor(admin_user)
    )
    with open_ws(stack, f"/ws/volumes/{volume.pk}/upload/", session(client, admin_user)) as ws:
        ws.send(json.dumps({"size": len(data)}))
        job_id = json.loads(ws.recv(timeout=10))["job"]
        acks = []
        for i in range(0, len(data), MIB):
            ws.send(data[i : i + MIB])
            acks.append(json.loads(ws.recv(timeout=30))["received"])
        done = json.loads(ws.recv(timeout=30))
    assert acks == sorted(acks) and acks[-1] == len(data)
    assert done["done"] is True and done["volume"]["name"] == "ws.img"
    assert Job.objects.get(pk=job_id).state == "succeeded"
    with open(volume.path, "rb") as f:
        assert hashlib.sha256(f.read(len(data))).hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_dropped_connection_fails_the_job_and_removes_the_volume(
    stack, transactional_db, client, dir_pool, admin_user
):
    volume = services.create_volume(
        dir_pool, name="half.iso", format="raw", capacity_gib=4 / 1024, actor=Actor(admin_user)
    )
    path = volume.path
    with open_ws(stack, f"/ws/volumes/{volume.pk}/upload/", session(client, admin_user)) as ws:
        ws.send(json.dumps({"size": 4 * MIB}))
        job_id = json.loads(ws.recv(timeout=10))["job"]
        ws.send(os.urandom(MIB))
        assert json.loads(ws.recv(timeout=30))["received"] == MIB
    deadline = time.monotonic() + 30
    while (job := Job.objects.get(pk=job_id)).state in ("queued", "running"):
        assert time.monotonic() < deadline, job.state
        time.sleep(0.2)
    assert job.state == "failed"
    assert "1048576 of 4194304" in job.message
    assert not os.path.exists(path)
    assert not Volume.objects.filter(pk=volume.pk).exists()


def test_uploads_are_refused_outside_scope_to_viewers_and_when_too_big(
    stack, transactional_db, client, dir_pool, admin_user, plain_user, django_user_model
):
    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    volume = services.create_volume(
        dir_pool,
        name="v.img",
        format="raw",
        capacity_gib=1 / 1024,
        project=project,
        actor=Actor(admin_user),
    )
    path = f"/ws/volumes/{volume.pk}/upload/"
    assert refusal(stack, path) == "close 4403"  # anonymous
    outsider = django_user_model.objects.create_user("bob", password="bob-pass-4Kw8")
    assert refusal(stack, path, session(client, outsider)) == "close 4404"
    Membership.objects.create(user=plain_user, project=project, role="viewer")
    assert refusal(stack, path, session(client, plain_user)) == "close 4403"

    with open_ws(stack, path, session(client, admin_user)) as ws:
        ws.send(json.dumps({"size": 2 * MIB}))
        answer = json.loads(ws.recv(timeout=10))
    assert "holds 1048576" in answer["error"]
    assert os.path.getsize(volume.path) == MIB
