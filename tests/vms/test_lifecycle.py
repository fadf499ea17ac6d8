"""Lifecycle verbs on a real guest: through the REST API (and the page route), each
one checked against what libvirt itself reports afterwards."""

from __future__ import annotations

import re

import pytest

from panel import hypervisor
from panel.models import AuditEvent, Job
from tests.conftest import LOCAL_URI
from vms import services as vm_services
from vms.models import VirtualMachine
from vms.tasks import vm_action_task, vm_save_restore_task

from .conftest import alerts, queued_tasks

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def act(api, vm, verb: str, data: dict | None = None):
    return api.post(f"/api/v1/vms/{vm.pk}/{verb}/", data or {}, format="json")


def in_libvirt(vm) -> hypervisor.DomainInfo:
    return hypervisor.get_domain(LOCAL_URI, str(vm.pk))


def stored(vm) -> VirtualMachine:
    return VirtualMachine.objects.get(pk=vm.pk)


def audit_rows(action: str) -> list[tuple[str, str, str]]:
    return list(
        AuditEvent.objects.filter(action=action)
        .order_by("pk")
        .values_list("username", "target", "result")
    )


# --- start, and who may ----------------------------------------------------------------------


def test_it_starts_a_shut_off_vm_and_refuses_to_start_it_again(make_vm, api_for):
    vm = make_vm()
    api = api_for("member")

    response = act(api, vm, "start")

    assert response.status_code == 200, response.data
    assert (response.data["id"], response.data["state"]) == (str(vm.pk), "running")
    assert in_libvirt(vm).state == "running"
    assert stored(vm).state == "running"
    event = AuditEvent.objects.get(action="vm.start")
    assert (event.username, event.target, event.result, event.project.name) == (
        "member",
        vm.name,
        "success",
        "alpha",
    )

    again = act(api, vm, "start")

    assert again.status_code == 409
    assert "already running" in again.data["detail"]
    assert in_libvirt(vm).state == "running"
    assert audit_rows("vm.start") == [
        ("member", vm.name, "success"),
        ("member", vm.name, "failure"),
    ]


@pytest.mark.parametrize("persona", ["operator", "admin"])
def test_it_lets_an_operator_and_an_admin_start_a_members_vm(make_vm, api_for, persona):
    vm = make_vm()

    response = act(api_for(persona), vm, "start")

    assert response.status_code == 200, response.data
    assert response.data["state"] == "running"
    assert in_libvirt(vm).state == "running"
    assert audit_rows("vm.start") == [(persona, vm.name, "success")]


@pytest.mark.parametrize(
    ("persona", "status"),
    [("anonymous", 401), ("outsider", 404), ("viewer", 403), ("member2", 403)],
)
def test_it_refuses_start_to_those_who_may_not_act_on_the_vm(make_vm, api_for, persona, status):
    vm = make_vm()

    response = act(api_for(persona), vm, "start")

    assert response.status_code == status, response.data
    assert in_libvirt(vm).state == "shutoff"
    assert stored(vm).state == "shutoff"
    assert not AuditEvent.objects.filter(action="vm.start").exists()
    denied = AuditEvent.objects.filter(result="denied").values_list("username", "action")
    expected = [(persona, f"POST /api/v1/vms/{vm.pk}/start/")] if status == 403 else []
    assert list(denied) == expected


def test_it_answers_405_to_a_get_on_an_action(make_vm, api_for):
    vm = make_vm()

    response = api_for("member").get(f"/api/v1/vms/{vm.pk}/start/")

    assert response.status_code == 405
    assert in_libvirt(vm).state == "shutoff"


def test_it_rejects_an_unknown_mode_or_a_too_short_timeout_with_400(make_vm, api_for):
    vm = make_vm()
    api = api_for("member")

    bad_mode = act(api, vm, "start", {"mode": "telepathy"})
    short = act(api, vm, "shutdown", {"timeout": 1})

    assert bad_mode.status_code == 400
    assert bad_mode.data["mode"] == ['"telepathy" is not a valid choice.']
    assert short.status_code == 400
    assert "timeout" in short.data
    assert in_libvirt(vm).state == "shutoff"
    assert not Job.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["vm.start", "vm.shutdown"]).exists()


# --- quick verbs -------------------------------------------------------------------------------


def test_it_pauses_and_resumes_a_running_vm(make_vm, api_for):
    vm = make_vm(running=True)
    api = api_for("member")

    paused = act(api, vm, "suspend")
    assert paused.status_code == 200, paused.data
    assert paused.data["state"] == "paused"
    assert in_libvirt(vm).state == "paused"
    assert stored(vm).state == "paused"

    resumed = act(api, vm, "resume")
    assert resumed.status_code == 200, resumed.data
    assert resumed.data["state"] == "running"
    assert in_libvirt(vm).state == "running"

    again = act(api, vm, "resume")
    assert again.status_code == 409
    assert "not paused" in again.data["detail"]
    done = AuditEvent.objects.filter(action__startswith="vm.", result="success").order_by("pk")
    assert [e.action for e in done] == ["vm.suspend", "vm.resume"]


def test_it_reboots_and_resets_a_running_vm(make_vm, api_for):
    vm = make_vm(running=True)
    api = api_for("operator")

    reboot = act(api, vm, "reboot")
    reset = act(api, vm, "reset")

    assert reboot.status_code == 200, reboot.data
    assert reset.status_code == 200, reset.data
    assert (reboot.data["state"], reset.data["state"]) == ("running", "running")
    assert in_libvirt(vm).state == "running"
    done = AuditEvent.objects.filter(action__in=["vm.reboot", "vm.reset"]).order_by("pk")
    assert [(e.action, e.username, e.result, e.detail) for e in done] == [
        ("vm.reboot", "operator", "success", "mode acpi"),
        ("vm.reset", "operator", "success", ""),
    ]


def test_it_forces_off_a_running_vm(make_vm, api_for):
    vm = make_vm(running=True)
    api = api_for("member")

    response = act(api, vm, "force-off")

    assert response.status_code == 200, response.data
    assert response.data["state"] == "shutoff"
    assert in_libvirt(vm).state == "shutoff"
    assert stored(vm).state == "shutoff"
    again = act(api, vm, "force-off")
    assert again.status_code == 409
    assert "not running" in again.data["detail"]


# --- jobs: save, restore, shutdown -----------------------------------------------------------


def test_it_saves_a_running_vm_through_a_job(make_vm, api_for, django_capture_on_commit_callbacks):
    vm = make_vm(running=True)
    api = api_for("member")

    with django_capture_on_commit_callbacks() as callbacks:
        response = act(api, vm, "save")

    assert response.status_code == 202, response.data
    job = Job.objects.get(pk=response.data["job"])
    assert queued_tasks(callbacks) == [("vms.save_restore", (job.pk,))]
    assert (job.kind, job.state, job.target, job.user.username) == (
        "vm.save",
        "queued",
        f"vm:{vm.pk}",
        "member",
    )
    assert AuditEvent.objects.get(action="vm.save").detail == f"job #{job.pk}"

    vm_save_restore_task(job.pk)

    job.refresh_from_db()
    assert (job.state, job.progress) == ("succeeded", 100), job.message
    assert job.message == f"{vm.name} is shut off."
    assert in_libvirt(vm).state == "shutoff"
    vm_services.refresh_details(stored(vm))
    shown = api.get(f"/api/v1/vms/{vm.pk}/").data
    assert shown["state"] == "shutoff"
    assert shown["details"]["has_managed_save"] is True
    assert shown["details"]["state_reason"] == "saved"


def restore_button(client, vm) -> str:
    """The Restore button's tag on the VM's page."""
    page = client.get(f"/vms/{vm.pk}/").content.decode()
    (tag,) = re.findall(r'<button[^>]*data-action="restore"[^>]*>', page)
    return tag


def test_it_restores_a_saved_vm_through_a_job(make_vm, api_for, client_for):
    vm = make_vm(running=True)
    hypervisor.save_domain(LOCAL_URI, str(vm.pk))
    vm_services.sync_domain(vm.host, in_libvirt(vm))
    vm_services.refresh_details(stored(vm))
    assert " disabled" not in restore_button(client_for("member"), vm)
    api = api_for("member")

    response = act(api, vm, "restore")

    assert response.status_code == 202, response.data
    vm_save_restore_task(response.data["job"])
    job = Job.objects.get(pk=response.data["job"])
    assert (job.kind, job.state) == ("vm.restore", "succeeded"), job.message
    assert job.message == f"{vm.name} is running."
    assert in_libvirt(vm).state == "running"
    vm = vm_services.refresh_details(stored(vm))
    assert (vm.state, vm.details["state_reason"], vm.details["has_managed_save"]) == (
        "running",
        "restored",
        False,
    )


def test_it_refuses_a_restore_of_a_vm_with_nothing_saved_without_a_job(
    make_vm, api_for, client_for
):
    vm = make_vm()

    response = act(api_for("member"), vm, "restore")

    assert response.status_code == 409
    assert "has no saved state to restore: start it instead" in response.data["detail"]
    assert not Job.objects.filter(target=f"vm:{vm.pk}").exists()
    assert in_libvirt(vm).state == "shutoff"
    # The page offers no Restore while the VM's details say nothing is saved.
    vm_services.refresh_details(stored(vm))
    assert " disabled" in restore_button(client_for("member"), vm)


def test_it_fails_a_shutdown_the_guest_ignores(make_vm, api_for):
    vm = make_vm(running=True)

    response = act(api_for("member"), vm, "shutdown", {"timeout": 5})

    assert response.status_code == 202, response.data
    vm_action_task(response.data["job"])
    job = Job.objects.get(pk=response.data["job"])
    assert (job.kind, job.state) == ("vm.shutdown", "failed")
    assert job.message.startswith(f"{vm.name} ignored the shutdown request for 5 s")
    assert "Use Force off" in job.message
    assert in_libvirt(vm).state == "running"
    assert stored(vm).state == "running"


def test_it_fails_an_agent_shutdown_of_a_guest_without_an_agent(make_vm, api_for):
    vm = make_vm(running=True)

    response = act(api_for("member"), vm, "shutdown", {"mode": "agent"})

    assert response.status_code == 202, response.data
    vm_action_task(response.data["job"])
    job = Job.objects.get(pk=response.data["job"])
    assert job.state == "failed"
    assert "QEMU guest agent is not configured" in job.message
    assert in_libvirt(vm).state == "running"


def test_it_refuses_an_action_while_a_job_on_the_vm_is_queued(make_vm, api_for):
    vm = make_vm()
    api = api_for("member")
    job_id = act(api, vm, "shutdown").data["job"]

    response = act(api, vm, "start")

    assert response.status_code == 409
    assert f"busy: job #{job_id} (VM shutdown) is in progress" in response.data["detail"]
    assert in_libvirt(vm).state == "shutoff"


# --- autostart -----------------------------------------------------------------------------


def test_it_turns_autostart_on_and_off(make_vm, api_for):
    vm = make_vm()
    api = api_for("member")

    on = api.patch(f"/api/v1/vms/{vm.pk}/", {"autostart": True}, format="json")

    assert on.status_code == 200, on.data
    assert on.data["autostart"] is True
    assert in_libvirt(vm).autostart is True
    off = api.patch(f"/api/v1/vms/{vm.pk}/", {"autostart": False}, format="json")
    assert off.data["autostart"] is False
    assert in_libvirt(vm).autostart is False
    assert list(
        AuditEvent.objects.filter(action="vm.autostart").order_by("pk").values_list("detail")
    ) == [("on",), ("off",)]


def test_it_refuses_autostart_to_a_viewer(make_vm, api_for):
    vm = make_vm()

    response = api_for("viewer").patch(f"/api/v1/vms/{vm.pk}/", {"autostart": True}, format="json")

    assert response.status_code == 403
    assert in_libvirt(vm).autostart is False


# --- the page route ----------------------------------------------------------------------------


def test_it_starts_a_vm_from_its_page_and_redirects_back(make_vm, client_for):
    vm = make_vm()

    response = client_for("member").post(f"/vms/{vm.pk}/start/", follow=True)

    assert response.redirect_chain == [(f"/vms/{vm.pk}/", 302)]
    assert f"{vm.name}: start done; now running." in alerts(response)
    assert in_libvirt(vm).state == "running"
    assert audit_rows("vm.start") == [("member", vm.name, "success")]


@pytest.mark.parametrize(
    ("persona", "method", "status"),
    [
        ("member", "get", 405),
        ("outsider", "post", 404),
        ("viewer", "post", 403),
        ("member2", "post", 403),
    ],
)
def test_it_refuses_a_page_action_that_is_not_allowed(make_vm, client_for, persona, method, status):
    vm = make_vm()

    response = getattr(client_for(persona), method)(f"/vms/{vm.pk}/start/")

    assert response.status_code == status
    assert in_libvirt(vm).state == "shutoff"
    denied = AuditEvent.objects.filter(result="denied").values_list("username", "action")
    expected = [(persona, f"POST /vms/{vm.pk}/start/")] if status == 403 else []
    assert list(denied) == expected


def test_it_says_which_actions_exist_when_the_page_asks_for_another(make_vm, client_for):
    vm = make_vm()

    response = client_for("member").post(f"/vms/{vm.pk}/explode/", follow=True)

    assert response.redirect_chain == [(f"/vms/{vm.pk}/", 302)]
    [message] = alerts(response)
    assert message.startswith("Unknown action 'explode': use one of ")
    assert "force-off" in message
    assert in_libvirt(vm).state == "shutoff"


def test_it_sends_an_anonymous_page_action_to_the_login_page(make_vm, client_for):
    vm = make_vm()

    response = client_for("anonymous").post(f"/vms/{vm.pk}/start/")

    assert response.status_code == 302
    assert response.url.startswith("/login/")
    assert in_libvirt(vm).state == "shutoff"
