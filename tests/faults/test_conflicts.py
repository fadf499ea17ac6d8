# ruff: noqa: F811  (fixtures imported from the VM and migration tests)
"""Two conflicting actions on one VM at the same moment, sent from two processes (the
running web server and this test process) released together by a barrier: exactly one is
done, the other answers 409 naming what it ran into, and the host agrees with the winner.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from panel import hypervisor, services
from panel.actors import Actor
from panel.models import ActionLock, Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, guest, second_host, where  # noqa: F401
from tests.stack import worker_holding_jobs
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
    wait_for,
)
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.sqlite, pytest.mark.timeout(240)]

Answer = tuple[int, dict[str, Any]]
# Start + delete pairs; each round races on a fresh VM.
ROUNDS = 4


def over_http(stack, token: str, method: str, path: str, body: dict | None = None) -> Answer:
    """One API call to the running web server."""
    request = urllib.request.Request(
        stack.url + path,
        data=json.dumps(body or {}).encode() if method == "POST" else None,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def in_process(api, method: str, path: str, body: dict | None = None) -> Answer:
    """The same call through this process's own Django (another process than the web server)."""
    try:
        if method == "POST":
            response = api.post(path, body or {}, format="json")
        else:
            response = api.delete(path)
        return response.status_code, response.json() if response.content else {}
    finally:
        connection.close()


def together(first: Callable[[], Answer], second: Callable[[], Answer]) -> list[Answer]:
    """Run both calls in threads released at the same instant; their answers in order."""
    barrier = threading.Barrier(2)
    answers: list[Answer | None] = [None, None]

    def run(i: int, call: Callable[[], Answer]) -> None:
        barrier.wait()
        answers[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(a is not None for a in answers), answers
    return answers  # type: ignore[return-value]


def token_and_client(user) -> tuple[str, APIClient]:
    """One API token of user, and an in-process client sending it (a new token replaces
    the old one, so both processes must share this one)."""
    token = services.create_token(user, actor=Actor(user)).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return token, client


def finished(job_id: int, timeout: float = 60) -> Job:
    assert wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=timeout, step=0.2), (
        Job.objects.get(pk=job_id).log
    )
    return Job.objects.get(pk=job_id)


def test_it_lets_exactly_one_of_start_and_delete_through(
    stack, transactional_db, make_vm, member, monkeypatch
):
    """The two requests are made to overlap for sure: a start made in this process keeps
    its claim until the delete has its answer, and a delete made here waits until the web
    server's start holds its claim. Otherwise a start could end before the delete is even
    read, and both would rightly go through one after the other."""
    token, api = token_and_client(member)
    delete_answered = threading.Event()
    real_start = hypervisor.start_domain

    def start_once_the_delete_has_its_answer(uri: str, uuid: str) -> hypervisor.DomainInfo:
        assert delete_answered.wait(60), "the delete got no answer within 60 s"
        return real_start(uri, uuid)

    monkeypatch.setattr(hypervisor, "start_domain", start_once_the_delete_has_its_answer)
    for round_ in range(ROUNDS):
        vm = make_vm(running=False)
        delete_answered.clear()
        start_path, delete_path = f"/api/v1/vms/{vm.pk}/start/", f"/api/v1/vms/{vm.pk}/"

        # Alternate which process sends which request.
        if round_ % 2:
            start = partial(over_http, stack, token, "POST", start_path)
            delete = partial(in_process_once_claimed, api, vm.pk, delete_path)
        else:
            start = partial(in_process, api, "POST", start_path)
            delete = partial(over_http, stack, token, "DELETE", delete_path)
        # The delete job is held: run at once, it could finish and remove the row before
        # a slower start request looked the VM up (a right 404 that says nothing here).
        with worker_holding_jobs():
            (start_status, start_body), (delete_status, delete_body) = together(
                start, telling(delete_answered, delete)
            )

        assert sorted([start_status, delete_status]) in ([200, 409], [202, 409]), (
            start_status,
            start_body,
            delete_status,
            delete_body,
        )
        if start_status == 200:
            assert "in progress" in delete_body["detail"] and "start" in delete_body["detail"]
            assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"
            assert VirtualMachine.objects.get(pk=vm.pk).state == "running"
            assert not Job.objects.filter(target=f"vm:{vm.pk}").exists()
        else:
            assert "VM delete" in start_body["detail"], start_body
            job = finished(delete_body["job"])
            assert job.state == "succeeded", job.log
            with pytest.raises(hypervisor.NotFound):
                hypervisor.get_domain(LOCAL_URI, str(vm.pk))
            assert not VirtualMachine.objects.filter(pk=vm.pk).exists()


def telling(event: threading.Event, call: Callable[[], Answer]) -> Callable[[], Answer]:
    """call, setting event once it has its answer (or failed)."""

    def told() -> Answer:
        try:
            return call()
        finally:
            event.set()

    return told


def in_process_once_claimed(api: APIClient, vm_id: object, path: str) -> Answer:
    """The delete sent from this process once the web server's start holds its claim on
    the VM (or after 10 s, when the start was refused before claiming)."""
    try:
        wait_for(lambda: ActionLock.objects.filter(target=f"vm:{vm_id}").exists(), 10, 0.005)
    finally:
        connection.close()
    return in_process(api, "DELETE", path)


def test_it_runs_one_of_two_migrations_and_refuses_the_other(
    stack, transactional_db, guest, member, second_host, second_host_uri
):
    token, api = token_and_client(member)
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    hosts = {vm.host_id: ("running", "absent"), second_host.pk: ("absent", "running")}
    for round_ in range(2):
        row = VirtualMachine.objects.get(pk=vm.pk)
        target = second_host.pk if row.host_id == vm.host_id else vm.host_id
        path = f"/api/v1/vms/{vm.pk}/migrate/"
        body = {"target_host": target, "live": True}
        with worker_holding_jobs():
            answers = together(
                lambda: over_http(stack, token, "POST", path, body),  # noqa: B023
                lambda: in_process(api, "POST", path, body),  # noqa: B023
            )
        statuses = sorted(status for status, _ in answers)
        assert statuses == [202, 409], answers
        (_, won), (_, lost) = sorted(answers, key=lambda a: a[0])
        assert f"job #{won['job']} (VM migration)" in lost["detail"], lost
        job = finished(won["job"], timeout=90)
        assert job.state == "succeeded", job.log
        # One migration ran: the VM runs on the target only, and the panel says so.
        assert where(vm, second_host_uri) == hosts[target], round_
        row = VirtualMachine.objects.get(pk=vm.pk)
        assert (row.host_id, row.state) == (target, "running")
        assert Job.objects.filter(target=f"vm:{vm.pk}", kind="vm.migrate").count() == round_ + 1
