from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Model

from . import audit, throttle, tlscerts
from .actors import Actor, client_ip
from .choices import AuditResult, NotificationKind, ProjectRole, Via
from .models import Project
from .permissions import VIEW, is_admin, restrict
from .quotas import FIELDS, LABELS, limits


class HostForm(forms.Form):
    """Add a host by its libvirt URI."""

    name = forms.CharField(max_length=100, help_text="A short name shown everywhere, e.g. kvm01.")
    uri = forms.CharField(
        max_length=500,
        label="libvirt URI",
        help_text="qemu:///system for this machine; qemu+ssh://root@host/system, "
        "qemu+tls://host/system or qemu+tcp://host/system for others.",
    )
    ssh_fingerprint = forms.CharField(
        max_length=100,
        required=False,
        label="SSH host key fingerprint",
        help_text="qemu+ssh hosts only: the panel reads the host's key and shows its "
        "fingerprint here for you to check against the host before you confirm.",
    )
    migration_address = forms.CharField(
        max_length=253,
        required=False,
        label="Migration address",
        help_text="Optional: the IP address or host name other hosts reach this one at "
        "when a VM migrates here (e.g. on a storage or migration network); its QEMU "
        "listens on that address only. Empty: the host part of the URI.",
    )

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        # A password typed into the URI is refused and must not be echoed back.
        self.had_password = False
        if data is not None and data.get("uri"):
            parts = urlsplit(data["uri"].strip())
            if parts.password:
                data = data.copy()
                netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
                data["uri"] = urlunsplit(parts._replace(netloc=netloc))
                self.had_password = True
        super().__init__(data, *args, **kwargs)

    def clean_uri(self) -> str:
        if self.had_password:
            raise forms.ValidationError(
                "Do not put a password in the URI: it would be stored and shown. "
                "Use an SSH key (qemu+ssh://user@host/system) or TLS certificates instead."
            )
        return self.cleaned_data["uri"]

    # qemu+tls hosts: the certificates the panel connects with (checked by the service).
    ca_certificate = forms.FileField(
        required=False,
        label="CA certificate (qemu+tls)",
        help_text="PEM: the CA that signed the host's server certificate and the client "
        "certificate (cacert.pem).",
    )
    client_certificate = forms.FileField(
        required=False,
        label="Client certificate (qemu+tls)",
        help_text="PEM: the panel's certificate, which the host's libvirtd must accept "
        "(clientcert.pem).",
    )
    client_key = forms.FileField(
        required=False,
        label="Client key (qemu+tls)",
        help_text="PEM, without a passphrase (clientkey.pem). It is kept outside the "
        "database, readable by the panel only, and never shown again.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["certificates"] = pem_files(data)
        return data


def pem_files(data: dict[str, Any]) -> dict[str, bytes]:
    """The certificate files among a form's cleaned data (popped from it), as bytes: at
    most one byte more than any PEM file may have, for the service to refuse a bigger one."""
    files = {name: data.pop(name, None) for name in tlscerts.FIELDS}
    return {name: f.read(tlscerts.MAX_BYTES + 1) for name, f in files.items() if f}


class HostCertificatesForm(forms.Form):
    """New certificates for a qemu+tls host."""

    ca_certificate = forms.FileField(label="CA certificate", help_text="PEM (cacert.pem).")
    client_certificate = forms.FileField(
        label="Client certificate", help_text="PEM (clientcert.pem)."
    )
    client_key = forms.FileField(
        label="Client key", help_text="PEM, without a passphrase (clientkey.pem)."
    )


class ThrottledLoginForm(AuthenticationForm):
    """Django's login form, refusing a username after repeated failures from one address."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        if not self.cleaned_data.get("password"):
            # No password was tried (the field says it is required): nothing to count,
            # and nothing to clear either.
            return super().clean()
        ip = client_ip(self.request)
        refused = throttle.attempt(username, ip)
        if refused:
            raise forms.ValidationError(refused.message, code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            audit.record(
                Actor(None, ip, Via.PAGE), "login.failed", username, result=AuditResult.DENIED
            )
            raise
        throttle.succeeded(username, ip)
        return cleaned


class SecondStepForm(forms.Form):
    """The login's second step: a code of the authenticator app, or a recovery code."""

    code = forms.CharField(
        max_length=40,
        label="Code",
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )


class ProjectForm(forms.Form):
    """A project's name, description and quota (blank: unlimited)."""

    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in FIELDS:
            self.fields[f"quota_{field}"] = forms.IntegerField(
                required=False,
                min_value=0,
                label=f"Quota: {LABELS[field]}",
                help_text="Blank: no limit.",
            )

    def quota(self) -> dict[str, int | None]:
        return {f: self.cleaned_data.get(f"quota_{f}") for f in FIELDS}


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ProjectRole.choices)

    def clean_username(self) -> Any:
        name = self.cleaned_data["username"]
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise forms.ValidationError(f"There is no user '{name}'. Create it first (Users page).")
        return user


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(
        widget=forms.PasswordInput,
        help_text="At least 8 characters, not all digits, not a common password.",
    )
    is_admin = forms.BooleanField(required=False, label="Administrator")


class PasswordResetForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, label="New password")


class ProjectEditForm(ProjectForm):
    """Admins: the project's name, quota, which hosts, pools and networks it may use, and
    whether its members need a second factor."""

    require_second_factor = forms.BooleanField(
        required=False,
        label="Members need a second factor",
        help_text="Members without an authenticator app or security key must set one up "
        "before they can use the panel (or the API).",
    )

    @staticmethod
    def initial_for(project: Any) -> dict[str, Any]:
        """The form's fields as the project has them now."""
        return {
            "name": project.name,
            "description": project.description,
            "allowed_hosts": project.allowed_hosts.all(),
            "allowed_pools": project.allowed_pools.all(),
            "allowed_networks": project.allowed_networks.all(),
            "require_second_factor": project.require_second_factor,
            **{f"quota_{k}": v for k, v in limits(project).items()},
        }

    def changes(self) -> dict[str, Any]:
        """What the valid form asks for, as panel.services.update_project takes it."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "description": data["description"],
            "quota": self.quota(),
            "allowed_hosts": list(data["allowed_hosts"]),
            "allowed_pools": list(data["allowed_pools"]),
            "allowed_networks": list(data["allowed_networks"]),
            "require_second_factor": data["require_second_factor"],
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in (("hosts", "host"), ("pools", "pool"), ("networks", "network")):
            model = cast(type[Model], Project._meta.get_field(f"allowed_{name}").related_model)
            choices = model._default_manager.all()
            if name != "hosts":
                choices = choices.select_related("host")
            self.fields[f"allowed_{name}"] = forms.ModelMultipleChoiceField(
                choices, required=False, help_text=f"None selected: every {label}."
            )


class SubscriptionForm(forms.Form):
    """What to hear of, in which project, and where besides the bell."""

    kinds = forms.MultipleChoiceField(
        choices=NotificationKind.choices,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        label="Tell me when",
    )
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        required=False,
        empty_label="All my projects",
        label="In project",
        widget=forms.Select(attrs={"class": "form-select"}),
    )
    email = forms.BooleanField(required=False, label="Also by email")
    webhook_url = forms.CharField(
        required=False,
        max_length=500,
        label="Webhook URL",
        help_text="Optional: the panel POSTs each notification there, signed with HMAC-SHA256.",
    )

    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ModelChoiceField, self.fields["project"])
        field.queryset = restrict(Project.objects.all(), user, VIEW)
        if not is_admin(user):
            kinds = cast(forms.MultipleChoiceField, self.fields["kinds"])
            kinds.choices = [c for c in NotificationKind.choices if not c[0].startswith("host.")]
