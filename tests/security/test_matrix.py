"""The permission matrix over every page and API endpoint, for every persona.

tests/teams/test_permission_matrix_pages.py and test_permission_matrix_api.py hold the
first table (hosts, VMs, teams, with bodies and leak checks); this one has a row for
every URL the resolver knows (storage, uploads, disks, networks, NICs, leases,
interfaces, the create wizard, templates, snapshots, backups, schedules, migration,
moving storage, stats, tuning, jobs...) and a completeness test, so an endpoint added
without rows fails.

Every request names alpha's objects: the admin, operator, member (who owns the VM)
and viewer are in alpha, the outsider is not (out of scope: 404). Bodies are empty,
so an allowed action mostly answers with its own refusal of the input (400), the state
conflict (409) or the unreachable host (503): what counts here is who gets past the
permission check. Refusals change nothing: no job, no audit row of an action, no
change on the host.
"""

from __future__ import annotations

from typing import Any

import pytest

from panel import hypervisor

from .conftest import PERSONAS, objects_of, state_of_everything
from .order import DELETABLE, LAST, NOT_IN_MATRIX
from .routes import fill, http_routes
from .test_get_and_csrf import READABLE


def _key(method: str, name: str, path: str) -> str:
    tail = path.rstrip("/").rsplit("/", 1)[-1]
    action = (
        tail if not tail.replace("-", "").isalnum() or not any(c.isdigit() for c in tail) else ""
    )
    return f"{method} {name} {action}".strip()


def requests_in_order(everything: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(row key, method, path) for every URL with alpha's objects, destructive ones last."""
    out = []
    for route in http_routes():
        if route.name in NOT_IN_MATRIX:
            continue
        for path in fill(route, objects_of(everything, "alpha")):
            if route.name in READABLE:
                out.append(("GET", route.name, path))
            if route.name not in READABLE or route.name == "vm_delete":
                out.append(("POST", route.name, path))
            if route.name in DELETABLE:
                out.append(("DELETE", route.name, path))
    keyed = [(_key(m, n, p), m, p) for m, n, p in out]

    def order(row: tuple[str, str, str]) -> int:
        key = row[0]
        for i, last in enumerate(LAST):
            if key == last or key.startswith(f"POST {last}") or key.startswith(last):
                return i + 1
        return 0

    return sorted(keyed, key=order)


def send(persona: str, method: str, path: str, client_for, api_for):  # type: ignore[no-untyped-def]
    if path.startswith("/api/"):
        return api_for(persona).generic(method, path, b"{}", "application/json")
    return client_for(persona).generic(method, path, b"", "application/x-www-form-urlencoded")


# Row key → status for admin, operator, member, viewer, outsider (in that order).
MATRIX = {
    "GET dashboard": "200 200 200 200 200",
    "GET favicon favicon.ico": "301 301 301 301 301",
    "GET account account": "200 200 200 200 200",
    "GET token_list tokens": "200 200 200 200 200",
    # The form's empty body is refused; a recent sign-in (the test's login) gets that far.
    "POST token_add add": "400 400 400 400 400",
    # alpha's member's token: theirs, and an admin revokes anyone's (from the users page).
    "POST token_revoke revoke": "302 404 302 404 404",
    "GET user_tokens tokens": "200 403 403 403 403",
    "GET apitoken-list tokens": "200 200 200 200 200",
    "GET apitoken-detail": "404 404 200 404 404",
    "DELETE apitoken-detail": "404 404 204 404 404",
    # Sessions: one's own (the world's session is alpha's viewer's, in another browser);
    # a user's, for admins.
    "GET reauth reauth": "200 200 200 200 200",
    "GET session_list sessions": "200 200 200 200 200",
    "POST session_revoke revoke": "404 404 404 302 404",
    "POST session_revoke_all revoke-all": "302 302 302 302 302",
    "GET user_sessions sessions": "200 403 403 403 403",
    # 404 for the admin: disabling the viewer (user_set_active, earlier) ended it.
    "POST user_session_revoke revoke": "404 403 403 403 403",
    "POST user_sessions_revoke_all revoke-all": "302 403 403 403 403",
    "GET session-list sessions": "200 200 200 200 200",
    "POST session-detail": "405 405 405 405 405",
    # The viewer's too: its session was ended by the page's revoke (above) already.
    "DELETE session-detail": "404 404 404 404 404",
    "POST session-revoke-all revoke-all": "200 200 200 200 200",
    "GET host_list hosts": "200 200 200 200 200",
    "GET host_add add": "200 403 403 403 403",
    "GET host_detail": "200 200 200 200 404",
    "GET host_tree": "200 200 200 200 404",
    "POST host_refresh refresh": "302 403 403 403 404",
    # The form's empty body is refused with a message on the host's page.
    "POST host_certificates certificates": "302 403 403 403 404",
    "POST host_accept_key accept-key": "302 403 403 403 404",
    "POST host_migration_address migration-address": "302 403 403 403 404",
    "GET job_list jobs": "200 200 200 200 200",
    "GET job_panel panel": "200 200 200 200 200",
    "GET job_detail": "200 200 200 200 404",
    "POST job_cancel cancel": "302 302 302 403 404",
    "GET project_list projects": "200 200 200 200 200",
    "GET project_add add": "200 403 403 403 403",
    "GET project_detail": "200 200 200 200 404",
    "GET project_edit edit": "200 403 403 403 404",
    "POST project_member_add members": "302 302 403 403 404",
    "POST project_member_remove remove": "302 302 403 403 404",
    "GET user_list users": "200 403 403 403 403",
    "GET role_list roles": "200 403 403 403 403",
    "GET role_edit": "200 403 403 403 403",
    "GET group_list groups": "200 403 403 403 403",
    "POST group_edit": "302 403 403 403 403",
    "POST project_grant_add grants": "302 302 403 403 404",
    "GET api_roles roles": "200 200 200 200 200",
    "GET api_role": "200 200 200 200 200",
    "GET api_groups groups": "200 403 403 403 403",
    "GET api_group": "200 403 403 403 403",
    "GET api_grants grants": "200 200 200 200 404",
    "GET api_grant": "200 200 200 200 404",
    "POST user_set_active active": "302 403 403 403 403",
    "GET user_reset_password password": "200 403 403 403 403",
    "GET directory_mapping_list directory-groups": "200 403 403 403 403",
    "GET directorymapping-list directory-mappings": "200 403 403 403 403",
    "GET directorymapping-detail": "200 403 403 403 403",
    # The admin's DELETE takes the mapping; the page's delete then finds none.
    "DELETE directorymapping-detail": "204 403 403 403 403",
    "POST directory_mapping_delete delete": "404 403 403 403 403",
    "GET audit_list audit": "200 200 403 403 403",
    "GET audit_export export.csv": "200 200 403 403 403",
    "GET vm_tuning_page tuning": "302 302 302 302 404",
    "POST vm_tune_vcpus vcpus": "302 302 302 403 404",
    "POST vm_tune_memory memory": "302 302 302 403 404",
    "POST vm_tune_vcpupin vcpupin": "302 302 302 403 404",
    "POST vm_tune_emulatorpin emulatorpin": "302 302 302 403 404",
    "POST vm_tune_iotune iotune": "302 302 302 403 404",
    "POST vm_tune_max_vcpus max-vcpus": "302 302 302 403 404",
    "POST vm_tune_max_memory max-memory": "302 302 302 403 404",
    "POST vm_tune_hugepages hugepages": "302 302 302 403 404",
    "POST vm_tune_numatune numatune": "302 302 302 403 404",
    "POST vm_tune_nic_bandwidth nic-bandwidth": "302 302 302 403 404",
    "GET vm_list vms": "200 200 200 200 200",
    "POST vm_bulk bulk": "302 302 302 302 302",
    "GET vm_create new": "200 200 302 302 302",
    "GET vm_create_from_template from-template": "200 200 200 200 200",
    "GET template_list templates": "200 403 403 403 403",
    "GET vm_detail": "200 200 200 200 404",
    "POST vm_autostart autostart": "302 302 302 403 404",
    "POST vm_tags tags": "302 302 302 403 404",
    # HA: the empty form asks for it off, as it is; the API's empty body is refused.
    "POST vm_ha ha": "302 302 302 403 404",
    "POST api_vm_ha ha": "400 400 400 403 404",
    "POST vm_assign assign": "302 403 403 403 404",
    "GET vm_delete delete": "200 200 200 403 404",
    "GET vm_xml xml": "200 403 403 403 404",
    "POST vm_clone clone": "302 302 302 403 404",
    "POST vm_vnc_password vnc-password": "302 302 302 403 404",
    "POST vm_disk_attach attach": "302 302 302 403 404",
    "POST vm_disk_detach detach": "302 302 302 403 404",
    "POST vm_disk_media media": "302 302 302 403 404",
    "POST vm_snapshot_create create": "302 302 302 403 404",
    "POST vm_snapshot_revert revert": "302 302 302 403 404",
    "POST vm_snapshot_merge merge": "302 302 302 403 404",
    "POST vm_backup_create create": "302 302 302 403 404",
    "POST vm_backup_restore restore": "302 302 302 403 404",
    "POST vm_backup_verify verify": "302 302 302 403 404",
    "POST vm_backup_schedule_add schedule-add": "302 302 302 403 404",
    "POST vm_backup_schedule_delete schedule-delete": "302 302 302 403 404",
    "GET vm_console serial": "200 200 200 200 404",
    "GET vm_console vnc": "200 200 200 200 404",
    "GET vm_migrate migrate": "200 200 200 403 404",
    "POST vm_move_storage move-storage": "302 302 302 403 404",
    "POST vm_action start": "302 302 302 403 404",
    "POST vm_action shutdown": "302 302 302 403 404",
    "POST vm_action force-off": "302 302 302 403 404",
    "POST vm_action reboot": "302 302 302 403 404",
    "POST vm_action reset": "302 302 302 403 404",
    "POST vm_action suspend": "302 302 302 403 404",
    "POST vm_action resume": "302 302 302 403 404",
    "POST vm_action save": "302 302 302 403 404",
    "POST vm_action restore": "302 302 302 403 404",
    "GET pool_list storage": "200 200 200 200 200",
    "GET pool_add add": "200 403 403 403 403",
    "GET pool_detail": "200 200 200 200 404",
    "GET pool_upload upload": "200 200 200 200 404",
    "POST volume_add add": "302 302 302 403 404",
    "POST pool_autostart autostart": "302 403 403 403 404",
    "POST pool_shared_storage shared-storage": "302 403 403 403 404",
    "POST pool_start start": "302 403 403 403 404",
    "POST pool_stop stop": "302 403 403 403 404",
    "POST pool_build build": "302 403 403 403 404",
    "POST pool_refresh refresh": "302 403 403 403 404",
    "GET volume_detail": "200 200 200 200 404",
    "GET library_list library": "200 200 200 200 200",
    "POST library_add add": "400 403 403 403 403",
    "GET library_detail": "200 200 200 200 404",
    "POST library_edit edit": "302 403 403 403 404",
    "POST volume_resize resize": "302 302 302 403 404",
    "POST volume_clone clone": "302 302 302 403 404",
    "POST volume_convert convert": "302 302 302 403 404",
    "POST volume_wipe wipe": "302 302 302 403 404",
    "POST volume_check check": "302 302 302 302 404",
    "POST volume_info info": "302 302 302 302 404",
    "POST volume_share share": "302 403 403 403 404",
    "POST volume_assign assign": "302 403 403 403 404",
    "GET network_list networks": "200 200 200 200 200",
    "GET network_add add": "200 403 403 403 403",
    "GET network_detail": "200 200 200 200 404",
    "POST network_autostart autostart": "302 403 403 403 404",
    "POST network_start start": "302 403 403 403 404",
    "POST network_stop stop": "302 403 403 403 404",
    "GET host_interfaces interfaces": "200 403 403 403 404",
    "POST vm_nic_attach attach": "302 302 302 403 404",
    "POST vm_nic_detach detach": "302 302 302 403 404",
    "POST vm_nic_link link": "302 302 302 403 404",
    "GET api_schema schema": "200 200 200 200 200",
    "GET api_docs docs": "200 200 200 200 200",
    "GET vm_nics nics": "200 200 200 200 404",
    "GET vm_nic 52:54:00:12:34:56": "200 200 200 200 404",
    "GET vm_snapshots snapshots": "200 200 200 200 404",
    "GET vm_snapshot alpha-snap": "200 200 200 200 404",
    "POST api_vm_snapshot_revert revert": "409 409 409 403 404",
    "POST vm_disk_merge merge": "409 409 409 403 404",
    "GET vm_backups backups": "200 200 200 200 404",
    "GET vm_backup": "200 200 200 200 404",
    "POST api_vm_backup_restore restore": "409 409 409 403 404",
    "POST api_vm_backup_verify verify": "409 409 409 403 404",
    "GET vm_backup_schedules backup-schedules": "200 200 200 200 404",
    "GET project_backup_schedules backup-schedules": "200 200 200 200 404",
    "GET backup_schedule": "200 200 200 200 404",
    "GET vm_stats stats": "200 200 200 200 404",
    "GET host_stats stats": "200 200 200 200 404",
    # Maintenance (admins only) and affinity groups (operators change them).
    "GET host_drain drain": "200 403 403 403 404",
    "GET host_drain_plan drain-plan": "200 403 403 403 404",
    "POST api_host_drain drain": "202 403 403 403 404",
    # Not in maintenance: nothing to end.
    "POST api_host_activate activate": "409 403 403 403 404",
    "POST host_activate activate": "302 403 403 403 404",
    # Fencing and an admin's word that a host is off (admins only): the empty form asks
    # for no fencing, as it is; the API's empty body is refused; the host is not fenced
    # manually, so it cannot be confirmed off.
    "POST host_fencing fencing": "302 403 403 403 404",
    "POST api_host_fencing fencing": "400 403 403 403 404",
    "POST host_confirm_off confirm-off": "302 403 403 403 404",
    "POST api_host_confirm_off confirm-off": "409 403 403 403 404",
    "GET affinity_groups affinity": "200 200 200 200 404",
    "POST affinity_group_add add": "302 302 403 403 404",
    "POST affinity_group_add_vm add-vm": "302 302 403 403 404",
    "POST affinity_group_remove_vm remove-vm": "302 302 403 403 404",
    "POST affinity_group_delete delete": "302 302 403 403 404",
    "GET affinitygroup-list affinity-groups": "200 200 200 200 200",
    "GET affinitygroup-detail": "200 200 200 200 404",
    "POST affinitygroup-add add": "400 400 403 403 404",
    "POST affinitygroup-remove remove": "400 400 403 403 404",
    # The page's row removed the group already.
    "DELETE affinitygroup-detail": "404 404 403 403 404",
    "GET fleet_stats fleet": "200 403 403 403 403",
    "GET vm_tuning tuning": "503 503 503 503 404",
    "POST vm_tune vcpus": "400 400 400 403 404",
    "POST vm_tune memory": "400 400 400 403 404",
    "POST vm_tune vcpupin": "400 400 400 403 404",
    "POST vm_tune iotune": "400 400 400 403 404",
    "POST api_vm_tune_vcpupin vcpupin": "400 400 400 403 404",
    "POST api_vm_tune_emulatorpin emulatorpin": "400 400 400 403 404",
    "POST api_vm_tune_memory memory": "400 400 400 403 404",
    "POST api_vm_tune_vcpus vcpus": "400 400 400 403 404",
    "POST api_vm_tune_iotune iotune": "400 400 400 403 404",
    "POST api_vm_tune_max_vcpus max-vcpus": "400 400 400 403 404",
    "POST api_vm_tune_max_memory max-memory": "400 400 400 403 404",
    "POST api_vm_tune_numatune numatune": "400 400 400 403 404",
    "POST api_vm_tune_hugepages hugepages": "400 400 400 403 404",
    "POST api_vm_tune_nic_bandwidth nic-bandwidth": "400 400 400 403 404",
    "GET user-list users": "200 200 200 200 200",
    "GET user-detail": "200 404 404 200 404",
    "GET project-list projects": "200 200 200 200 200",
    "GET project-detail": "200 200 200 200 404",
    "GET project-members members": "200 200 200 200 404",
    "GET host-list hosts": "200 200 200 200 200",
    "GET host-detail": "200 200 200 200 404",
    "POST host-refresh refresh": "409 403 403 403 404",
    "POST host-certificates certificates": "400 403 403 403 404",
    "GET host-ssh-key ssh-key": "200 403 403 403 403",
    "POST host-scan-key scan-key": "400 403 403 403 403",
    "POST host-accept-key accept-key": "400 403 403 403 404",
    "POST host-migration-address migration-address": "400 403 403 403 404",
    "GET vm-list vms": "200 200 200 200 200",
    "GET vm-detail": "200 200 200 200 404",
    "POST vm-console console": "400 400 400 400 404",
    "GET vm-disks disks": "200 200 200 200 404",
    "POST vm-force-off force-off": "409 409 409 403 404",
    "POST vm-media media": "400 400 400 403 404",
    "POST vm-migrate migrate": "400 400 400 403 404",
    "POST vm-move-storage move-storage": "400 400 400 403 404",
    "POST vm-reboot reboot": "409 409 409 403 404",
    "POST vm-refresh-details refresh-details": "503 503 503 503 404",
    "POST vm-reset reset": "409 409 409 403 404",
    "POST vm-restore restore": "409 409 409 403 404",
    "POST vm-resume resume": "409 409 409 403 404",
    "POST vm-save save": "409 409 409 403 404",
    "POST vm-shutdown shutdown": "409 409 409 403 404",
    "POST vm-start start": "409 409 409 403 404",
    "POST vm-suspend suspend": "409 409 409 403 404",
    "GET pool-list pools": "200 200 200 200 200",
    "GET pool-detail": "200 200 200 200 404",
    "POST pool-build build": "503 403 403 403 404",
    "POST pool-refresh refresh": "503 403 403 403 404",
    "POST pool-start start": "503 403 403 403 404",
    "POST pool-stop stop": "503 403 403 403 404",
    "GET volume-list volumes": "200 200 200 200 200",
    "GET libraryimage-list library-images": "200 200 200 200 200",
    "GET libraryimage-detail": "200 200 200 200 404",
    "GET volume-detail": "200 200 200 200 404",
    "POST volume-assign assign": "400 403 403 403 404",
    "POST volume-check check": "409 409 409 409 404",
    "POST volume-clone clone": "400 400 400 403 404",
    "POST volume-convert convert": "400 400 400 403 404",
    "GET volume-download download": "503 503 503 403 404",
    "POST volume-info info": "503 503 503 503 404",
    "POST volume-resize resize": "400 400 400 403 404",
    "POST volume-upload upload": "405 405 405 405 405",
    "POST volume-wipe wipe": "409 409 409 403 404",
    "GET job-list jobs": "200 200 200 200 200",
    "GET job-detail": "200 200 200 200 404",
    "POST job-cancel cancel": "409 409 409 403 404",
    "GET network-list networks": "200 200 200 200 200",
    "GET network-detail": "200 200 200 200 404",
    "POST network-autostart autostart": "400 400 400 400 404",
    "GET network-leases leases": "503 503 503 503 404",
    "POST network-start start": "503 403 403 403 404",
    "POST network-stop stop": "503 403 403 403 404",
    "GET auditevent-list audit-events": "200 200 200 200 200",
    "GET auditevent-detail": "200 200 200 404 404",
    "GET api-root": "200 200 200 200 200",
    "GET metrics metrics": "200 403 403 403 403",
    "POST vm_snapshot_delete delete": "302 302 302 403 404",
    "DELETE vm_snapshot alpha-snap": "409 409 409 403 404",
    "POST vm_backup_delete delete": "302 302 302 403 404",
    "DELETE vm_backup": "503 503 503 403 404",
    "DELETE backup_schedule": "204 204 204 403 404",
    "DELETE vm_nics nics": "400 400 400 403 404",
    "DELETE vm_nic 52:54:00:12:34:56": "409 409 409 403 404",
    "DELETE vm-disks disks": "400 400 400 403 404",
    "DELETE project-members members": "400 400 403 403 404",
    "DELETE api_grant": "204 204 403 403 404",
    "POST project_grant_remove remove": "404 404 403 403 404",
    "POST role_delete delete": "302 403 403 403 403",
    "DELETE api_role": "404 403 403 403 403",
    "DELETE api_group": "204 403 403 403 403",
    "POST template_delete delete": "302 403 403 403 403",
    "POST library_delete delete": "302 403 403 403 404",
    "DELETE libraryimage-detail": "409 403 403 403 404",
    "POST volume_delete delete": "302 302 302 403 404",
    "DELETE volume-detail": "409 409 409 403 404",
    "POST vm_delete delete": "200 200 200 403 404",
    "DELETE vm-detail": "409 409 409 403 404",
    "POST network_delete delete": "302 403 403 403 404",
    "DELETE network-detail": "409 403 403 403 404",
    "POST pool_delete delete": "302 403 403 403 404",
    "DELETE pool-detail": "409 403 403 403 404",
    "POST host_delete delete": "302 403 403 403 404",
    "DELETE host-detail": "404 403 403 403 404",
    # Subscriptions and notifications are their owner's (alpha's member) alone.
    "GET notification_list notifications": "200 200 200 200 200",
    "POST notification_read read": "404 404 302 404 404",
    "POST notification_read_all read-all": "302 302 302 302 302",
    "GET subscription_list subscriptions": "200 200 200 200 200",
    "POST subscription_add add": "400 400 400 400 400",
    "POST subscription_delete delete": "404 404 302 404 404",
    "GET two_factor two-factor": "200 200 200 200 200",
    "POST totp_start totp": "302 302 302 302 302",
    "GET totp_confirm confirm": "200 200 200 200 200",
    "POST totp_disable remove": "302 302 302 302 302",
    "POST recovery_regenerate recovery": "302 302 302 302 302",
    "POST webauthn_register_options options": "200 200 200 200 200",
    "POST webauthn_register keys": "400 400 400 400 400",
    "POST webauthn_remove remove": "404 404 302 404 404",
    "POST second_factor_policy second-factor": "302 403 403 403 403",
    "GET subscription-list subscriptions": "200 200 200 200 200",
    "GET subscription-detail": "404 404 200 404 404",
    "GET subscription-deliveries deliveries": "404 404 200 404 404",
    "GET notification-list notifications": "200 200 200 200 200",
    "GET notification-detail": "404 404 200 404 404",
    "POST notification-read read": "404 404 200 404 404",
    "POST notification-read-all read-all": "200 200 200 200 200",
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_it_answers_each_persona_as_the_matrix_says(
    persona, world, everything, client_for, api_for
):
    column = PERSONAS.index(persona)
    beta_uri = world.teams["beta"].host.uri
    domains = sorted((d.uuid, str(d.state)) for d in hypervisor.list_domains(beta_uri))
    jobs_before = state_of_everything()["jobs"]
    wrong = []
    for key, method, path in requests_in_order(everything):
        expected = int(MATRIX[key].split()[column])
        status = send(persona, method, path, client_for, api_for).status_code
        if status != expected:
            wrong.append(f"{key} ({method} {path}): {status}, not {expected}")

    assert wrong == [], "\n".join(wrong)
    assert sorted((d.uuid, str(d.state)) for d in hypervisor.list_domains(beta_uri)) == domains
    if persona in ("viewer", "outsider"):
        # Refused everywhere it matters: not one job was started for them.
        assert state_of_everything()["jobs"] == jobs_before


def test_it_has_a_row_for_every_request_and_no_row_for_a_gone_one(everything):
    keys = [key for key, _m, _p in requests_in_order(everything)]

    assert sorted(set(keys) - set(MATRIX)) == []  # a new endpoint needs its rows
    assert sorted(set(MATRIX) - set(keys)) == []
    assert len(keys) == len(set(keys))
    named = {key.split()[1] for key in keys}
    assert {r.name for r in http_routes()} - NOT_IN_MATRIX <= named


def test_it_never_lets_a_viewer_act_on_a_vm():
    """The table itself: whatever a viewer may read, every VM action refuses them."""
    actions = [
        key
        for key in MATRIX
        if key.split()[0] in ("POST", "DELETE")
        and any(word in key for word in ("vm_", "vm-", "snapshot", "backup", "migrate"))
        # Bulk: checked per VM (test_viewer_real.py); the console and re-reading the
        # details from the host are what viewing a VM is.
        and key.split()[1] not in ("vm_bulk", "vm-console", "vm-refresh-details")
    ]
    allowed = [key for key in actions if MATRIX[key].split()[3] not in ("403", "404", "405")]

    assert len(actions) > 50
    assert allowed == []
