"""Every URL the panel serves, from the resolver and the websocket routing, with its
path parameters filled from real objects.

A parameter nobody taught ``fill()`` raises ``Unfillable``: a new endpoint makes the
security sweeps fail until it is given values (and so gets swept).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from panel.routing import websocket_urlpatterns


class Unfillable(Exception):
    """A URL pattern whose parameters the sweep does not know how to fill."""


@dataclass(frozen=True)
class Route:
    """One URL pattern: its full regex-or-route text, its name and its parameter names."""

    pattern: str
    name: str
    params: tuple[str, ...]
    api: bool

    def __str__(self) -> str:
        return f"{self.name} ({self.pattern})"


_PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>")


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[Route]:
    for p in patterns:
        text = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, text)
        elif isinstance(p, URLPattern):
            params = tuple(a or b for a, b in _PARAM.findall(text))
            yield Route(text, p.name or "", params, text.startswith("api/"))


def http_routes() -> list[Route]:
    """Every HTTP URL pattern, static files aside (Django serves none in these settings)."""
    return list(_walk(get_resolver().url_patterns))


def ws_routes() -> list[Route]:
    return [
        Route(
            str(p.pattern),
            str(p.pattern),
            tuple(a or b for a, b in _PARAM.findall(str(p.pattern))),
            False,
        )
        for p in websocket_urlpatterns
    ]


# The values each action-like parameter takes, per URL name: every one of them is swept.
ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("vm_action", "action"): (
        "start",
        "shutdown",
        "force-off",
        "reboot",
        "reset",
        "suspend",
        "resume",
        "save",
        "restore",
    ),
    ("vm_console", "kind"): ("serial", "vnc"),
    ("vm_tune", "what"): ("vcpus", "memory", "vcpupin", "iotune"),
}

# Router names (DRF) → which object their {pk} is.
ROUTER_PK = {
    "user": "user",
    "project": "project",
    "host": "host",
    "vm": "vm",
    "pool": "pool",
    "volume": "volume",
    "job": "job",
    "network": "network",
    "auditevent": "event",
    "subscription": "subscription",
    "notification": "notification",
    "libraryimage": "image",
    "apitoken": "api_token",
    "directorymapping": "mapping",
    "session": "session",
    "affinitygroup": "affinity",
}

# Plain parameters → which object they are.
PARAM_OBJECT = {
    "host_id": "host",
    "job_id": "job",
    "project_id": "project",
    "user_id": "user",
    "template_id": "template",
    "vm_id": "vm",
    "pool_id": "pool",
    "volume_id": "volume",
    "image_id": "image",
    "network_id": "network",
    "schedule_id": "schedule",
    "backup_id": "backup",
    "name": "snapshot",
    "disk": "disk",
    "mac": "mac",
    "subscription_id": "subscription",
    "notification_id": "notification",
    "token_id": "token",
    "mapping_id": "mapping",
    "key_id": "key",
    "role_id": "role",
    "group_id": "group",
    "grant_id": "grant",
    "session_id": "session",
    "affinity_id": "affinity",
}


def fill(route: Route, objects: Callable[[str], Any]) -> list[str]:
    """The concrete paths of a route (one per action value), ids from objects(kind)."""
    values: list[dict[str, str]] = [{}]
    for param in route.params:
        if (route.name, param) in ACTIONS:
            choices = list(ACTIONS[(route.name, param)])
        elif param == "pk" and route.name.split("-")[0] in ROUTER_PK:
            choices = [str(objects(ROUTER_PK[route.name.split("-")[0]]))]
        elif param == "format":
            # DRF's suffix converter takes the dot itself; its regex form does not.
            choices = [".json" if "drf_format_suffix:format" in route.pattern else "json"]
        elif param in PARAM_OBJECT:
            choices = [str(objects(PARAM_OBJECT[param]))]
        else:
            raise Unfillable(f"{route}: no value for <{param}>")
        values = [{**v, param: c} for v in values for c in choices]
    return [_substitute(route.pattern, v) for v in values]


def _substitute(pattern: str, values: dict[str, str]) -> str:
    text = pattern
    for name, value in values.items():
        text = re.sub(rf"\(\?P<{name}>[^)]*\)", value, text)
        text = re.sub(rf"<(?:\w+:)?{name}>", value, text)
    # What is left of a DRF regex: anchors, escaped dots and optional slashes.
    text = text.replace("^", "").replace("$", "").replace("\\.", ".").replace("/?", "/")
    if re.search(r"[<>()\\?*+\[\]]", text):
        raise Unfillable(f"{pattern}: left unfilled as {text}")
    return "/" + text
