"""vms/{id}/stats/ and hosts/{id}/stats/: scoped like the VM and host, latest plus history."""

from __future__ import annotations

import time

import pytest

from monitoring.series import HOST_FIELDS, VM_FIELDS

pytestmark = [pytest.mark.libvirt]


def values(fields, **overrides) -> dict:
    return {**dict.fromkeys(fields, 0), **overrides}


def column(history: dict, field: str) -> list:
    i = history["fields"].index(field)
    return [p[i] for p in history["points"]]


@pytest.fixture
def vm_with_stats(make_vm, store):
    vm = make_vm()
    now = time.time()
    for i in range(10):
        store.write([("vm", str(vm.pk), now - 45 + 5 * i, values(VM_FIELDS, cpu=float(i)))])
    return vm


def test_it_serves_latest_and_history_to_those_who_see_the_vm(api_for, vm_with_stats):
    url = f"/api/v1/vms/{vm_with_stats.pk}/stats/"
    for persona in ("admin", "operator", "member", "viewer"):
        body = api_for(persona).get(url, {"range": "1h"}).json()
        assert body["latest"]["cpu"] == 9.0
        assert column(body["history"], "cpu") == [float(i) for i in range(10)]
        assert body["history"]["step"] == 5 and len(body["history"]["points"]) == 10
        assert body["history"]["fields"] == ["t", *(f for f in VM_FIELDS if f != "mem_max")]
        assert body["latest"]["mem_max"] == 0
    assert "history" not in api_for("viewer").get(url).json()


def test_it_refuses_strangers_and_bad_ranges(api_for, vm_with_stats):
    url = f"/api/v1/vms/{vm_with_stats.pk}/stats/"
    assert api_for("anonymous").get(url).status_code == 401
    assert api_for("outsider").get(url).status_code == 404
    response = api_for("viewer").get(url, {"range": "1w"})
    assert response.status_code == 400
    assert "use one of 1h, 1d, 30d" in response.json()["range"][0]


def test_it_answers_null_for_a_vm_that_is_not_running(api_for, make_vm, store):
    vm = make_vm()
    body = api_for("member").get(f"/api/v1/vms/{vm.pk}/stats/", {"range": "1d"}).json()
    assert body["latest"] is None and body["history"]["points"] == []


def test_it_serves_host_stats_to_admins_and_users_of_the_host(api_for, local_host, store):
    store.write([("host", str(local_host.pk), time.time(), values(HOST_FIELDS, cpu=12.5))])
    url = f"/api/v1/hosts/{local_host.pk}/stats/"
    assert api_for("admin").get(url).json()["latest"]["cpu"] == 12.5
    assert api_for("viewer").get(url, {"range": "30d"}).json()["history"]["range"] == "30d"
    assert api_for("anonymous").get(url).status_code == 401
