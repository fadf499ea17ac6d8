"""Where the time series live: Redis, as capped lists of compact points.

Why Redis and not the database: a thousand VMs every 5 s is 200 writes a
second that nobody ever updates or joins, read back a range at a time.
Redis is already required (channel layer, Celery broker), a capped list
(RPUSH + LTRIM) bounds each series' memory by construction so retention needs
no cleanup job, and losing the history with Redis loses nothing the panel
needs to work. The database keeps the inventory; this keeps only numbers.

Keys, under the channel layer's prefix (each test run has its own):
``<prefix>:stats:<kind>:<id>:<tier>`` a list of JSON ``[t, v1, v2, ...]`` in
the order of series.STORED[kind]; ``<prefix>:stats:latest:<kind>`` a hash
``id -> {"t": ..., field: value}`` of the newest sample of each series;
``<prefix>:stats:busiest:<kind>`` a sorted set ``id -> CPU %`` of those samples, so the
busiest of a hundred thousand VMs are read without reading them all.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import redis
from django.conf import settings

from panel import redis_client
from panel.exceptions import UnavailableError

from .series import RANGES, STORED, Tier, tiers

T = TypeVar("T")


class StatsUnavailable(UnavailableError):
    """Redis, where the stats live, cannot be reached."""


def _reads(method: Callable[..., T]) -> Callable[..., T]:
    """A read of the store: Redis being away is StatsUnavailable (a 503), not a crash."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StatsUnavailable(
                "Usage statistics are unavailable: the panel cannot reach Redis "
                f"({exc}). They come back by themselves once Redis runs again."
            ) from exc

    return wrapper


def _client() -> redis.Redis:
    return redis_client.client()


def prefix() -> str:
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:stats"


def interval() -> int:
    """Seconds between two collections (PANEL_STATS_INTERVAL, default 5)."""
    return int(getattr(settings, "PANEL_STATS_INTERVAL", os.environ.get("PANEL_STATS_INTERVAL", 5)))


class StatsStore:
    """Writes a collection's samples in one pipeline; reads latest values and ranges."""

    def __init__(self, step: int | None = None, client: redis.Redis | None = None) -> None:
        self.tiers = tiers(step or interval())
        self.client = client or _client()
        self.prefix = prefix()

    def key(self, kind: str, ident: str, tier: Tier) -> str:
        return f"{self.prefix}:{kind}:{ident}:{tier.name}"

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)

    @staticmethod
    def _point(kind: str, t: float, values: dict) -> str:
        return json.dumps([round(t, 2), *(values[f] for f in STORED[kind])], separators=(",", ":"))

    def write(
        self,
        raw: Iterable[tuple[str, str, float, dict]],
        rollups: Iterable[tuple[str, str, Tier, int, dict]] = (),
    ) -> None:
        """Store raw samples (kind, id, t, values) and finished rollup buckets; trim each list."""
        pipe = self.client.pipeline(transaction=False)
        latest: dict[str, dict[str, str]] = {}
        busy: dict[str, dict[str, float]] = {}
        raw_tier = self.tiers[0]
        for kind, ident, t, values in raw:
            key = self.key(kind, ident, raw_tier)
            pipe.rpush(key, self._point(kind, t, values))
            pipe.ltrim(key, -raw_tier.length, -1)
            # A VM that is gone for good leaves no history behind once its range has passed.
            pipe.expire(key, raw_tier.keep + raw_tier.step)
            latest.setdefault(kind, {})[ident] = json.dumps({"t": t, **values})
            if "cpu" in values:
                busy.setdefault(kind, {})[ident] = float(values["cpu"])
        for kind, ident, tier, t, values in rollups:
            key = self.key(kind, ident, tier)
            pipe.rpush(key, self._point(kind, t, values))
            pipe.ltrim(key, -tier.length, -1)
            pipe.expire(key, tier.keep + tier.step)
        for kind, mapping in latest.items():
            pipe.hset(f"{self.prefix}:latest:{kind}", mapping=cast(dict[Any, Any], mapping))
        for kind, scores in busy.items():
            pipe.zadd(f"{self.prefix}:busiest:{kind}", scores)
        pipe.execute()

    def set_host_info(self, ident: str, info: dict) -> None:
        """What the host offers for tuning (CPUs, cells, KSM, THP, tuned), kept for pages."""
        self.client.set(f"{self.prefix}:hostinfo:{ident}", json.dumps(info), ex=3600)

    @_reads
    def host_info(self, ident: str) -> dict | None:
        raw = self.client.get(f"{self.prefix}:hostinfo:{ident}")
        return json.loads(raw) if raw else None

    def forget(self, kind: str, idents: Iterable[str]) -> None:
        """Drop the latest value of series that stopped (their history ages out by itself)."""
        idents = list(idents)
        if idents:
            self.client.hdel(f"{self.prefix}:latest:{kind}", *idents)
            self.client.zrem(f"{self.prefix}:busiest:{kind}", *idents)

    @_reads
    def busiest(
        self,
        kind: str,
        now: float,
        max_age: float,
        count: int,
        allowed: Callable[[list[str]], set[str]] | None = None,
        most: int = 5000,
    ) -> dict:
        """{id: sample} of up to count series with the highest CPU among fresh samples,
        busiest first; allowed(ids) keeps the ids the reader may see. At most `most`
        candidates are looked at."""
        found: dict = {}
        start, step = 0, max(count * 2, 200)
        while len(found) < count and start < most:
            idents = [
                i.decode()
                for i in cast(
                    list[bytes],
                    self.client.zrevrange(f"{self.prefix}:busiest:{kind}", start, start + step - 1),
                )
            ]
            if not idents:
                break
            if allowed is not None:
                shown = allowed(idents)
                idents = [i for i in idents if i in shown]
            fresh = self.latest(kind, idents, now, max_age)
            found.update((i, fresh[i]) for i in idents if i in fresh)
            start += step
        return dict(list(found.items())[:count])

    @_reads
    def latest(self, kind: str, idents: Iterable[str], now: float, max_age: float) -> dict:
        """{id: sample} for the ids whose newest sample is younger than max_age."""
        idents = [str(i) for i in idents]
        if not idents:
            return {}
        raw = self.client.hmget(f"{self.prefix}:latest:{kind}", idents)
        found = {}
        for ident, value in zip(idents, raw, strict=True):
            if value is not None:
                sample = json.loads(value)
                if now - sample["t"] <= max_age:
                    found[ident] = sample
        return found

    @_reads
    def latest_all(self, kind: str, now: float, max_age: float) -> dict:
        """Every fresh latest sample of a kind, {id: sample}."""
        found = {}
        stored = cast(dict[bytes, bytes], self.client.hgetall(f"{self.prefix}:latest:{kind}"))
        for ident, value in stored.items():
            sample = json.loads(value)
            if now - sample["t"] <= max_age:
                found[ident.decode()] = sample
        return found

    @_reads
    def history_json(self, kind: str, ident: str, range_name: str, now: float) -> bytes:
        """The points of the range ending now as JSON bytes:
        {"range", "step", "fields": ["t", ...], "points": [[t, v1, ...], ...]}.

        The stored points are already JSON and in time order: the range's ends are found
        by reading only the timestamps of O(log n) points, and the rest is copied as is
        (a day is 1,440 points; parsing and re-encoding them cost more than the read).
        """
        assert range_name in RANGES
        tier = self.tier(range_name)
        raw = cast(list[bytes], self.client.lrange(self.key(kind, ident, tier), 0, -1))
        times = _Times(raw)
        start = bisect.bisect_left(times, now - tier.keep)
        end = bisect.bisect_right(times, now)
        head = json.dumps(
            {"range": range_name, "step": tier.step, "fields": ["t", *STORED[kind]]},
            separators=(",", ":"),
        ).encode()
        return head[:-1] + b',"points":[' + b",".join(raw[start:end]) + b"]}"

    def history(self, kind: str, ident: str, range_name: str, now: float) -> dict:
        """The points of the range ending now, as columns: {"t": [...], field: [...]}."""
        body = json.loads(self.history_json(kind, ident, range_name, now))
        points = body.pop("points")
        fields = body.pop("fields")
        columns = {name: [p[i] for p in points] for i, name in enumerate(fields)}
        return {**body, **columns}


class _Times:
    """The timestamps of stored points, read one at a time as bisect asks for them."""

    def __init__(self, raw: list[bytes]) -> None:
        self.raw = raw

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> float:
        point = self.raw[i]
        return float(point[1 : point.index(b",")])
