"""The VM list: what each user sees, filters, sorting, pages, bulk actions, and the
same list through the API. VM rows are made directly, except for the bulk actions,
which drive domains of libvirt's test driver (test:///default)."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from lxml import html as lxml_html

from panel import hypervisor
from panel.models import AuditEvent, Host, Job
from panel.services import reconcile_host
from vms.models import VirtualMachine

from .conftest import alerts, page_text, texts

FAKE_URI = "test:///default"
ROW_NAMES = "//table[contains(@class, 'vm-table')]/tbody/tr[@data-vm]/td[2]"


def names(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return texts(response, ROW_NAMES)


@pytest.fixture
def inventory(people):
    """Two hosts; alpha has web-1, db-1 and cache-1, beta has beta-app, and stray is unassigned."""
    kvm01 = Host.objects.create(
        name="kvm01", uri="qemu+ssh://kvm01.example.test/system", state="up"
    )
    kvm02 = Host.objects.create(
        name="kvm02", uri="qemu+ssh://kvm02.example.test/system", state="up"
    )
    member = people["member"]
    rows = {}
    for name, host, project, state, vcpus, memory in [
        ("web-1", kvm01, people.alpha, "running", 1, 512),
        ("db-1", kvm02, people.alpha, "shutoff", 2, 2048),
        ("cache-1", kvm01, people.alpha, "paused", 1, 1024),
        ("beta-app", kvm01, people.beta, "running", 4, 4096),
        ("stray", kvm02, None, "running", 1, 256),
    ]:
        rows[name] = VirtualMachine.objects.create(
            id=uuid.uuid4(),
            name=name,
            host=host,
            project=project,
            owner=member if project == people.alpha else None,
            state=state,
            vcpus=vcpus,
            memory_mib=memory,
        )
    return {"kvm01": kvm01, "kvm02": kvm02, **rows}


# --- the page ----------------------------------------------------------------------------------


def test_it_shows_a_member_only_their_projects_vms(inventory, client_for):
    response = client_for("member").get("/vms/")

    assert names(response) == ["cache-1", "db-1", "web-1"]
    assert "3 VMs" in page_text(response)
    assert names(client_for("admin").get("/vms/")) == [
        "beta-app",
        "cache-1",
        "db-1",
        "stray",
        "web-1",
    ]
    assert names(client_for("outsider").get("/vms/")) == ["beta-app"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "WEB"}, ["web-1"]),
        ({"host": "kvm02"}, ["db-1", "stray"]),
        ({"project": "beta"}, ["beta-app"]),
        ({"state": "paused"}, ["cache-1"]),
        ({"host": "kvm01", "state": "running"}, ["beta-app", "web-1"]),
        ({"state": "exploded"}, ["beta-app", "cache-1", "db-1", "stray", "web-1"]),
    ],
)
def test_it_filters_the_list(inventory, people, client_for, query, expected):
    ids = {"host": lambda v: inventory[v].pk, "project": lambda v: getattr(people, v).pk}
    params = {k: ids[k](v) if k in ids else v for k, v in query.items()}

    assert names(client_for("admin").get("/vms/", params)) == expected


def test_it_finds_a_vm_by_the_start_of_its_uuid(inventory, client_for):
    prefix = str(inventory["db-1"].pk)[:13]

    assert names(client_for("member").get("/vms/", {"q": prefix})) == ["db-1"]


def test_it_does_not_let_a_filter_reveal_another_projects_vm(inventory, people, client_for):
    response = client_for("member").get("/vms/", {"project": people.beta.pk})

    assert names(response) == []
    assert "No virtual machines match these filters." in page_text(response)


def test_it_sorts_the_list(inventory, client_for):
    client = client_for("admin")

    by_memory = client.get("/vms/", {"ordering": "-memory_mib"})
    unknown = client.get("/vms/", {"ordering": "password"})

    assert names(by_memory) == ["beta-app", "db-1", "cache-1", "web-1", "stray"]
    assert texts(by_memory, "//tr[@data-vm]/td[7]")[:2] == ["4096 MiB", "2048 MiB"]
    assert names(unknown) == ["beta-app", "cache-1", "db-1", "stray", "web-1"]


def test_it_shows_50_vms_a_page(inventory, people, client_for):
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            id=uuid.uuid4(),
            name=f"bulk-{i:03}",
            host=inventory["kvm01"],
            project=people.alpha,
            memory_mib=64,
        )
        for i in range(51)
    )
    client = client_for("member")

    first = client.get("/vms/", {"q": "bulk"})
    second = client.get("/vms/", {"q": "bulk", "page": 2})

    assert names(first) == [f"bulk-{i:03}" for i in range(50)]
    assert "51 VMs" in page_text(first)
    assert "Page 1 of 2" in page_text(first)
    [next_link] = lxml_html.fromstring(first.content.decode()).xpath("//a[text()='Next']/@href")
    assert "q=bulk" in next_link and "page=2" in next_link
    assert names(second) == ["bulk-050"]
    assert "Page 2 of 2" in page_text(second)
    assert len(names(client.get("/vms/"))) == 50  # 54 VMs in alpha


# --- bulk actions on the test driver -------------------------------------------------------


@pytest.fixture
def fake_vms(people):
    """test:///default with its domain "test" (running) given to alpha/member, and a domain
    of beta's (running) on the same host. The test driver keeps its state for as long as this
    process's connection lives, so everything is put back afterwards."""
    host = Host.objects.create(name="fake", uri=FAKE_URI, state="up")
    other = hypervisor.define_domain(
        FAKE_URI,
        hypervisor.DomainSpec(name=f"paneltest-{uuid.uuid4().hex[:8]}", domain_type="test"),
    )
    try:
        hypervisor.start_domain(FAKE_URI, other.uuid)
        with contextlib.suppress(hypervisor.Conflict):
            hypervisor.start_domain(FAKE_URI, uuid_of_the_test_domain())
        reconcile_host(host, checks=False)
        ours = VirtualMachine.objects.get(host=host, name="test")
        ours.project, ours.owner = people.alpha, people["member"]
        ours.save()
        theirs = VirtualMachine.objects.get(pk=other.uuid)
        theirs.project, theirs.owner = people.beta, people["outsider"]
        theirs.save()
        yield ours, theirs
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(FAKE_URI, other.uuid)
        with contextlib.suppress(hypervisor.Conflict):
            hypervisor.start_domain(FAKE_URI, uuid_of_the_test_domain())


def uuid_of_the_test_domain() -> str:
    return next(d.uuid for d in hypervisor.list_domains(FAKE_URI) if d.name == "test")


def fake_state(vm) -> str:
    return hypervisor.get_domain(FAKE_URI, str(vm.pk)).state


def test_it_forces_off_and_starts_only_the_selected_vms_the_user_may_see(fake_vms, client_for):
    ours, theirs = fake_vms
    client = client_for("member")
    selected = [str(ours.pk), str(theirs.pk)]

    off = client.post(
        "/vms/bulk/", {"action": "force-off", "vm": selected, "next": "/vms/?q=t"}, follow=True
    )

    assert off.redirect_chain == [("/vms/?q=t", 302)]
    assert alerts(off) == ["Force off: test."]
    assert fake_state(ours) == "shutoff"
    assert fake_state(theirs) == "running"
    assert VirtualMachine.objects.get(pk=ours.pk).state == "shutoff"
    assert VirtualMachine.objects.get(pk=theirs.pk).state == "running"

    on = client.post("/vms/bulk/", {"action": "start", "vm": selected}, follow=True)

    assert alerts(on) == ["Start: test."]
    assert fake_state(ours) == "running"
    assert list(
        AuditEvent.objects.filter(action__in=["vm.force-off", "vm.start"])
        .order_by("pk")
        .values_list("action", "target", "username", "result")
    ) == [
        ("vm.force-off", "test", "member", "success"),
        ("vm.start", "test", "member", "success"),
    ]


def test_it_reports_each_vm_the_user_may_not_act_on(fake_vms, client_for):
    ours, _theirs = fake_vms

    response = client_for("viewer").post(
        "/vms/bulk/", {"action": "force-off", "vm": [str(ours.pk)]}, follow=True
    )

    assert alerts(response) == ["test: Your role does not allow you to force off test."]
    assert fake_state(ours) == "running"


def test_it_queues_a_shutdown_job_per_selected_vm(fake_vms, client_for):
    ours, theirs = fake_vms

    response = client_for("member").post(
        "/vms/bulk/", {"action": "shutdown", "vm": [str(ours.pk), str(theirs.pk)]}, follow=True
    )

    job = Job.objects.get(kind="vm.shutdown")
    assert alerts(response) == [f"Shut down: test (job #{job.pk})."]
    assert list(Job.objects.values_list("kind", "target", "user__username")) == [
        ("vm.shutdown", f"vm:{ours.pk}", "member")
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"action": "explode", "vm": ["x"]},
            "Choose what to do with the selected VMs: Start, Shut down, Force off, Migrate, "
            "Delete, Forget missing.",
        ),
        ({"action": "start"}, "Select at least one VM first."),
    ],
)
def test_it_refuses_a_bulk_request_without_a_known_action_or_a_selection(
    fake_vms, client_for, data, message
):
    ours, _theirs = fake_vms

    response = client_for("member").post("/vms/bulk/", data, follow=True)

    assert response.redirect_chain == [("/vms/", 302)]
    assert alerts(response) == [message]
    assert fake_state(ours) == "running"


def test_it_answers_405_to_a_get_on_bulk_and_sends_anonymous_users_to_log_in(fake_vms, client_for):
    ours, _theirs = fake_vms

    get = client_for("member").get("/vms/bulk/", {"action": "force-off", "vm": str(ours.pk)})
    anonymous = client_for("anonymous").post(
        "/vms/bulk/", {"action": "force-off", "vm": str(ours.pk)}
    )

    assert get.status_code == 405
    assert anonymous.status_code == 302
    assert anonymous.url.startswith("/login/")
    assert fake_state(ours) == "running"


def test_it_ignores_a_selected_id_that_is_not_a_uuid(fake_vms, client_for):
    ours, _theirs = fake_vms
    client = client_for("member")
    client.raise_request_exception = False

    response = client.post("/vms/bulk/", {"action": "force-off", "vm": ["nope", str(ours.pk)]})

    assert response.status_code == 302
    assert fake_state(ours) == "shutoff"


# --- the API list ---------------------------------------------------------------------------


def api_names(api, **params) -> list[str]:
    response = api.get("/api/v1/vms/", params)
    assert response.status_code == 200, response.data
    return [vm["name"] for vm in response.data["results"]]


def test_it_filters_searches_and_sorts_the_api_list(inventory, people, api_for):
    admin = api_for("admin")
    db1 = inventory["db-1"]

    assert api_names(admin, state="paused") == ["cache-1"]
    assert api_names(admin, host=inventory["kvm02"].pk) == ["db-1", "stray"]
    assert api_names(admin, project=people.beta.pk) == ["beta-app"]
    assert api_names(admin, search="app") == ["beta-app"]
    assert api_names(admin, search=str(db1.pk)) == ["db-1"]
    assert api_names(admin, ordering="-memory_mib") == [
        "beta-app",
        "db-1",
        "cache-1",
        "web-1",
        "stray",
    ]
    assert api_names(api_for("member"), ordering="-memory_mib") == ["db-1", "cache-1", "web-1"]
    assert api_names(api_for("member"), search="beta") == []


def test_it_pages_the_api_list_by_page_size(inventory, api_for):
    response = api_for("admin").get("/api/v1/vms/", {"page_size": 2, "ordering": "name"})

    assert response.status_code == 200
    assert response.data["count"] == 5
    assert [vm["name"] for vm in response.data["results"]] == ["beta-app", "cache-1"]
    assert "page=2" in response.data["next"]
    assert response.data["previous"] is None
    first = response.data["results"][0]
    assert set(first) >= {
        "id",
        "name",
        "host",
        "project",
        "state",
        "vcpus",
        "memory_mib",
        "autostart",
        "disks",
        "nics",
        "ips",
        "graphics",
    }
    assert first["id"] == str(inventory["beta-app"].pk)


def test_it_answers_401_to_an_anonymous_api_list(inventory, api_for):
    assert api_for("anonymous").get("/api/v1/vms/").status_code == 401
