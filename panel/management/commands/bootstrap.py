"""First-start setup: the admin user and the local host, each created once."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from panel import audit, hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Host
from panel.services import add_host


class Command(BaseCommand):
    help = "Create the admin user and register the local libvirt host, if not done yet."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-host", action="store_true", help="Do not register the local host."
        )

    def handle(self, *args, **options):
        User = get_user_model()
        admin = User.objects.filter(username="admin").first()
        if admin is None:
            password = os.environ.get("PANEL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            with transaction.atomic():
                admin = User.objects.create_superuser("admin", "", password)
                audit.record(
                    Actor(None), "user.create", "admin", detail="first admin, created at setup"
                )
            if os.environ.get("PANEL_ADMIN_PASSWORD"):
                self.stdout.write(
                    "Created the admin user 'admin' with the password from PANEL_ADMIN_PASSWORD."
                )
            else:
                self.stdout.write(
                    self.style.WARNING(
                        f"Created the admin user 'admin' with password: {password}\n"
                        "It is shown only this once: note it, or set PANEL_ADMIN_PASSWORD before "
                        "the first start."
                    )
                )
        if options["no_host"]:
            return
        uri = settings.PANEL_LOCAL_URI
        if Host.objects.filter(uri=hypervisor.check_uri(uri)).exists():
            return
        try:
            host = add_host(name="local", uri=uri, actor=Actor(admin))
        except ServiceError as exc:
            self.stderr.write(f"Could not register the local host {uri}: {exc.message}")
            return
        self.stdout.write(
            f"Registered the local host '{host.name}' ({uri}); its checks run as job."
        )
