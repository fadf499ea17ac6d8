"""The forms of the identity pages."""

from __future__ import annotations

from django import forms

from panel.choices import ProjectRole
from panel.models import DirectorySource, Project


class DirectoryMappingForm(forms.Form):
    source = forms.ChoiceField(choices=DirectorySource.choices)
    group = forms.CharField(
        max_length=500,
        help_text="LDAP: the group's DN (cn=ops,ou=groups,dc=example,dc=org). "
        "OpenID Connect: a value of the groups claim.",
    )
    project = forms.ModelChoiceField(queryset=Project.objects.all())
    role = forms.ChoiceField(choices=ProjectRole.choices)
