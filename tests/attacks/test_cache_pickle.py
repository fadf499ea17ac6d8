"""Attack: write a pickle into the panel's Redis cache so that a panel process runs it.

Django's Redis cache unpickles what it reads by default, so a value planted by whoever
can write to that Redis (a leaked password, a neighbour on the same instance) would run
as the panel when read. The panel stores its cache values as JSON (panel/cache.py): a
planted pickle is an error when read, and nothing runs.
"""

from __future__ import annotations

import os
import pickle

import pytest
import redis
from django.core.cache import cache

from panel.cache import NotJSON


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, settings):
    marker = tmp_path / "ran"
    key = cache.make_and_validate_key("login-note")
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    client.set(key, pickle.dumps(_Payload(str(marker))))
    try:
        with pytest.raises(NotJSON):
            cache.get("login-note")
        assert not marker.exists(), "the planted pickle ran in the panel's process"
    finally:
        client.delete(key)


def test_plain_values_still_round_trip():
    cache.set("round-trip", {"a": [1, "b"]}, 30)
    assert cache.get("round-trip") == {"a": [1, "b"]}
    cache.set("counter", 1, 30)
    assert cache.incr("counter") == 2
    cache.delete_many(["round-trip", "counter"])


def test_a_value_that_is_not_plain_data_is_refused_when_stored():
    with pytest.raises(TypeError):
        cache.set("not-data", object(), 30)
