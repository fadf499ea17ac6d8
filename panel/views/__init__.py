"""The panel's pages."""

from .account import account
from .audit import audit_export, audit_list
from .directory import directory_mapping_delete, directory_mapping_list
from .hosts import (
    dashboard,
    host_add,
    host_delete,
    host_detail,
    host_list,
    host_refresh,
    job_cancel,
    job_detail,
    job_list,
    job_panel,
)
from .notifications import (
    notification_list,
    notification_read,
    notification_read_all,
    subscription_add,
    subscription_delete,
    subscription_list,
)
from .teams import (
    project_add,
    project_detail,
    project_edit,
    project_list,
    project_member_add,
    project_member_remove,
    user_list,
    user_reset_password,
    user_set_active,
)
from .tokens import token_add, token_list, token_revoke, user_tokens

__all__ = [
    "account",
    "audit_export",
    "audit_list",
    "dashboard",
    "directory_mapping_delete",
    "directory_mapping_list",
    "host_add",
    "host_delete",
    "host_detail",
    "host_list",
    "host_refresh",
    "job_cancel",
    "notification_list",
    "notification_read",
    "notification_read_all",
    "subscription_add",
    "subscription_delete",
    "subscription_list",
    "job_detail",
    "job_list",
    "job_panel",
    "project_add",
    "project_detail",
    "project_edit",
    "project_list",
    "project_member_add",
    "project_member_remove",
    "token_add",
    "token_list",
    "token_revoke",
    "user_tokens",
    "user_list",
    "user_reset_password",
    "user_set_active",
]
