"""The API tokens page's form: a name, an expiry and a scope (all my rights, like a
built-in role, or privileges ticked one by one)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from panel.privileges import BUILTIN_ROLES, CATALOGUE

from . import tokens

EXPIRIES = [("", "Never"), ("1", "1 day"), ("7", "7 days"), ("30", "30 days")]
EXPIRIES += [("90", "90 days"), ("365", "1 year")]
ALL = "all"
CUSTOM = "custom"


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text='Unique among your tokens, e.g. "backup script"; blank: "API token".',
    )
    expires_in = forms.ChoiceField(choices=EXPIRIES, required=False, label="Expires in")
    scope = forms.ChoiceField(
        choices=[(ALL, "All my rights")]
        + [(role, f"Like {role}") for role in BUILTIN_ROLES]
        + [(CUSTOM, "Only the privileges ticked below")],
        initial=ALL,
        help_text="Never more than you hold yourself at the time of each request.",
    )
    privileges = forms.MultipleChoiceField(
        choices=list(CATALOGUE.items()), required=False, widget=forms.CheckboxSelectMultiple
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("scope") == CUSTOM and not cleaned.get("privileges"):
            self.add_error("privileges", "Tick the privileges the token may use.")
        return cleaned

    def spec(self) -> dict[str, Any]:
        """The keyword arguments of tokens.create_token."""
        data = self.cleaned_data
        scope = data["scope"]
        privileges = None
        if scope == CUSTOM:
            privileges = list(data["privileges"])
        elif scope != ALL:
            privileges = tokens.preset(scope)
        days = data.get("expires_in")
        expires: datetime | None = timezone.now() + timedelta(days=int(days)) if days else None
        return {"name": data.get("name", ""), "expires": expires, "privileges": privileges}
