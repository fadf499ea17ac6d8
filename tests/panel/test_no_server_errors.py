"""Every page, for every kind of user, answers without a server error: each GET, and each
create form posted empty. The objects come from the test:/// driver's inventory."""

from __future__ import annotations

import pytest
from django.urls import reverse

from panel import jobs
from panel import services as panel_services
from panel.actors import Actor
from panel.choices import JobKind
from panel.models import Host, Membership
from panel.services.hosts import reconcile_host
from storage.models import StoragePool, Volume
from vms.models import Template, VirtualMachine


@pytest.fixture
def world(db, admin_user, plain_user, django_user_model):
    host = Host.objects.create(name="sim", uri="test:///default", state="up")
    reconcile_host(host, checks=False)
    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    vm = VirtualMachine.objects.filter(host=host).first()
    vm.project = project
    vm.save()
    pool = StoragePool.objects.filter(host=host).first()
    volume = Volume.objects.filter(pool=pool).first() or Volume.objects.create(pool=pool, name="v1")
    volume.project = project
    volume.save()
    template = Template.objects.create(name="t1")
    template.projects.add(project)
    job = jobs.create_job(
        JobKind.HOST_REFRESH, target=f"host:{host.pk}", actor=Actor(admin_user), host=host
    )
    outsider = django_user_model.objects.create_user("bob", password="bob-pass-4Kw8")
    from networking.models import Network

    network = Network.objects.filter(host=host).first()
    return {
        "host": host,
        "project": project,
        "vm": vm,
        "pool": pool,
        "volume": volume,
        "template": template,
        "job": job,
        "network": network,
        "people": {"admin": admin_user, "member": plain_user, "outsider": outsider},
    }


def pages(w) -> list[str]:
    vm, pool, volume = w["vm"], w["pool"], w["volume"]
    names = [
        ("dashboard", {}),
        ("account", {}),
        ("host_list", {}),
        ("host_add", {}),
        ("host_detail", {"host_id": w["host"].pk}),
        ("job_list", {}),
        ("job_detail", {"job_id": w["job"].pk}),
        ("project_list", {}),
        ("project_add", {}),
        ("project_detail", {"project_id": w["project"].pk}),
        ("project_edit", {"project_id": w["project"].pk}),
        ("user_list", {}),
        ("audit_list", {}),
        ("vm_list", {}),
        ("vm_create", {}),
        ("vm_create_from_template", {}),
        ("template_list", {}),
        ("vm_detail", {"vm_id": vm.pk}),
        ("vm_delete", {"vm_id": vm.pk}),
        ("vm_xml", {"vm_id": vm.pk}),
        ("vm_console", {"vm_id": vm.pk, "kind": "serial"}),
        ("vm_console", {"vm_id": vm.pk, "kind": "vnc"}),
        ("pool_list", {}),
        ("pool_add", {}),
        ("pool_detail", {"pool_id": pool.pk}),
        ("pool_upload", {"pool_id": pool.pk}),
        ("volume_detail", {"volume_id": volume.pk}),
        ("network_list", {}),
        ("network_add", {}),
        ("host_interfaces", {"host_id": w["host"].pk}),
    ]
    urls = [reverse(name, kwargs=kwargs) for name, kwargs in names]
    if w["network"] is not None:
        urls.append(reverse("network_detail", kwargs={"network_id": w["network"].pk}))
    return urls


CREATE_FORMS = [
    "host_add",
    "project_add",
    "vm_create",
    "vm_create_from_template",
    "template_list",
    "pool_add",
    "network_add",
]


@pytest.mark.parametrize("role", ["admin", "operator", "member", "viewer", "outsider"])
def test_no_page_answers_with_a_server_error(world, client, role):
    user = world["people"][
        "admin" if role == "admin" else "outsider" if role == "outsider" else "member"
    ]
    if role in ("operator", "member", "viewer"):
        Membership.objects.create(user=user, project=world["project"], role=role)
    client.force_login(user)
    failures = []
    for url in pages(world):
        status = client.get(url).status_code
        if status >= 500:
            failures.append(f"GET {url}: {status}")
    for name in CREATE_FORMS:
        status = client.post(reverse(name), {}).status_code
        if status >= 500:
            failures.append(f"POST {name} (empty): {status}")
    assert failures == []
