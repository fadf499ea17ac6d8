"""Adding a host over qemu+tls with the certificates an admin uploads, on the page and
in the API, against a real libvirtd that asks for a client certificate: the host is
added, its certificates kept where libvirt reads them (the key for the panel's user
only), a VM made there boots; each kind of wrong certificate is refused with its cause
and leaves nothing behind."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from panel.actors import Actor
from panel.models import AuditEvent, Host, HostCertificates, Job
from panel.tasks import refresh_host_task
from tests.conftest import kernel_vm, wait_for_console_prompt
from tests.panel.conftest import alerts, has_class, page_text, rows
from tests.tls.conftest import host_set, kept_files, mode
from tests.tls_host import issue, make_ca
from vms.services import create
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db, pytest.mark.timeout(240)]


def api_add(client, name, uri, files):
    body = {"name": name, "uri": uri, **{k: v.decode() for k, v in files.items()}}
    return client.post("/api/v1/hosts/", json.dumps(body), content_type="application/json")


def page_add(client, name, uri, files):
    uploads = {k: SimpleUploadedFile(f"{k}.pem", v) for k, v in files.items()}
    return client.post("/hosts/add/", {"name": name, "uri": uri, **uploads})


def test_it_adds_a_tls_host_through_the_api_and_a_vm_made_there_boots(
    admin_client, admin_user, tls_host_uri, test_pki, pki_dir, panel_test_guest, tls_domains
):
    response = api_add(admin_client, "tls1", tls_host_uri, test_pki.files())

    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["uri"] == tls_host_uri  # no pkipath, no credentials
    assert "client_key" not in answer and "PRIVATE KEY" not in response.content.decode()
    assert answer["certificates"]["client_subject"] == "CN=panel-client"
    assert answer["certificates"]["server_subject"] == "CN=panel-tls-host"
    assert answer["certificates"]["ca_subject"] == "CN=Panel Test CA"
    host = Host.objects.get(name="tls1")
    assert (host.state, host.facts["driver"]) == ("up", "QEMU")
    # libvirt's pkipath layout, the directory and the key for the panel's user only.
    files = host_set(host)
    assert sorted(p.name for p in files.iterdir()) == [
        "cacert.pem",
        "clientcert.pem",
        "clientkey.pem",
    ]
    assert (mode(pki_dir), mode(files), mode(files / "clientkey.pem")) == (0o700, 0o700, 0o600)
    event = AuditEvent.objects.get(action="host.add")
    assert (event.result, event.target) == ("success", "tls1")

    # The refresh reads the host over TLS (and boots its probe guest there).
    refresh_host_task(Job.objects.get(host=host).pk)
    host.refresh_from_db()
    assert host.domain_type in ("kvm", "qemu"), host.checks

    job = create.create_vm(
        create.CreateRequest.parse(
            kernel_vm(_project(admin_user), "tls-guest", host=host.pk, os_variant="generic")
        ),
        actor=Actor(admin_user),
    )
    vm_create_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.log
    vm_id = str(job.result["vm"])
    tls_domains.append(vm_id)
    from panel import hypervisor

    assert hypervisor.get_domain(tls_host_uri, vm_id).state == "running"
    stream = hypervisor.open_console(tls_host_uri, vm_id)
    try:
        wait_for_console_prompt(stream)
    finally:
        stream.close()


def _project(admin_user):
    from panel import services

    return services.create_project(
        name="alpha", quota={"vms": 2, "vcpus": 2, "memory_mib": 512}, actor=Actor(admin_user)
    )


def test_it_adds_a_tls_host_through_the_page_and_shows_how_it_is_reached(
    admin_client, tls_host_uri, test_pki, pki_dir
):
    response = page_add(admin_client, "tls-page", tls_host_uri, test_pki.files())

    host = Host.objects.get(name="tls-page")
    assert response.status_code == 302, page_text(response)
    page = admin_client.get(response.url)
    assert "Host tls-page added; its checks are running." in alerts(page)
    card = " ".join(rows(page, f"//div[{has_class('host-certificates')}]"))
    assert "over TLS (qemu+tls)" in card
    row = HostCertificates.objects.get(host=host)
    assert f"CN=panel-tls-host, expires {row.server_not_after:%Y-%m-%d}" in card
    assert f"CN=panel-client, expires {row.client_not_after:%Y-%m-%d}" in card
    assert f"since {row.since:%Y-%m-%d %H:%M}" in card
    assert "PRIVATE KEY" not in page.content.decode()
    assert len(kept_files(pki_dir)) == 5  # the link, and the set with its three files


def _refused(response, text):
    if response["Content-Type"].startswith("application/json"):
        body = response.content.decode()
    else:
        body = " ".join(rows(response, f"//div[{has_class('invalid-feedback')}]"))
    assert response.status_code == 400, body
    assert text in body, body
    return body


def _bad_uploads(pki):
    other_client = issue(pki.other_ca, "panel-client")
    return {
        "wrong CA": (
            # A CA and client certificate that fit, but not the CA of the host's certificate.
            pki.files(client=other_client, ca=pki.other_ca.cert),
            "is not signed by the uploaded CA certificate",
        ),
        "expired": (
            pki.files(client=issue(pki.ca, "panel-client", expired=True)),
            "The client certificate (CN=panel-client) expired on",
        ),
        "key of another": (
            {**pki.files(), "client_key": issue(pki.ca, "panel-client").key},
            "The client key does not belong to the client certificate",
        ),
        "unrelated CA": (
            pki.files(client=other_client),
            "was issued by CN=Unrelated CA, not by the uploaded CA certificate",
        ),
        "refused by the host": (
            # Signed by the host's CA, but not a subject the host admits (CN=panel-*).
            pki.files(client=issue(pki.ca, "intruder")),
            "its libvirtd refused the client certificate",
        ),
        "both CAs, client of the other": (
            pki.files(client=other_client, ca=pki.ca.cert + pki.other_ca.cert),
            "its libvirtd refused the client certificate",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong CA",
        "expired",
        "key of another",
        "unrelated CA",
        "refused by the host",
        "both CAs, client of the other",
    ],
)
@pytest.mark.parametrize("via", ["api", "page"])
def test_it_refuses_certificates_that_do_not_fit_and_keeps_nothing(
    admin_client, tls_host_uri, test_pki, pki_dir, case, via
):
    files, message = _bad_uploads(test_pki)[case]

    add = api_add if via == "api" else page_add
    _refused(add(admin_client, "tls-bad", tls_host_uri, files), message)

    assert not Host.objects.exists()
    assert not HostCertificates.objects.exists()
    assert not Job.objects.exists()
    assert kept_files(pki_dir) == []


def test_it_names_a_host_certificate_made_for_another_name(
    admin_client, test_pki, tls_host_uri, pki_dir
):
    # The host's certificate names 127.0.0.1 and localhost; "127.1" reaches the same
    # address by a name the certificate does not hold.
    uri = tls_host_uri.replace("127.0.0.1", "127.1")

    body = _refused(api_add(admin_client, "tls-name", uri, test_pki.files()), "is made for")

    assert "localhost, 127.0.0.1, not for 127.1" in body
    assert kept_files(pki_dir) == []


def test_it_asks_for_the_certificates_of_a_tls_host(admin_client, tls_host_uri, pki_dir):
    response = admin_client.post(
        "/api/v1/hosts/",
        json.dumps({"name": "tls-none", "uri": tls_host_uri}),
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "A qemu+tls host needs its certificates" in response.content.decode()
    assert not Host.objects.exists()


def test_it_refuses_certificates_for_a_host_that_is_not_tls(admin_client, test_pki):
    response = api_add(admin_client, "fake", "test:///default", test_pki.files())

    assert response.status_code == 400
    assert "Certificates are for qemu+tls hosts only" in response.content.decode()
    assert not Host.objects.exists()


def test_a_made_up_ca_is_named_too(admin_client, tls_host_uri, test_pki, pki_dir):
    stranger = make_ca("Panel Test CA")  # the same name, another key
    files = test_pki.files(ca=stranger.cert + test_pki.ca.cert)
    files["ca_certificate"] = stranger.cert

    _refused(api_add(admin_client, "tls-x", tls_host_uri, files), "not by the uploaded CA")
