"""Directory (LDAP) and single sign-on (OIDC) accounts, and the mapping of their groups to
project roles. Declared here, imported by panel.models (the app's models module).

Projects and memberships are named by string ("panel.Project"): this module never imports
panel.models, which imports it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from panel.choices import ProjectRole


class DirectorySource(models.TextChoices):
    LDAP = "ldap", "LDAP / Active Directory"
    OIDC = "oidc", "OpenID Connect"


class DirectoryAccount(models.Model):
    """A user who came from a directory or an identity provider. Their local password is
    unusable; a local account of the same name is never merged into one of these."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_account"
    )
    source = models.CharField(max_length=10, choices=DirectorySource)
    # The directory's name of the user: an LDAP DN, an OIDC issuer and subject.
    external_id = models.CharField(max_length=500)
    synced = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="one_account_per_directory_entry"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.source}: {self.external_id})"


class DirectoryMapping(models.Model):
    """Members of a directory group get a role in a project."""

    source = models.CharField(max_length=10, choices=DirectorySource)
    # An LDAP group's DN, or an OIDC groups-claim value, as the directory spells it.
    group = models.CharField(max_length=500)
    project = models.ForeignKey(
        "panel.Project", on_delete=models.CASCADE, related_name="directory_mappings"
    )
    role = models.CharField(max_length=10, choices=ProjectRole)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "group", "project__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "group", "project"], name="one_mapping_per_group_and_project"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} group {self.group} -> {self.role} of {self.project}"


class DirectoryGrant(models.Model):
    """A membership that a mapping gave, and the role it gave: the sync changes and removes
    only these. A membership without one was given by hand and is never touched; one whose
    role an admin changed by hand becomes theirs (the sync drops its grant)."""

    membership = models.OneToOneField(
        "panel.Membership", on_delete=models.CASCADE, related_name="directory_grant"
    )
    source = models.CharField(max_length=10, choices=DirectorySource)
    role = models.CharField(max_length=10, choices=ProjectRole)
    group = models.CharField(max_length=500)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.membership} from {self.source} group {self.group}"
