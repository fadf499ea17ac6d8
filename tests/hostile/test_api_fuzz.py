"""Schemathesis drives every operation of our own OpenAPI document as an admin.

The panel runs in-process (Django's WSGI handler on the test database). The
only host is libvirt's in-process fake driver, `test:///default`; jobs the
fuzz queues stay queued (the test's transaction never commits, so nothing
reaches Celery). Adding a host connects to the URI given, so a hook keeps that
operation's URI on `test:///default` (the other fields are fuzzed); its
refusals of other URIs are tested in tests/panel/test_hosts_add.py. Install-tree
URLs are only checked, never fetched, at request time (vms/install/tree.py).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from panel import throttle
from tests.panel.conftest import FAKE_URI

from .conftest import KNOWN

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _document() -> dict:
    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw, renderer_context={}))


schema = schemathesis.openapi.from_dict(_document())
schema.app = WSGIHandler()


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Either the generated values or ones naming objects that exist."""
    if not path_parameters:
        return st.just(path_parameters)
    known = {name: KNOWN[name] for name in path_parameters if name in KNOWN and KNOWN[name]}
    if not known:
        return st.just(path_parameters)
    real = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in known.items()})
    return st.one_of(st.just(path_parameters), real.map(lambda v: {**path_parameters, **v}))


@schema.hook
def map_body(context, body):
    """A host's URI is always the fake driver's: any other would make the panel connect
    (to add the host, or to read its SSH host key)."""
    hosts = ("/api/v1/hosts/", "/api/v1/hosts/scan-key/")
    if context.operation.path in hosts and isinstance(body, dict) and "uri" in body:
        return {**body, "uri": FAKE_URI}
    return body


@pytest.fixture
def tried_logins():
    """Usernames the fuzz failed to log in as: their failure counts go from Redis afterwards."""
    names: set[str] = set()
    yield names
    for name in names:
        throttle.reset(name, "127.0.0.1")


@schema.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_promises(case, world, tried_logins):
    if case.path == "/api/v1/auth/token/" and isinstance(case.body, dict):
        tried_logins.add(str(case.body.get("username", "")))
    if "X-Panel-Password" in (case.headers or {}):
        tried_logins.add("admin")  # a wrong password for a sensitive action counts as a login's
    response = case.call(headers=world)
    case.validate_response(response, checks=CHECKS, headers=world)
