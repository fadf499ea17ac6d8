"""The personas of tests/vms (admin; alpha: operator, member, member2, viewer; beta:
outsider) and their subscriptions."""

from __future__ import annotations

from typing import Any

import pytest

from panel.choices import NotificationKind
from panel.models import Subscription
from tests.vms.conftest import (  # noqa: F401 - fixtures used by the tests here
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
    watcher,
)


def subscribe(user: Any, *kinds: str, project: Any = None, **where: Any) -> Subscription:
    """A subscription as the service saves it, without its checks (the tests of the
    checks go through the service)."""
    return Subscription.objects.create(user=user, kinds=list(kinds), project=project, **where)


@pytest.fixture
def subscribe_all(people):  # noqa: F811 - the fixture imported above
    """Everyone subscribed to every kind in all their projects, in the panel only."""

    def make() -> dict[str, Subscription]:
        return {
            name: subscribe(people[name], *NotificationKind.values)
            for name in ("admin", "operator", "member", "viewer", "outsider")
        }

    return make
