"""Live migration of the running tiny guest between the two real hosts, through the
service and its job (run inline here), with progress and the inventory following."""

from __future__ import annotations

import secrets

import pytest

from panel import events
from panel.models import AuditEvent, Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, where
from vms.models import VirtualMachine
from vms.tasks import vm_migrate_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


@pytest.fixture
def job_events(monkeypatch):
    """The job payloads the task pushes to browsers, in order."""
    seen: list[dict] = []
    original = events.publish

    def spy(group, payload):
        if payload.get("type") == "job.update":
            seen.append(payload["job"])
        return original(group, payload)

    monkeypatch.setattr(events, "publish", spy)
    return seen


def in_guest(uri: str, uuid: str, command: str) -> list[str]:
    """The lines command prints at the guest's shell prompt, on its console on that host."""
    # The shell works out the end mark, so the echo of the typed line never matches it.
    raw = console_says(uri, uuid, f"{command}; echo end-$((6*7))".encode(), b"end-42\r\n")
    lines = [line.strip() for line in raw.decode(errors="replace").splitlines()]
    end = lines.index("end-42")
    # What comes after the terminal's echo of the typed command (a prompt may precede it).
    typed = max(i for i, line in enumerate(lines[:end]) if line.endswith("echo end-$((6*7))"))
    return [line for line in lines[typed + 1 : end] if line]


def uptime(uri: str, uuid: str) -> float:
    """Seconds since the guest's kernel booted, from its /proc/uptime."""
    (line,) = in_guest(uri, uuid, "cat /proc/uptime")
    return float(line.split()[0])


def test_it_migrates_the_running_guest_there_and_back(
    guest, api_for, local_host, second_host, second_host_uri, job_events
):
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo before-$((6*7))", b"before-42", boot=True)
    # A mark in the guest's RAM file system: only the same running guest still has it.
    token = secrets.token_hex(8)
    assert in_guest(LOCAL_URI, str(vm.pk), f"echo {token} > /tmp/marker") == []
    up_before = uptime(LOCAL_URI, str(vm.pk))

    # At 4 MiB/s the guest's memory takes a few seconds to send: long enough for the job
    # to report its progress whatever the machine's speed.
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        {
            "target_host": second_host.pk,
            "live": True,
            "persistent": True,
            "undefine_source": True,
            "bandwidth_mib": 4,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    vm_migrate_task(job_id)

    job = Job.objects.get(pk=job_id)
    assert (job.state, job.kind, job.progress) == ("succeeded", "vm.migrate", 100), job.log
    assert job.message == f"{vm.name} now runs on second."
    progress = [e["progress"] for e in job_events if e["id"] == job_id]
    assert progress == sorted(progress) and progress[-1] == 100
    assert any("MiB sent" in e["message"] for e in job_events if e["id"] == job_id)
    # Where libvirt has it, and where the panel shows it.
    assert where(vm, second_host_uri) == ("absent", "running")
    moved = VirtualMachine.objects.get(pk=vm.pk)
    assert (moved.host, moved.state, moved.project, moved.owner) == (
        second_host,
        "running",
        vm.project,
        vm.owner,
    )
    assert moved.persistent
    assert b"hello-42" in console_says(
        second_host_uri, str(vm.pk), b"echo hello-$((6*7))", b"hello-42"
    )
    # Moved while running, not restarted there: its RAM still holds the mark and its
    # clock did not start again.
    assert in_guest(second_host_uri, str(vm.pk), "cat /tmp/marker") == [token]
    assert uptime(second_host_uri, str(vm.pk)) > up_before
    audit = AuditEvent.objects.filter(action="vm.migrate", target=vm.name).order_by("pk")
    assert [(a.username, a.result) for a in audit] == [("member", "success"), ("member", "success")]
    assert "now on second (from local)" in audit.last().detail

    # And back, with the same API call naming the local host.
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": local_host.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    vm_migrate_task(response.json()["job"])
    assert Job.objects.get(pk=response.json()["job"]).state == "succeeded"
    assert where(vm, second_host_uri) == ("running", "absent")
    assert VirtualMachine.objects.get(pk=vm.pk).host == local_host
    assert b"back-7" in console_says(LOCAL_URI, str(vm.pk), b"echo back-$((3+4))", b"back-7")
    assert in_guest(LOCAL_URI, str(vm.pk), "cat /tmp/marker") == [token]
