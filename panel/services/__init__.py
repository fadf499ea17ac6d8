"""The panel's actions: hosts and jobs, projects, members, users and tokens."""

from panel.exceptions import ConflictError, ServiceError
from panel.identity.tokens import create_token, revoke_token

from .host_migration import clean_migration_address, set_migration_address
from .hosts import (
    add_host,
    cancel_job,
    delete_host,
    for_viewer,
    host_error_for,
    host_facts_for,
    reconcile_host,
    refresh_host,
    serialize_host,
    set_host_state,
)
from .teams import (
    add_member,
    create_project,
    create_user,
    remove_member,
    set_password,
    set_user_active,
    update_project,
)

__all__ = [
    "ConflictError",
    "ServiceError",
    "add_host",
    "add_member",
    "cancel_job",
    "clean_migration_address",
    "create_project",
    "create_token",
    "create_user",
    "delete_host",
    "for_viewer",
    "host_error_for",
    "host_facts_for",
    "reconcile_host",
    "refresh_host",
    "remove_member",
    "revoke_token",
    "serialize_host",
    "set_host_state",
    "set_migration_address",
    "set_password",
    "set_user_active",
    "update_project",
]
