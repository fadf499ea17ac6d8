"""Personas, the real local host and tiny guests (from tests/vms), and a clean stats store."""

from __future__ import annotations

import pytest

from monitoring.store import StatsStore
from tests.vms.conftest import (  # noqa: F401 - fixtures shared with tests/vms
    admin,
    alpha,
    api_for,
    beta,
    client_for,
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
)


@pytest.fixture
def store():
    """The stats store of this test run, emptied before and after the test."""
    store = StatsStore(step=5)

    def wipe() -> None:
        keys = list(store.client.scan_iter(f"{store.prefix}:*"))
        if keys:
            store.client.delete(*keys)

    wipe()
    yield store
    wipe()
