"""One HA monitor acts at a time: a second one stands by while the first holds the
leader lock in the real Redis, and takes over once the first steps down or dies."""

from __future__ import annotations

import time

import pytest

from vms.services import ha_monitor
from vms.services.ha_monitor import Monitor

pytestmark = pytest.mark.django_db


def test_a_second_monitor_stands_by_until_the_first_steps_down(settings):
    first, second = Monitor(), Monitor()
    try:
        assert first.lead()
        assert not second.lead()
        assert first.lead()  # its next pass keeps the lock
        assert not second.lead()

        first.step_down()
        assert second.lead()
        assert not first.lead()
    finally:
        for monitor in (first, second):
            monitor.step_down()
            monitor.pool.shutdown()


def test_the_lock_of_a_monitor_that_died_lapses(settings, monkeypatch):
    settings.PANEL_HA_RENEW_SECONDS = 1
    monkeypatch.setattr(ha_monitor, "LEADER_PASSES", 1)
    dead, standby = Monitor(), Monitor()
    try:
        assert dead.lead()
        assert not standby.lead()
        time.sleep(1.3)  # no pass of the first one: its lock lapses
        assert standby.lead()
    finally:
        standby.step_down()
        for monitor in (dead, standby):
            monitor.pool.shutdown()
