"""The VM list, the VM API list and the dashboard come from the page cache while nothing
changed, and never show anything older than the last change: the real guest's state
changed through the panel, behind its back (virsh + the host's sync), and rows edited.
Per user, with a CSRF token valid for the session that asked, and still served when
the cache cannot be reached."""

from __future__ import annotations

import re
import time

import pytest
import redis
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from panel import pagecache
from panel.services import reconcile_host
from vms import services as vm_services

from .conftest import alerts, texts, virsh

pytestmark = [pytest.mark.django_db, pytest.mark.libvirt]

# Session and user: what any logged-in request reads before its view runs.
BEFORE_THE_VIEW = 2


def state_in_list(response, name: str) -> str:
    cells = texts(response, f"//tr[.//a[normalize-space()='{name}']]//span[@data-vm-state]")
    return cells[0].strip() if cells else ""


def queries(client: Client, path: str, **headers) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, (path, response.status_code)
    return len(captured), response


def test_it_serves_the_list_again_without_rendering_and_shows_a_change_made_by_the_panel(
    make_vm, client_for, people
):
    vm = make_vm(running=True)
    client = client_for("operator")
    first, page = queries(client, "/vms/")
    assert vm.name in page.content.decode()
    again, page = queries(client, "/vms/")
    assert again == BEFORE_THE_VIEW < first
    assert state_in_list(page, vm.name) == "running"

    vm_services.perform_action(vm, "force-off", actor=people["operator"])

    _n, page = queries(client, "/vms/")
    assert state_in_list(page, vm.name) == "shutoff"


def test_it_shows_a_change_made_behind_the_panels_back_once_the_host_is_synced(
    make_vm, client_for, local_host
):
    vm = make_vm(running=True)
    client = client_for("operator")
    api = client_for("operator")
    queries(client, "/vms/")
    _n, listed = queries(api, "/api/v1/vms/", Accept="application/json")
    assert {v["name"]: v["state"] for v in listed.json()["results"]}[vm.name] == "running"

    virsh("destroy", vm.name)
    reconcile_host(local_host, checks=False)

    _n, page = queries(client, "/vms/")
    assert state_in_list(page, vm.name) == "shutoff"
    _n, listed = queries(api, "/api/v1/vms/", Accept="application/json")
    assert {v["name"]: v["state"] for v in listed.json()["results"]}[vm.name] == "shutoff"


def test_it_keeps_each_users_page_to_themselves(make_vm, client_for, people):
    vm = make_vm()
    vm.project = people.beta
    vm.save()
    queries(client_for("outsider"), "/vms/")
    _n, page = queries(client_for("member"), "/vms/")
    assert vm.name not in page.content.decode()
    _n, page = queries(client_for("outsider"), "/vms/")
    assert vm.name in page.content.decode()


def test_a_cached_page_carries_a_csrf_token_the_asking_session_can_post_with(
    make_vm, people, local_host
):
    vm = make_vm(running=True)
    first = Client(enforce_csrf_checks=True)
    first.force_login(people["operator"])
    queries(first, "/vms/")
    second = Client(enforce_csrf_checks=True)
    second.force_login(people["operator"])
    count, page = queries(second, "/vms/")
    assert count == BEFORE_THE_VIEW  # the page the first session made
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)

    response = second.post(
        "/vms/bulk/", {"csrfmiddlewaretoken": token.decode(), "action": "force-off", "vm": vm.pk}
    )

    assert response.status_code == 302
    assert virsh("domstate", vm.name).strip() == "shut off"


def test_it_shows_a_flash_message_once_and_caches_neither_page_with_it(make_vm, client_for):
    make_vm()
    client = client_for("operator")
    queries(client, "/vms/")
    response = client.post("/vms/bulk/", {"action": "start"})  # nothing selected
    assert response.status_code == 302
    _n, page = queries(client, "/vms/")
    assert alerts(page) == ["Select at least one VM first."]
    _n, page = queries(client, "/vms/")
    assert alerts(page) == []


def test_it_renders_the_pages_when_the_cache_cannot_be_reached(make_vm, client_for, monkeypatch):
    vm = make_vm()
    client = client_for("operator")
    # The discard port: nothing listens there.
    monkeypatch.setattr(pagecache, "_client", redis.Redis(port=9, socket_connect_timeout=1))
    # What each page shows of the VM: the lists name it; the dashboard only counts it.
    for path, shown in (("/vms/", vm.name), ("/", "Dashboard"), ("/api/v1/vms/", vm.name)):
        for _ in range(2):
            response = client.get(
                path, headers={"Accept": "application/json"} if "api" in path else {}
            )
            assert response.status_code == 200, path
            assert shown in response.content.decode(), path


def test_an_entry_lives_one_stats_interval_for_the_usage_figures_it_shows(
    make_vm, client_for, settings
):
    settings.PANEL_STATS_INTERVAL = 1
    make_vm()
    client = client_for("operator")
    queries(client, "/vms/")
    again, _page = queries(client, "/vms/")
    assert again == BEFORE_THE_VIEW
    time.sleep(1.2)
    later, _page = queries(client, "/vms/")
    assert later > BEFORE_THE_VIEW  # rendered anew, with the collector's latest figures


def test_the_dashboard_shows_a_job_queued_after_it_was_cached(make_vm, client_for, people):
    from panel import jobs
    from panel.choices import JobKind

    vm = make_vm()
    client = client_for("operator")
    queries(client, "/")
    again, _page = queries(client, "/")
    assert again == BEFORE_THE_VIEW

    job = jobs.create_job(
        JobKind.VM_SHUTDOWN,
        target=f"vm:{vm.pk}",
        actor=people["operator"],
        host=vm.host,
        project=vm.project,
    )

    _n, page = queries(client, "/")
    assert f"/jobs/{job.pk}/" in page.content.decode()
