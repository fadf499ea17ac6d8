"""The tests' hands on the provider's database (run with its settings, in a process of
its own): python -m tests.sso.provider.admin <command> [arguments].

  setup CLIENT_ID SECRET REDIRECT_URI      create the tables and the panel's client
  user NAME PASSWORD [GROUP ...]           create or reset a user with those groups
  groups NAME [GROUP ...]                  set a user's groups
  disable NAME                             the provider refuses the user from now on
  rename NAME NEW_NAME                     a new user name, the same subject
  subject NAME                             print the user's subject (sub claim)
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.sso.provider.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402


def setup(client_id: str, secret: str, redirect_uri: str) -> None:
    call_command("migrate", verbosity=0)
    Application.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": client_id,
            "client_secret": secret,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": redirect_uri,
            "algorithm": Application.RS256_ALGORITHM,
            "skip_authorization": False,
        },
    )


def user(name: str, password: str, *group_names: str) -> None:
    account, _ = User.objects.get_or_create(username=name)
    account.set_password(password)
    account.email = f"{name}@example.org"
    account.is_active = True
    account.save()
    groups(name, *group_names)


def groups(name: str, *group_names: str) -> None:
    account = User.objects.get(username=name)
    account.groups.set([Group.objects.get_or_create(name=g)[0] for g in group_names])


def disable(name: str) -> None:
    User.objects.filter(username=name).update(is_active=False)


def rename(name: str, new_name: str) -> None:
    User.objects.filter(username=name).update(username=new_name)


def subject(name: str) -> None:
    print(User.objects.get(username=name).pk)


COMMANDS = {
    "setup": setup,
    "user": user,
    "groups": groups,
    "disable": disable,
    "rename": rename,
    "subject": subject,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
