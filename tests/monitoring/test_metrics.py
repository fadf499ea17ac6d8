"""/metrics: refused without credentials or with a non-admin's, served to admins and scrapers."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from monitoring.series import HOST_FIELDS, VM_FIELDS
from panel import services
from panel.actors import Actor

pytestmark = [pytest.mark.libvirt]

SCRAPE_TOKEN = "scrape-3f9a1c27d4"


@pytest.fixture
def with_stats(make_vm, local_host, store, settings):
    settings.PANEL_METRICS_TOKEN = SCRAPE_TOKEN
    vm = make_vm(name='web "1"')
    now = time.time()
    store.write(
        [
            ("vm", str(vm.pk), now, {**dict.fromkeys(VM_FIELDS, 0), "cpu": 37.5}),
            ("host", str(local_host.pk), now, {**dict.fromkeys(HOST_FIELDS, 0), "cpu": 4.25}),
        ]
    )
    return vm


def test_it_refuses_metrics_without_credentials(client, with_stats):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"panel_vm" not in response.content


def test_it_refuses_non_admins_and_wrong_tokens(client_for, people, with_stats):
    assert client_for("operator").get("/metrics").status_code == 403
    member_token = services.create_token(people["member"], actor=Actor(people["member"])).key
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {member_token}").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


def test_it_serves_metrics_to_an_admin_session(client_for, with_stats, local_host):
    response = client_for("admin").get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert (
        f'panel_vm_cpu_percent{{vm="web \\"1\\"",uuid="{with_stats.pk}",host="local",'
        f'project="alpha"}} 37.5' in text
    )
    assert 'panel_host_cpu_percent{host="local"} 4.25' in text
    assert 'panel_vms{state="shutoff"} 1' in text
    assert "# TYPE panel_vm_memory_current_bytes gauge" in text


def test_it_serves_metrics_to_the_scrape_token_and_an_admin_token(people, with_stats):
    ok = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}")
    assert ok.status_code == 200 and b"panel_host_cpu_percent" in ok.content
    admin_token = services.create_token(people["admin"], actor=Actor(people["admin"])).key
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {admin_token}").status_code == 200
