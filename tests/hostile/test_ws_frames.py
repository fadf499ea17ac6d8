"""Malformed websocket frames on the real web server: every route answers with an error or
closes, the server logs no traceback, and it keeps serving other clients.

The console routes are opened without a ticket (refused at once, then sent
frames anyway); their relaying of real input is covered in tests/consoles/.
"""

from __future__ import annotations

import json
from urllib.request import urlopen

import pytest
from websockets.exceptions import ConnectionClosed

from panel import jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.models import Host
from panel.services.hosts import reconcile_host
from storage import services
from tests.panel.conftest import FACTS, FAKE_URI
from tests.stack import open_ws
from tests.storage.conftest import MIB
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(120)]

GARBAGE = [
    "not json {",
    "[1, 2, 3]",
    '{"type": "no.such.handler"}',
    '"just a string"',
    b"\x00\xff\xfe binary",
    "x" * (MIB // 2),
    b"\x00" * (MIB // 2),
]
# Above the web server's 2 MiB frame limit: the server drops the connection.
HUGE = b"\x00" * (4 * MIB)


def _answers(ws, frames) -> list[str]:
    """Send each frame; collect what came back until the server went quiet or closed."""
    seen = []
    try:
        for frame in frames:
            ws.send(frame)
            try:
                seen.append(ws.recv(timeout=3))
            except TimeoutError:
                seen.append("(silence)")
        ws.send("after everything")
    except ConnectionClosed as exc:
        seen.append(f"close {exc.rcvd.code if exc.rcvd else None}")
    return seen


def _tracebacks(stack) -> int:
    return (stack.logs / "web.log").read_text(errors="replace").count("Traceback")


@pytest.fixture
def session_id(transactional_db, client, admin_user) -> str:
    client.force_login(admin_user)
    return client.cookies["sessionid"].value


@pytest.fixture
def fake_world(transactional_db, admin_user):
    host = Host.objects.create(
        name="fake", uri=FAKE_URI, state="up", facts=FACTS, domain_type="qemu"
    )
    reconcile_host(host, checks=False)
    job = jobs.create_job(
        JobKind.HOST_REFRESH, target="host:fake", actor=Actor(admin_user), host=host
    )
    return host, job, VirtualMachine.objects.get(name="test")


def test_update_sockets_answer_garbage_with_an_error(stack, fake_world, session_id):
    host, job, vm = fake_world
    before = _tracebacks(stack)
    paths = (
        f"/ws/jobs/{job.pk}/",
        f"/ws/hosts/{host.pk}/",
        f"/ws/vms/{vm.pk}/",
        f"/ws/vm-rows/?ids={vm.pk}",
    )
    for path in paths:
        with open_ws(stack, path, session_id) as ws:
            json.loads(ws.recv(timeout=10))  # the snapshot
            answers = _answers(ws, GARBAGE)
        assert answers[: len(GARBAGE)] == [answers[0]] * len(GARBAGE), (path, answers)
        assert "takes no messages" in json.loads(answers[0])["error"]
        with open_ws(stack, path, session_id) as ws:
            json.loads(ws.recv(timeout=10))
            with pytest.raises(ConnectionClosed):
                ws.send(HUGE)
                ws.recv(timeout=10)
        with open_ws(stack, path, session_id) as ws:
            assert json.loads(ws.recv(timeout=10)), "a new client is still served"
    assert _tracebacks(stack) == before
    assert urlopen(stack.url + "/login/", timeout=5).status == 200


@pytest.mark.parametrize(
    "opening",
    ["not json {", "[1, 2]", '"size"', '{"size": "lots"}', '{"size": [1]}', b"\x01\x02"],
)
def test_the_upload_socket_refuses_a_bad_opening(
    stack, transactional_db, dir_pool, session_id, admin_user, opening
):
    volume = services.create_volume(
        dir_pool,
        name="ws-garbage.img",
        format="raw",
        capacity_gib=1 / 1024,
        actor=Actor(admin_user),
    )
    before = _tracebacks(stack)
    with open_ws(stack, f"/ws/volumes/{volume.pk}/upload/", session_id) as ws:
        answers = _answers(ws, [opening, b"data after the refusal"])
    assert _tracebacks(stack) == before, answers
    assert "error" in json.loads(answers[0]), answers
    assert answers[-1].startswith("close 4"), answers
    with open(volume.path, "rb") as f:
        assert f.read(64) == b"\x00" * 64


def test_the_upload_socket_ignores_bytes_past_the_announced_size(
    stack, transactional_db, dir_pool, session_id, admin_user
):
    volume = services.create_volume(
        dir_pool, name="ws-more.img", format="raw", capacity_gib=2 / 1024, actor=Actor(admin_user)
    )
    before = _tracebacks(stack)
    with open_ws(stack, f"/ws/volumes/{volume.pk}/upload/", session_id) as ws:
        ws.send(json.dumps({"size": MIB}))
        assert "job" in json.loads(ws.recv(timeout=10))
        ws.send(b"\x07" * (MIB // 2))
        assert json.loads(ws.recv(timeout=30))["received"] == MIB // 2
        ws.send(b"\x07" * (MIB // 2 + 4096))
        assert json.loads(ws.recv(timeout=30))["received"] == MIB
        done = json.loads(ws.recv(timeout=30))
        assert done.get("done") is True, done
    with open(volume.path, "rb") as f:
        data = f.read(MIB + 4096)
    assert data[:MIB] == b"\x07" * MIB and data[MIB:] == b"\x00" * 4096
    assert _tracebacks(stack) == before


def test_console_sockets_without_a_ticket_close_and_stay_closed(stack, fake_world, session_id):
    _host, _job, vm = fake_world
    before = _tracebacks(stack)
    for path in (f"/ws/vms/{vm.pk}/serial/", f"/ws/vms/{vm.pk}/vnc-view/"):
        with open_ws(stack, path, session_id) as ws:
            answers = _answers(ws, GARBAGE)
        assert answers[-1].startswith("close 4"), (path, answers)
    assert _tracebacks(stack) == before
