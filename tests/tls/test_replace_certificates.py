"""Replacing the certificates of a qemu+tls host, from its page and in the API: the new
set is verified against the host first; the old one stays in use until the host accepts
the new one, and stays when it does not. Removing the host removes its certificates."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from panel import hypervisor
from panel.models import AuditEvent, Host, HostCertificates
from tests.panel.conftest import alerts
from tests.tls.conftest import host_set, kept_files
from tests.tls_host import issue

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db, pytest.mark.timeout(120)]


@pytest.fixture
def tls_host(admin_client, tls_host_uri, test_pki) -> Host:
    body = {"name": "tls1", "uri": tls_host_uri, **_text(test_pki.files())}
    response = admin_client.post("/api/v1/hosts/", json.dumps(body), "application/json")
    assert response.status_code == 201, response.content
    return Host.objects.get(name="tls1")


def _text(files):
    return {k: v.decode() for k, v in files.items()}


def test_it_replaces_the_certificates_from_the_page(admin_client, tls_host, test_pki):
    before = host_set(tls_host)
    renewed = issue(test_pki.ca, "panel-client-2026", days=800)
    uploads = {
        k: SimpleUploadedFile(f"{k}.pem", v) for k, v in test_pki.files(client=renewed).items()
    }

    response = admin_client.post(f"/hosts/{tls_host.pk}/certificates/", uploads)

    assert response.status_code == 302
    page = admin_client.get(response.url)
    assert alerts(page)[0].startswith("tls1 accepted the new certificates")
    row = HostCertificates.objects.get(host=tls_host)
    assert row.client_subject == "CN=panel-client-2026"
    assert "CN=panel-client-2026, expires" in page.content.decode()
    after = host_set(tls_host)
    assert after != before and not before.exists()
    assert (after / "clientcert.pem").read_bytes() == renewed.cert
    # The panel reaches the host with them.
    assert hypervisor.host_facts(tls_host.uri).driver == "QEMU"
    event = AuditEvent.objects.get(action="host.certificates")
    assert (event.result, event.target) == ("success", "tls1")
    assert "CN=panel-client-2026" in event.detail


def test_it_keeps_the_old_certificates_when_the_host_refuses_the_new(
    admin_client, tls_host, test_pki
):
    before = host_set(tls_host)
    row_before = HostCertificates.objects.get(host=tls_host)
    body = _text(test_pki.files(client=issue(test_pki.ca, "intruder")))

    response = admin_client.post(
        f"/api/v1/hosts/{tls_host.pk}/certificates/", json.dumps(body), "application/json"
    )

    assert response.status_code == 400
    assert "its libvirtd refused the client certificate" in response.content.decode()
    assert host_set(tls_host) == before
    assert (before / "clientcert.pem").read_bytes() == test_pki.client.cert
    assert HostCertificates.objects.get(host=tls_host).since == row_before.since
    assert sorted(p.name for p in before.parent.iterdir() if not p.is_symlink()) == [before.name]
    assert AuditEvent.objects.get(action="host.certificates").result == "failure"


def test_it_replaces_the_certificates_in_the_api(admin_client, tls_host, test_pki):
    renewed = issue(test_pki.ca, "panel-client-api")

    response = admin_client.post(
        f"/api/v1/hosts/{tls_host.pk}/certificates/",
        json.dumps(_text(test_pki.files(client=renewed))),
        "application/json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["client_subject"] == "CN=panel-client-api"
    assert "client_key" not in response.json()
    detail = admin_client.get(f"/api/v1/hosts/{tls_host.pk}/").json()
    assert detail["certificates"]["client_subject"] == "CN=panel-client-api"


def test_it_refuses_certificates_for_a_host_that_is_not_tls(admin_client, test_pki):
    host = Host.objects.create(name="fake", uri="test:///default", state="up")

    response = admin_client.post(
        f"/api/v1/hosts/{host.pk}/certificates/",
        json.dumps(_text(test_pki.files())),
        "application/json",
    )

    assert response.status_code == 400
    assert "fake is not reached over TLS" in response.content.decode()


def test_removing_the_host_removes_its_certificates(admin_client, tls_host, pki_dir):
    assert kept_files(pki_dir)

    response = admin_client.delete(f"/api/v1/hosts/{tls_host.pk}/")

    assert response.status_code == 204
    assert kept_files(pki_dir) == []


def test_the_page_warns_of_a_certificate_that_expires_soon(admin_client, tls_host, test_pki):
    soon = issue(test_pki.ca, "panel-client-short", days=10)
    response = admin_client.post(
        f"/api/v1/hosts/{tls_host.pk}/certificates/",
        json.dumps(_text(test_pki.files(client=soon))),
        "application/json",
    )
    assert response.status_code == 200, response.content

    page = admin_client.get(f"/hosts/{tls_host.pk}/")

    assert "The client certificate expires within 30 days: replace it below" in " ".join(
        alerts(page)
    )
