"""pools/, volumes/ and vms/{id}/disks/ with malformed bodies: a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.libvirt]

POOLS = [
    [],
    "x",
    {"host": "abc", "name": "p", "type": "dir"},
    {"host": None, "name": "p", "type": "dir"},
    {"name": "p", "type": ["dir"]},
    {"name": {"a": 1}, "type": "dir", "target_path": ["/x"]},
    {"name": "p", "type": "fs", "source": {"devices": [None, 5], "format": 3}},
    {"name": "p", "type": "iscsi", "source": {"host": ["a"], "port": "x", "path": None}},
    {"name": "p", "type": "dir", "source": "notadict"},
]
VOLUMES = [
    [],
    {"pool": "abc", "name": "v"},
    {"pool": "POOL", "name": ["v"]},
    {"pool": "POOL", "name": "v", "capacity_gib": {"x": 1}},
    {"pool": "POOL", "name": "v", "capacity_gib": "nan"},
    {"pool": "POOL", "name": "v", "capacity_gib": "inf"},
    {"pool": "POOL", "name": "v", "format": None},
    {"pool": "POOL", "name": "v", "backing_volume": "abc"},
    {"pool": "POOL", "name": "v", "project": [1]},
]


def fill(body, pool, host):
    if isinstance(body, dict):
        body = dict(body)
        if body.get("pool") == "POOL":
            body["pool"] = pool.pk
        body.setdefault("host", host.pk) if "type" in body else None
    return body


@pytest.mark.parametrize("body", POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_pool_garbage(admin_client, local_host, dir_pool, body):
    response = admin_client.post(
        "/api/v1/pools/",
        json.dumps(fill(body, dir_pool, local_host)),
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500, (body, response.status_code, response.content[:300])


@pytest.mark.parametrize("body", VOLUMES, ids=[str(i) for i in range(len(VOLUMES))])
def test_volume_garbage(admin_client, local_host, dir_pool, pool_dir, body):
    response = admin_client.post(
        "/api/v1/volumes/",
        json.dumps(fill(body, dir_pool, local_host)),
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500, (body, response.status_code, response.content[:300])
    assert list(pool_dir.iterdir()) == []
