"""A token's ceiling (user._panel_ceiling, set by token authentication): its holder holds
no privilege beyond it, whatever their roles, and an administrator whose ceiling lacks
"administer" acts as the projects they are in allow."""

from __future__ import annotations

from panel.permissions import allowed, forget, is_admin, restrict
from panel.privileges import ADMINISTER, CONSOLE, POWER, SNAPSHOT, VIEW
from vms.models import VirtualMachine


def capped(user, *privileges: str):
    forget(user)
    user._panel_ceiling = frozenset(privileges)
    return user


def test_an_operator_under_a_ceiling_holds_only_what_it_names(world, operator):
    vm = world.teams["alpha"].vms[0]
    user = capped(operator, POWER)

    assert allowed(user, vm, POWER)
    assert not allowed(user, vm, SNAPSHOT) and not allowed(user, vm, CONSOLE)
    assert restrict(VirtualMachine.objects.all(), user, VIEW).count() == 2  # seeing stays
    assert not restrict(VirtualMachine.objects.all(), user, SNAPSHOT).exists()


def test_an_admin_under_a_ceiling_without_administer_is_no_admin(world, admin):
    vm = world.teams["alpha"].vms[0]

    assert not is_admin(capped(admin, POWER))
    assert not allowed(admin, vm, POWER)  # in no project: nothing to act on
    assert is_admin(capped(admin, ADMINISTER, POWER))
    del admin._panel_ceiling
    assert is_admin(forget(admin))
