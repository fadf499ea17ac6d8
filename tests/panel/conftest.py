"""Helpers shared by the panel's tests: hosts as the database holds them, and
reading pages (and job logs) the way a user reads them."""

from __future__ import annotations

import functools
import html
import re

import pytest
from lxml import html as lxml_html

from panel.models import Host, Membership, Project

GIB = 1024**3
FAKE_URI = "test:///default"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"
# A line of a job's log: its time stamp, then what the job wrote.
STAMPED = re.compile(r"^\d\d:\d\d:\d\d (.*)$")

# Facts as panel.services.add_host stores them, for a 128 GiB two-cell host.
FACTS = {
    "hostname": "kvm01.example.test",
    "uri": "qemu+ssh://root@kvm01.example.test/system",
    "driver": "QEMU",
    "libvirt_version": "9.0.0",
    "hypervisor_version": "7.2.0",
    "arch": "x86_64",
    "cpu_model": "EPYC-Rome",
    "cpu_vendor": "AMD",
    "cpus": 16,
    "mhz": 2900,
    "sockets": 1,
    "cores": 8,
    "threads": 2,
    "numa_cells": [
        {"id": 0, "memory_bytes": 64 * GIB, "cpus": 8},
        {"id": 1, "memory_bytes": 64 * GIB, "cpus": 8},
    ],
    "memory_total_bytes": 128 * GIB,
    "memory_free_bytes": 100 * GIB,
    "host_uuid": "5a3c8a2e-0000-4000-8000-000000000001",
    "is_local": False,
    "cpu_features": ["svm"],
    # 2 GiB + 0.5 GiB per 64 GiB of memory.
    "reserved_memory_bytes": 3 * GIB,
}

CHECKS = [
    {"name": "Hardware virtualization", "status": "pass", "detail": "The CPU offers AMD-V (svm)."},
    {"name": "IOMMU", "status": "warn", "detail": "No IOMMU groups: PCI passthrough impossible."},
    {"name": "KVM guests run", "status": "fail", "detail": "A guest printed nothing in 12 s."},
]


def make_host(name: str = "kvm01", **fields) -> Host:
    values = {
        "uri": f"qemu+ssh://root@{name}.example.test/system",
        "state": "up",
        "domain_type": "kvm",
        "facts": FACTS,
        "checks": CHECKS,
    }
    values.update(fields)
    return Host.objects.create(name=name, **values)


@pytest.fixture
def host(db) -> Host:
    return make_host()


@pytest.fixture
def operator_user(plain_user):
    """alice as operator of a project that may use every host: she sees the hosts
    but, not being an admin, may not change them."""
    project = Project.objects.create(name="team")
    Membership.objects.create(user=plain_user, project=project, role="operator")
    return plain_user


@pytest.fixture
def outsider_user(django_user_model):
    """bob, in no project: hosts, pools and networks do not exist for him."""
    return django_user_model.objects.create_user("bob", "bob@example.test", "bob-pass-4Kw8")


@pytest.fixture
def operator_client(client, operator_user):
    client.force_login(operator_user)
    return client


def page_text(response) -> str:
    """The page as a user reads it: tags gone, entities decoded, whitespace collapsed."""
    doc = lxml_html.fromstring(response.content.decode())
    return re.sub(r"\s+", " ", doc.text_content().replace("\xa0", " "))


def rows(response, xpath: str) -> list[str]:
    """The text of each element the XPath finds, whitespace collapsed."""
    doc = lxml_html.fromstring(response.content.decode())
    return [
        re.sub(r"\s+", " ", el.text_content().replace("\xa0", " ")).strip()
        for el in doc.xpath(xpath)
    ]


def alerts(response) -> list[str]:
    return rows(response, "//div[@role='alert']")


def has_class(name: str) -> str:
    """An XPath predicate: the element has the CSS class name."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


def unescaped(response) -> str:
    return html.unescape(response.content.decode())


def queued_tasks(callbacks) -> list[tuple[str, tuple]]:
    """The task names and arguments the delay_on_commit callbacks among callbacks would send
    (the others queue nothing)."""
    return [
        (c.func.__self__.name, c.args)
        for c in callbacks
        if isinstance(c, functools.partial) and hasattr(c.func, "__self__")
    ]


@pytest.fixture(autouse=True)
def fast_password_hashing(request, settings):
    """Hash test passwords cheaply; the stack's own processes keep the real hashers,
    so tests that log in through them keep them too."""
    if request.node.get_closest_marker("stack") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
