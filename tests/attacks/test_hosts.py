"""Attacks on hosts' libvirt URIs: reading them, and making them run things.

A host's URI says how the panel logs in to it: the user, the address, the port, and the
ssh or TLS options. A member of any project could read it in the host pages, the
dashboard, the API (also by searching the host list by URI, a few letters at a time),
the host's connection error and its websocket, and learn where the hypervisors are and as
whom the panel logs in. And libvirt's URI parameters run programs (`command`, `netcat`)
or open other sockets and files (`socket`, `keyfile`, `known_hosts`, `pkipath`): a host
added with one would have the panel run or read them on its own machine.

What the panel does: admins alone see a host's URI, hostname and connection error; the
others get the host's name, null for the URI and "cannot reach" for the error, and may
search by name only. A host URI may carry only the parameters no_tty, mode, proxy and
sshauth (each with a fixed set of values); any other is refused with 400 before the
panel connects anywhere.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from panel.models import AuditEvent, Host

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

SECRET_URI = "qemu+ssh://deploy@127.0.0.9:2222/system?no_tty=1"
HIDDEN = ("deploy@", "127.0.0.9", "2222", "kvm-secret.internal")


@pytest.fixture
def secret_host(transactional_db) -> Host:
    """A host, down, whose URI, hostname and error tell where it is and who logs in."""
    return Host.objects.create(
        name="kvm-east",
        uri=SECRET_URI,
        state="down",
        domain_type="kvm",
        last_error=f"Cannot connect to {SECRET_URI}: Connection refused by 127.0.0.9:2222",
        facts={"hostname": "kvm-secret.internal", "uri": SECRET_URI, "cpus": 8, "arch": "x86_64"},
    )


def leaks(text: str) -> list[str]:
    return [secret for secret in HIDDEN if secret in text]


def test_it_shows_a_member_no_host_uri_anywhere(attacker, people, secret_host):
    member = attacker("member")
    host = secret_host.pk

    pages = {path: member.page(path) for path in ("/", "/hosts/", f"/hosts/{host}/")}
    api = {
        path: member.api("GET", path)
        for path in ("hosts/", f"hosts/{host}/", "hosts/?search=deploy", "hosts/?search=127.0.0.9")
    }
    with member.ws(f"/ws/hosts/{host}/") as ws:
        pushed = ws.recv(timeout=10)

    for path, response in pages.items():
        assert response.status_code == 200, path
        assert "kvm-east" in response.text, path
        assert leaks(response.text) == [], path
    for path, response in api.items():
        assert response.status_code == 200, path
        assert leaks(response.text) == [], path
    detail = api[f"hosts/{host}/"].json()
    assert (detail["name"], detail["uri"], detail["state"]) == ("kvm-east", None, "down")
    assert detail["capabilities"] == {"cpus": 8, "arch": "x86_64"}
    # Searching by URI finds nothing to tell; by name, the host.
    assert api["hosts/?search=deploy"].json()["count"] == 0
    assert member.api("GET", "hosts/?search=kvm-east").json()["count"] == 1
    assert leaks(pushed) == []
    assert json.loads(pushed)["host"]["name"] == "kvm-east"

    # An admin still sees all of it.
    admin = attacker("admin")
    assert admin.api("GET", f"hosts/{host}/").json()["uri"] == SECRET_URI
    assert SECRET_URI in admin.page(f"/hosts/{host}/").text
    assert admin.api("GET", "hosts/?search=deploy").json()["count"] == 1


@pytest.fixture
def program(tmp_path) -> tuple[Path, Path]:
    """An executable that leaves a file behind when anything runs it: (program, its mark)."""
    mark = tmp_path / "it-ran"
    script = tmp_path / "payload.sh"
    script.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script, mark


def add_host(admin, name: str, uri: str):
    return admin.api("POST", "hosts/", json={"name": name, "uri": uri})


def refused(response, parameter: str) -> bool:
    return (
        response.status_code == 400
        and f"The URI parameter '{parameter}' is not allowed" in response.text
    )


def test_it_refuses_a_host_uri_whose_command_would_run_a_program(attacker, program):
    script, mark = program
    admin = attacker("admin")

    response = add_host(admin, "kvm-cmd", f"qemu+ssh://127.0.0.1/system?command={script}")

    assert not mark.exists(), "the panel ran the URI's command"
    assert refused(response, "command"), response.text
    assert not Host.objects.filter(name="kvm-cmd").exists()


def test_it_refuses_a_host_uri_that_opens_another_socket(attacker, tmp_path):
    path = str(tmp_path / "listener.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(1)
    listener.settimeout(20)
    reached: list[bool] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        reached.append(True)
        conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    admin = attacker("admin")
    try:
        response = add_host(admin, "kvm-sock", f"qemu+unix:///system?socket={path}")
    finally:
        listener.close()
        thread.join(30)

    assert reached == [], "the panel connected to the URI's socket"
    assert refused(response, "socket"), response.text


@pytest.mark.parametrize(
    ("parameter", "uri"),
    [
        ("netcat", "qemu+ssh://127.0.0.1/system?netcat=/tmp/x"),
        ("keyfile", "qemu+ssh://127.0.0.1/system?keyfile=/etc/shadow"),
        ("known_hosts", "qemu+ssh://127.0.0.1/system?known_hosts=/etc/shadow"),
        ("pkipath", "qemu+tls://127.0.0.1/system?pkipath=/root"),
        ("no_verify", "qemu+tls://127.0.0.1/system?no_verify=1"),
        ("name", "qemu+tcp://127.0.0.1/system?name=test:///default"),
        ("command", "qemu+ssh://127.0.0.1/system?no_tty=1&%63ommand=/bin/true"),
    ],
)
def test_it_refuses_each_uri_parameter_that_reaches_beyond_the_host(attacker, parameter, uri):
    admin = attacker("admin")

    response = add_host(admin, f"kvm-{parameter}", uri)

    assert refused(response, parameter), response.text
    assert not Host.objects.filter(name=f"kvm-{parameter}").exists()
    # Refused before any connection: no failed host.add was recorded for it.
    assert not AuditEvent.objects.filter(action="host.add", target=uri).exists()
