"""LDAP and Active Directory sign-on (django-auth-ldap), and the periodic directory sync.

Off unless settings.PANEL_LDAP_URI is set (README, "Directory (LDAP/AD)"). A directory
user appears at their first login, with a local password that can never be used; their
groups (DNs) go through panel.identity.directory.apply_groups at every login and sync.
A local account that has the name of a directory user is never merged into it: the
directory user is refused until an admin renames or removes the local account.

The sync re-reads each directory user's entry with the service account: an entry gone
or disabled (the active filter no longer matches it) deprovisions the user; changed
groups change their memberships. A directory that cannot be reached changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ldap
import ldap.dn
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_auth_ldap.backend import LDAPBackend
from django_auth_ldap.config import LDAPSearch, LDAPSettings
from ldap.filter import escape_filter_chars

from panel import audit
from panel.actors import Actor
from panel.choices import AuditResult, Via
from panel.models import DirectoryAccount, DirectoryMapping, DirectorySource

from .directory import apply_groups, deprovision

log = logging.getLogger(__name__)
User = get_user_model()

SOURCE = DirectorySource.LDAP

# PANEL_LDAP_GROUP_TYPE -> (the groups' objectClass, the member attribute, and whether it
# holds the user's DN or their uid). Active Directory's member attribute is asked with
# LDAP_MATCHING_RULE_IN_CHAIN, so nested groups count.
GROUP_TYPES = {
    "groupOfNames": ("groupOfNames", "member", "dn"),
    "groupOfUniqueNames": ("groupOfUniqueNames", "uniqueMember", "dn"),
    "posixGroup": ("posixGroup", "memberUid", "uid"),
    "activeDirectory": ("group", "member:1.2.840.113556.1.4.1941:", "dn"),
}


def enabled() -> bool:
    return bool(settings.PANEL_LDAP_URI)


def _connection_options() -> dict[int, Any]:
    timeout = float(settings.PANEL_LDAP_TIMEOUT)
    return {
        ldap.OPT_NETWORK_TIMEOUT: timeout,
        ldap.OPT_TIMEOUT: timeout,
        ldap.OPT_REFERRALS: 0,  # Active Directory's referrals need a bind of their own
    }


def backend_settings() -> LDAPSettings:
    """django-auth-ldap's settings, from the panel's PANEL_LDAP_* ones."""
    found = LDAPSettings("AUTH_LDAP_", {})
    found.SERVER_URI = settings.PANEL_LDAP_URI
    found.BIND_DN = settings.PANEL_LDAP_BIND_DN
    found.BIND_PASSWORD = settings.PANEL_LDAP_BIND_PASSWORD
    found.START_TLS = settings.PANEL_LDAP_START_TLS
    found.CONNECTION_OPTIONS = _connection_options()
    found.USER_SEARCH = LDAPSearch(
        settings.PANEL_LDAP_USER_BASE, ldap.SCOPE_SUBTREE, settings.PANEL_LDAP_USER_FILTER
    )
    found.USER_ATTR_MAP = {
        field: attr
        for field, attr in (
            ("email", settings.PANEL_LDAP_ATTR_EMAIL),
            ("first_name", settings.PANEL_LDAP_ATTR_FIRST_NAME),
            ("last_name", settings.PANEL_LDAP_ATTR_LAST_NAME),
        )
        if attr
    }
    found.ALWAYS_UPDATE_USER = True
    found.PERMIT_EMPTY_PASSWORD = False  # an empty password is an anonymous bind
    return found


def connect() -> Any:
    """A connection bound as the service account (raises ldap.LDAPError)."""
    conn = ldap.initialize(settings.PANEL_LDAP_URI, bytes_mode=False)
    for option, value in _connection_options().items():
        conn.set_option(option, value)
    if settings.PANEL_LDAP_START_TLS:
        conn.start_tls_s()
    conn.simple_bind_s(settings.PANEL_LDAP_BIND_DN, settings.PANEL_LDAP_BIND_PASSWORD)
    return conn


@dataclass(frozen=True)
class EntryState:
    """What the directory says of a user now."""

    dn: str
    active: bool
    groups: list[str]


def group_key(dn: str) -> str:
    """A DN as compared: case and spacing do not count."""
    try:
        return str(ldap.dn.dn2str(ldap.dn.str2dn(dn))).lower()
    except ldap.DECODING_ERROR:
        return dn.strip().lower()


def read_state(conn: Any, dn: str, attrs: dict[str, list[Any]]) -> EntryState:
    """Whether the entry at dn is active (PANEL_LDAP_ACTIVE_FILTER) and its groups, named
    as the mappings spell them."""
    active = True
    if settings.PANEL_LDAP_ACTIVE_FILTER:
        try:
            found = conn.search_s(dn, ldap.SCOPE_BASE, settings.PANEL_LDAP_ACTIVE_FILTER, ["1.1"])
        except ldap.NO_SUCH_OBJECT:
            found = []
        active = any(entry_dn for entry_dn, _ in found)
    kind, member, by = GROUP_TYPES[settings.PANEL_LDAP_GROUP_TYPE]
    value = dn if by == "dn" else _first(attrs, "uid")
    groups: list[str] = []
    if value and settings.PANEL_LDAP_GROUP_BASE:
        query = f"(&(objectClass={kind})({member}={escape_filter_chars(value)}))"
        found = conn.search_s(settings.PANEL_LDAP_GROUP_BASE, ldap.SCOPE_SUBTREE, query, ["1.1"])
        groups = [group_dn for group_dn, _ in found if group_dn]
    return EntryState(dn=dn, active=active, groups=mapped_names(groups))


def mapped_names(groups: Iterable[str]) -> list[str]:
    """The groups, each spelt as a mapping spells it (DNs compare without case)."""
    spelt = {
        group_key(g): g
        for g in DirectoryMapping.objects.filter(source=SOURCE).values_list("group", flat=True)
    }
    return sorted({spelt.get(group_key(g), g) for g in groups})


def _first(attrs: dict[str, list[Any]], name: str) -> str:
    for key, values in attrs.items():
        if key.lower() == name.lower() and values:
            value = values[0]
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def find_entry(conn: Any, username: str) -> tuple[str, dict[str, list[Any]]] | None:
    """The one entry the user search finds for username; None when there is none.
    Raises LookupError when it finds several (the directory is ambiguous: change nothing)."""
    query = settings.PANEL_LDAP_USER_FILTER % {"user": escape_filter_chars(username)}
    found = conn.search_s(settings.PANEL_LDAP_USER_BASE, ldap.SCOPE_SUBTREE, query)
    entries = [(dn, attrs) for dn, attrs in found if dn]
    if len(entries) > 1:
        raise LookupError(f"{len(entries)} directory entries match {username}")
    return entries[0] if entries else None


def _actor(request: Any, user: Any) -> Actor:
    """The user logging in (or nobody yet), from where their request came."""
    if request is None:
        return Actor(user, None, Via.PANEL)
    return dataclasses.replace(Actor.of(request), user=user)


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend, with the panel's settings, directory accounts that never
    merge into local ones, the active check, and the group mapping."""

    _request: Any = None
    _settings: LDAPSettings | None = None

    @property
    def settings(self) -> LDAPSettings:
        if self._settings is None:
            self._settings = backend_settings()
        return self._settings

    @settings.setter
    def settings(self, value: LDAPSettings) -> None:
        self._settings = value

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kw: Any
    ) -> Any:
        if not enabled() or username is None:
            return None
        self._request = request
        known = User.objects.filter(username__iexact=username.strip()).first()
        account = DirectoryAccount.objects.filter(user=known).first() if known else None
        if known is not None and (account is None or account.source != SOURCE):
            # A local (or another source's) account: never this backend's, so a local
            # login does not wait on the directory, nor a directory login merge into it.
            return None
        user = super().authenticate(request, username=username, password=password, **kw)
        if user is None and account is not None and account.user.is_active:
            _recheck(account)  # refused: if the directory deleted or disabled them, now
        return user

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        """Called once the directory took the password: refuses a name a local account
        holds, and a disabled entry; reads the groups before the user is saved."""
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and not DirectoryAccount.objects.filter(user=user, source=SOURCE).exists():
            audit.record(
                _actor(self._request, None),
                "sso.login_refused",
                username,
                result=AuditResult.DENIED,
                detail="ldap: a local account has this name; it is not merged with the "
                "directory's user",
            )
            raise ldap_user.AuthenticationFailed("a local account has this username")
        state = read_state(ldap_user.connection, ldap_user.dn, ldap_user.attrs or {})
        if not state.active:
            if not built and user.is_active:
                deprovision(user, SOURCE, "disabled in the directory (at login)")
            raise ldap_user.AuthenticationFailed("the directory entry is disabled")
        ldap_user.panel_state = state
        return user, built

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        user = super().authenticate_ldap_user(ldap_user, password)
        state: EntryState | None = getattr(ldap_user, "panel_state", None)
        if user is None or state is None or not user.is_active:
            return None  # a disabled user is enabled again by an admin, not by a login
        if user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])
        DirectoryAccount.objects.update_or_create(
            user=user,
            defaults={"source": SOURCE, "external_id": state.dn, "synced": timezone.now()},
        )
        actor = _actor(self._request, user)
        apply_groups(user, SOURCE, state.groups, actor=actor)
        audit.record(actor, "sso.login", user.username, detail=f"ldap: {state.dn}")
        return user


def _recheck(account: DirectoryAccount) -> None:
    """After a refused login of a directory user: deprovision them at once if the
    directory deleted or disabled them (a bind refused for a wrong password changes
    nothing else)."""
    try:
        conn = connect()
    except ldap.LDAPError as exc:
        log.warning("could not check %s in the directory: %s", account.user, exc)
        return
    try:
        sync_account(conn, account)
    except (ldap.LDAPError, LookupError) as exc:
        log.warning("could not check %s in the directory: %s", account.user, exc)
    finally:
        conn.unbind_s()


def sync_account(conn: Any, account: DirectoryAccount) -> str:
    """Re-read one directory user: "removed", "disabled" (both deprovision them) or "synced"."""
    user = account.user
    entry = find_entry(conn, user.username)
    if entry is None:
        deprovision(user, SOURCE, "no longer in the directory", actor=Actor.scheduled(None))
        return "removed"
    dn, attrs = entry
    state = read_state(conn, dn, attrs)
    if not state.active:
        deprovision(user, SOURCE, "disabled in the directory", actor=Actor.scheduled(None))
        return "disabled"
    account.external_id = dn
    account.synced = timezone.now()
    account.save(update_fields=["external_id", "synced"])
    apply_groups(user, SOURCE, state.groups, actor=Actor.scheduled(None))
    return "synced"


def sync_directory() -> dict[str, int]:
    """The periodic pass over every active directory user: how many ended each way."""
    counts: dict[str, int] = {}
    if not enabled():
        return counts
    try:
        conn = connect()
    except ldap.LDAPError as exc:
        log.warning("directory sync skipped: %s cannot be used (%s)", settings.PANEL_LDAP_URI, exc)
        return counts
    try:
        accounts = DirectoryAccount.objects.filter(source=SOURCE, user__is_active=True)
        for account in accounts.select_related("user"):
            try:
                outcome = sync_account(conn, account)
            except LookupError as exc:
                log.warning("directory sync left %s as it is: %s", account.user, exc)
                outcome = "ambiguous"
            counts[outcome] = counts.get(outcome, 0) + 1
    except ldap.LDAPError as exc:
        log.warning("directory sync stopped: %s", exc)
    finally:
        conn.unbind_s()
    return counts
