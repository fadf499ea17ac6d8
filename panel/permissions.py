"""Who may do what. Every view, API viewset and consumer asks here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from .models import Host, Job


def is_admin(user: Any) -> bool:
    """Admins manage the whole panel: hosts, all projects, users."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_superuser)


def can_manage_hosts(user: Any) -> bool:
    return is_admin(user)


def visible_jobs(user: Any) -> QuerySet[Job]:
    """Admins see every job; others see the jobs they started."""
    qs = Job.objects.select_related("user", "host")
    if is_admin(user):
        return qs
    if not getattr(user, "is_authenticated", False):
        return qs.none()
    return qs.filter(user=user)


def visible_hosts(user: Any) -> QuerySet[Host]:
    """Every signed-in user sees the hosts (their names and state); only admins change them."""
    if not getattr(user, "is_authenticated", False):
        return Host.objects.none()
    return Host.objects.all()
