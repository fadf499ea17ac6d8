"""POST vms/ with malformed bodies: always a 4xx that names the problem, never a 500."""

from __future__ import annotations

import json

import pytest

from panel.models import Job

pytestmark = [pytest.mark.libvirt]

GARBAGE = [
    [],
    "x",
    None,
    {"name": ["a"], "project": {"x": 1}},
    {"name": "ok", "project": "abc"},
    {"name": "ok", "project": None, "install": {"method": "kernel"}},
    {"name": "ok", "disks": "abc"},
    {"name": "ok", "disks": [None, 5]},
    {"name": "ok", "networks": 5},
    {"name": "ok", "networks": [None, {"a": 1}]},
    {"name": "ok", "install": []},
    {"name": "ok", "install": "kernel"},
    {"name": "ok", "install": {"method": "kernel", "kernel": 5}},
    {"name": "ok", "install": {"method": "cloud-image", "image_volume": [], "cloud_init": "x"}},
    {"name": "ok", "install": {"method": "url", "location": 7, "kickstart": ["x"]}},
    {"name": "ok", "vcpus": "many", "memory_mib": [1]},
    {"name": "ok", "host": "abc"},
    {"name": "ok", "template": "abc"},
    {"name": "ok", "firmware": ["uefi"]},
    {"name": "ok", "start": "yes please"},
]


@pytest.mark.parametrize("body", GARBAGE, ids=[str(i) for i in range(len(GARBAGE))])
def test_garbage_gets_a_client_error(admin_client, local_host, dir_pool, project, body):
    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 * 1024**3}
    local_host.save()
    if isinstance(body, dict) and "project" not in body:
        body = {**body, "project": project.pk}
    response = admin_client.post("/api/v1/vms/", json.dumps(body), content_type="application/json")
    assert 400 <= response.status_code < 500, (body, response.status_code, response.content[:300])
    assert not Job.objects.filter(kind="vm.create").exists()
