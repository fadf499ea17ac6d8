"""The real local libvirtd, its tiny guest as alpha's VM (owned by member), and the
people of the VM tests (tests/vms/conftest.py), instead of the two-team world."""

from tests.vms.conftest import (  # noqa: F401 - fixtures used by the tests here
    admin,
    alpha,
    api_for,
    beta,
    client_for,
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
)
