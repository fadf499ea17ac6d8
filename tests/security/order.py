"""Which requests the permission matrix (test_matrix.py) leaves out, which API routes
also get a DELETE row, and which destructive requests run last, in what order."""

from __future__ import annotations

# Requests that belong to logging in and out, tested in test_anonymous.py.
NOT_IN_MATRIX = {
    "login",
    "oidc_login",
    "oidc_callback",
    "logout",
    "api_token",
    "login_second",
    "login_second_key_options",
    "login_second_key",
}
# API routes that also answer DELETE (and so get a DELETE row).
DELETABLE = {
    "api_role",
    "api_group",
    "api_grant",
    "vm_nics",
    "vm_nic",
    "vm_snapshot",
    "vm_backup",
    "backup_schedule",
    "project-members",
    "host-detail",
    "vm-detail",
    "vm-disks",
    "pool-detail",
    "volume-detail",
    "network-detail",
    "libraryimage-detail",
    "apitoken-detail",
    "directorymapping-detail",
    "session-detail",
    "affinitygroup-detail",
}
# Destructive requests run last, children before parents, so that each one still finds
# its object (and the ones before it find theirs).
LAST = [
    "vm_snapshot_delete delete",
    "DELETE vm_snapshot",
    "vm_backup_delete delete",
    "DELETE vm_backup",
    "DELETE backup_schedule",
    "DELETE vm_nic",
    "DELETE vm_nics",
    "affinity_group_delete delete",
    "DELETE affinitygroup-detail",
    "DELETE vm-disks",
    "DELETE project-members",
    "DELETE api_grant",
    "project_grant_remove remove",
    "role_delete delete",
    "DELETE api_role",
    "DELETE api_group",
    "template_delete",
    "library_delete delete",
    "DELETE libraryimage-detail",
    "volume_delete delete",
    "DELETE volume-detail",
    "vm_delete",
    "DELETE vm-detail",
    "network_delete delete",
    "DELETE network-detail",
    "pool_delete delete",
    "DELETE pool-detail",
    "host_delete",
    "DELETE host-detail",
    "subscription_delete delete",
    "token_revoke revoke",
    "DELETE apitoken-detail",
    "DELETE directorymapping-detail",
    "directory_mapping_delete delete",
    "webauthn_remove remove",
    # Log the persona out everywhere: nothing may come after them.
    "session-revoke-all revoke-all",
    "session_revoke_all revoke-all",
]
