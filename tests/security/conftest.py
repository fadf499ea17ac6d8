"""The two teams of tests/teams (alpha: operator, member, viewer; beta: outsider), each
with every kind of object an endpoint can name: template, snapshot, backup, schedule."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from panel import services
from panel.actors import Actor
from panel.choices import AuditResult, NotificationKind
from panel.models import (
    AuditEvent,
    DirectoryMapping,
    Grant,
    Job,
    Notification,
    Role,
    Subscription,
    UserSession,
    WebAuthnCredential,
)
from storage.models import LibraryImage
from tests.teams.conftest import (  # noqa: F401 - fixtures used by the tests here
    HOME,
    OTHER,
    PERSONAS,
    admin,
    api_for,
    client_for,
    client_handler,
    fast_password_hashing,
    new_client,
    token_for,
    world,
)
from vms.models import AffinityGroup, Backup, BackupSchedule, Snapshot, Template, VirtualMachine

from .routes import Unfillable

MAC = "52:54:00:12:34:56"


@pytest.fixture
def everything(world) -> dict[str, dict[str, Any]]:  # noqa: F811 - the fixture above
    """objects[team][kind]: the id (or name) of a real object of that kind in each team."""
    out: dict[str, dict[str, Any]] = {}
    for name, team in world.teams.items():
        vm = team.vms[0]
        vm.disks = [{"target": "vda", "device": "disk", "source": team.volume.path}]
        vm.nics = [{"mac": MAC, "type": "network", "source": team.network.name, "model": "virtio"}]
        vm.save(update_fields=["disks", "nics"])
        template = Template.objects.create(name=f"{name}-template")
        template.projects.add(team.project)
        snapshot = Snapshot.objects.create(vm=vm, name=f"{name}-snap", state="shutoff")
        schedule = BackupSchedule.objects.create(
            vm=vm, project=team.project, pool=team.pool, created_by=world.users["admin"]
        )
        backup = Backup.objects.create(
            vm=vm,
            vm_uuid=vm.pk,
            vm_name=vm.name,
            project=team.project,
            host=team.host,
            pool=team.pool,
            state="succeeded",
        )
        # The team's first member's own: a subscription with a webhook, a notification.
        owner = world.users["member" if name == "alpha" else "outsider"]
        subscription = Subscription.objects.create(
            user=owner,
            project=team.project,
            kinds=[NotificationKind.JOB_FAILED],
            webhook_url="https://hooks.example.org/panel",
            webhook_secret=f"{name}-webhook-secret",
        )
        notification = Notification.objects.create(
            user=owner, kind=NotificationKind.JOB_FAILED, title=f"{name} job failed"
        )
        # A private library image shared with the team's project only; its volume is
        # the VM's disk, so deleting it is refused (409) and leaves it for the next row.
        image = LibraryImage.objects.create(
            name=f"{name}-image",
            kind="cloud",
            pool=team.pool,
            volume=team.volume,
            format="qcow2",
            state="ready",
        )
        image.projects.add(team.project)
        # Two tokens of theirs: one the page revokes, one the API does.
        token = services.create_token(owner, actor=Actor(owner), name=f"{name}-token").token
        api_token = services.create_token(owner, actor=Actor(owner), name=f"{name}-api").token
        mapping = DirectoryMapping.objects.create(
            source="ldap",
            group=f"cn={name},ou=groups,dc=panel,dc=test",
            project=team.project,
            role="member",
        )
        key = WebAuthnCredential.objects.create(
            user=owner, name=f"{name}-key", credential_id=f"{name}-key-id", public_key=b"-"
        )
        # A custom role, a group (of the newcomer, who is no persona) and a grant of the
        # role to the group on the team's VM: deleting the role is refused while it is used.
        role = Role.objects.create(name=f"{name}-role", privileges=["view"])
        group = Group.objects.create(name=f"{name}-group")
        group.user_set.add(world.users["newcomer"])
        grant = Grant.objects.create(project=team.project, group=group, role=role, vm=vm)
        # A login session of the team's removable user, in a browser of its own.
        Client().force_login(team.removable)
        session = UserSession.objects.get(user=team.removable)
        affinity = AffinityGroup.objects.create(project=team.project, name=f"{name}-together")
        affinity.vms.add(vm)
        out[name] = {
            "affinity": affinity.pk,
            "host": team.host.pk,
            "job": team.job.pk,
            "project": team.project.pk,
            "user": team.removable.pk,
            "template": template.pk,
            "vm": vm.pk,
            "pool": team.pool.pk,
            "volume": team.volume.pk,
            "image": image.pk,
            "network": team.network.pk,
            "event": team.event.pk,
            "schedule": schedule.pk,
            "backup": backup.pk,
            "snapshot": snapshot.name,
            "disk": "vda",
            "mac": MAC,
            "subscription": subscription.pk,
            "notification": notification.pk,
            "token": token.pk,
            "api_token": api_token.pk,
            "mapping": mapping.pk,
            "key": key.pk,
            "role": role.pk,
            "group": group.pk,
            "grant": grant.pk,
            "session": session.pk,
        }
    return out


def objects_of(everything: dict[str, dict[str, Any]], team: str):
    def get(kind: str) -> Any:
        try:
            return everything[team][kind]
        except KeyError:
            raise Unfillable(f"no {kind} object in the test world") from None

    return get


def state_of_everything() -> dict[str, Any]:
    """What a GET (or a refused request) must never change: audit rows of actions, jobs,
    every VM's row, snapshots, backups, schedules. Refusals are audited by design."""
    return {
        "audit": AuditEvent.objects.exclude(result=AuditResult.DENIED).count(),
        "jobs": Job.objects.count(),
        # Not the state: it mirrors the host, and a read that finds a domain gone says
        # so (the world's VM rows have no domains); the hosts' domains are compared instead.
        "vms": sorted(VirtualMachine.objects.values_list("id", "name", "project_id", "host_id")),
        "snapshots": Snapshot.objects.count(),
        "backups": Backup.objects.count(),
        "schedules": BackupSchedule.objects.count(),
    }
