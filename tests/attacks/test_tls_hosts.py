"""Attacks on the certificates of qemu+tls hosts.

A host's certificates are the panel's key to the hypervisor: whoever reads the client key
can talk to that libvirtd as the panel. And the upload is a file the panel parses and
writes on its own disk. An attacker (or a careless admin) tries: a URI whose parameters
point libvirt at other files (pkipath), switch the host check off (no_verify) or run a
program (command), with certificates attached; a "certificate" that is a huge file or
binary junk; reading the stored key back through any page or API answer, or as another
user of the machine.

What the panel does: the typed URI may carry none of those parameters (400 before any
connection, nothing stored); the files are parsed as PEM within 64 KiB each and refused
cleanly otherwise; the key is written 0600 in a 0700 directory of the panel's user,
re-encoded (nothing but the key), and no page or API answer ever holds it.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from panel import hypervisor
from panel.models import AuditEvent, Host

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def _text(files):
    return {k: v.decode() for k, v in files.items()}


def _staged(uri: str) -> list[str]:
    """Anything the panel keeps for uri: its link or a staged set beside it."""
    link = hypervisor.pki_path(uri)
    if not link.parent.exists():
        return []
    return [p.name for p in link.parent.iterdir() if p.name.startswith(link.name)]


@pytest.mark.parametrize(
    ("parameter", "query"),
    [
        ("pkipath", "pkipath=/root"),
        ("no_verify", "no_verify=1"),
        ("command", "command=/bin/true"),
        ("pkipath", "mode=direct&pkipath=/etc/pki/libvirt"),
    ],
)
def test_it_refuses_a_tls_uri_that_picks_its_own_files_or_checks(
    attacker, tls_host_uri, test_pki, parameter, query
):
    admin = attacker("admin")
    uri = f"{tls_host_uri}?{query}"

    response = admin.api(
        "POST", "hosts/", json={"name": "kvm-tls", "uri": uri, **_text(test_pki.files())}
    )

    assert response.status_code == 400, response.text
    assert f"The URI parameter '{parameter}' is not allowed" in response.text
    assert not Host.objects.filter(name="kvm-tls").exists()
    assert not AuditEvent.objects.filter(action="host.add", target=uri).exists()
    assert _staged(tls_host_uri) == []


@pytest.mark.parametrize(
    ("what", "blob", "message"),
    [
        ("huge", b"-----BEGIN CERTIFICATE-----\n" + b"A" * (3 << 20), "is over 64 KiB"),
        ("junk", os.urandom(4096), "is not a PEM certificate"),
        ("a key", None, "is not a PEM certificate"),
    ],
)
def test_it_refuses_a_certificate_that_is_something_else(
    attacker, tls_host_uri, test_pki, what, blob, message
):
    admin = attacker("admin")
    files = test_pki.files()
    files["ca_certificate"] = test_pki.client.key if blob is None else blob

    response = admin.post_form(
        "/hosts/add/",
        {"name": "kvm-junk", "uri": tls_host_uri},
        files={k: (f"{k}.pem", v) for k, v in files.items()},
    )

    assert response.status_code == 400, response.text[:500]
    assert f"The CA certificate {message}" in response.text
    assert not Host.objects.filter(name="kvm-junk").exists()
    assert _staged(tls_host_uri) == []


def test_it_refuses_junk_in_the_api_too(attacker, tls_host_uri, test_pki):
    admin = attacker("admin")
    body = {"name": "kvm-junk", "uri": tls_host_uri, **_text(test_pki.files())}
    body["client_key"] = "\x01binary\xff\u202e" * 1000

    response = admin.api("POST", "hosts/", json=body)

    assert response.status_code == 400, response.text
    assert "The client key is not a PEM private key" in response.text
    assert _staged(tls_host_uri) == []


def test_the_stored_key_is_for_the_panel_alone_and_never_served(
    attacker, people, tls_host_uri, test_pki
):
    admin = attacker("admin")
    response = admin.api(
        "POST", "hosts/", json={"name": "kvm-tls", "uri": tls_host_uri, **_text(test_pki.files())}
    )
    assert response.status_code == 201, response.text
    host = Host.objects.get(name="kvm-tls")
    try:
        link = hypervisor.pki_path(host.uri)
        key = link.resolve() / "clientkey.pem"
        assert (link.parent.stat().st_mode & 0o777, link.resolve().stat().st_mode & 0o777) == (
            0o700,
            0o700,
        )
        assert key.stat().st_mode & 0o777 == 0o600
        # Another user of the machine cannot read it.
        read = subprocess.run(
            ["runuser", "-u", "nobody", "--", "cat", str(key)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert read.returncode != 0 and "Permission denied" in read.stderr
        secret = key.read_text().splitlines()[1]  # a line of the key's body

        answers = [response.text]
        for persona in ("admin", "member"):
            who = attacker(persona)
            answers += [who.page(p).text for p in ("/", "/hosts/", f"/hosts/{host.pk}/")]
            answers += [
                who.api("GET", p).text
                for p in ("hosts/", f"hosts/{host.pk}/", "audit-events/", "jobs/")
            ]
        answers.append(admin.page("/audit/").text)
        # What the certificates are is for admins; others learn nothing of them.
        member = attacker("member").api("GET", f"hosts/{host.pk}/").json()
        assert member["certificates"] is None and member["uri"] is None
        for text in answers:
            assert "PRIVATE KEY" not in text
            assert secret not in text
            assert str(link.parent) not in text
    finally:
        assert admin.api("DELETE", f"hosts/{host.pk}/").status_code == 204
    assert _staged(tls_host_uri) == []
