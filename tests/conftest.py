"""Shared fixtures: users, the tiny guest on the real libvirtd, the running stack."""

from __future__ import annotations

import contextlib
import uuid as uuidlib

import pytest

from panel import hypervisor

pytest_plugins = ["tests.second_host", "tests.stack", "tests.browser"]

LOCAL_URI = "qemu:///system"
ADMIN_PASSWORD = "admin-pass-9d3k"


@pytest.fixture(autouse=True)
def _fresh_page_cache():
    """Every test starts with no cached pages: rows of earlier tests are gone, their pages too."""
    from panel import pagecache

    pagecache.bump()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.test", ADMIN_PASSWORD)


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.test", "alice-pass-7Hq2")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def user_client(client, plain_user):
    client.force_login(plain_user)
    return client


def guest_spec(guest, name: str | None = None, **overrides) -> hypervisor.DomainSpec:
    """A DomainSpec that boots the tiny guest by direct kernel boot under TCG."""
    values = {
        "name": name or f"paneltest-{uuidlib.uuid4().hex[:8]}",
        "domain_type": "qemu",
        "memory_mib": 96,
        "vcpus": 1,
        "kernel": guest.kernel,
        "initrd": guest.initrd,
        "cmdline": "console=ttyS0 quiet",
        "vnc": False,
    }
    values.update(overrides)
    return hypervisor.DomainSpec(**values)


@pytest.fixture
def tiny_guest(panel_test_guest):
    """The tiny guest running (transient) on the real local libvirtd; gone afterwards."""
    info = hypervisor.create_transient(LOCAL_URI, guest_spec(panel_test_guest))
    try:
        yield info
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, info.uuid)


def wait_for_console_prompt(stream: hypervisor.ConsoleStream, timeout: float = 30.0) -> None:
    """Wait for the guest's shell: its init prints a ready line, then the prompt."""
    stream.read_until(b"panel-test-guest ready", timeout)
    stream.read_until(b"guest# ", timeout)
