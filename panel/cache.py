"""What the panel keeps in Django's cache is stored as JSON, never as a pickle.

Django's Redis cache pickles what it stores and unpickles what it reads, so whoever can
write to that Redis could run code in every panel process. Values here are plain data
(numbers, strings, lists, dicts); a value that is not JSON is refused when stored, and
one found in Redis that is not JSON raises NotJSON when read: an error, never code run.
"""

from __future__ import annotations

import json
from typing import Any


class NotJSON(ValueError):
    """A value read from the cache that is not JSON (a pickle written by someone else)."""


class JSONSerializer:
    """Django's RedisCache serializer: integers as they are (so incr() stays atomic),
    everything else as JSON."""

    def dumps(self, obj: Any) -> int | bytes:
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise NotJSON("a cached value is not JSON") from exc
