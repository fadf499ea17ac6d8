"""Attack: boot a VM from another project's disk.

An operator of alpha creates a VM whose kernel or initrd is a volume of project beta, or
a file anywhere under the storage roots: direct kernel boot loads it into the guest's
memory (with ``retain_initrd`` the guest reads the initrd back from
``/sys/firmware/initrd``), so beta's disk would be read from inside alpha's VM. The same
goes for an ISO or an imported disk.

What the panel does: a non-admin names boot media only as volumes the VM may use, a volume
of its project they may change or a shared image an admin published (the boot-file and
ISO library); anything else, a bare path included, is refused with 400 on the field, the
refusal audited, and no job, volume or domain made. Admins may still name files under
PANEL_STORAGE_ROOTS.
"""

from __future__ import annotations

import pytest

from panel import hypervisor
from panel.models import AuditEvent, Job
from tests.attacks.media import GUEST_DIR, shared_file, unique
from tests.conftest import LOCAL_URI
from tests.vms.conftest import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

BETA_SECRET = b"beta's payroll database, not for alpha"


@pytest.fixture
def library(media_pool, people):
    """The admins' boot-file library: the tiny guest's kernel and initrd, shared."""
    admin = people["admin"]
    return {
        "kernel": shared_file(media_pool, GUEST_DIR / "vmlinuz", "lib-vmlinuz", admin),
        "initrd": shared_file(media_pool, GUEST_DIR / "initrd.img", "lib-initrd.img", admin),
    }


@pytest.fixture
def beta_disk(make_volume, people):
    """A disk of project beta, made by its member, holding beta's data."""
    return make_volume(people.beta, "outsider", content=BETA_SECRET)


def create(attacker, project, name: str, install: dict, **extra):
    return attacker.api(
        "POST",
        "vms/",
        json={
            "name": name,
            "project": project.pk,
            "vcpus": 1,
            "memory_mib": 96,
            "networks": [],
            "install": install,
            "start": False,
            **extra,
        },
    )


def assert_refused(response, field: str, operator, name: str) -> None:
    """400 on field, audited as the operator's failed vm.create, and nothing made."""
    assert response.status_code == 400, response.text
    assert field in response.json(), response.json()
    assert "beta" not in response.text  # nothing told about the other project's volume
    assert not Job.objects.filter(kind="vm.create").exists()
    event = AuditEvent.objects.get(action="vm.create", user=operator)
    assert (event.result, event.target) == ("failure", name)
    assert name not in {d.name for d in hypervisor.list_domains(LOCAL_URI)}


def test_it_refuses_an_initrd_that_is_another_projects_disk(
    attacker, people, library, beta_disk, created_vms
):
    operator = attacker("operator")
    name = unique("ptatk-initrd")
    created_vms.append(name)
    response = create(
        operator,
        people.alpha,
        name,
        {"method": "kernel", "kernel": library["kernel"].path, "initrd": beta_disk.path},
    )
    assert_refused(response, "initrd", people["operator"], name)


def test_it_refuses_a_kernel_that_is_another_projects_disk(
    attacker, people, library, beta_disk, created_vms
):
    operator = attacker("operator")
    name = unique("ptatk-kernel")
    created_vms.append(name)
    response = create(
        operator,
        people.alpha,
        name,
        {"method": "kernel", "kernel": beta_disk.path, "initrd": library["initrd"].path},
    )
    assert_refused(response, "kernel", people["operator"], name)


def test_it_refuses_a_bare_path_under_the_storage_roots(attacker, people, library, created_vms):
    operator = attacker("operator")
    name = unique("ptatk-path")
    created_vms.append(name)
    # A file under PANEL_STORAGE_ROOTS that is no volume: for admins only.
    response = create(
        operator,
        people.alpha,
        name,
        {
            "method": "kernel",
            "kernel": library["kernel"].path,
            "initrd": str(GUEST_DIR / "initrd.img"),
        },
    )
    assert_refused(response, "initrd", people["operator"], name)


def test_it_refuses_another_projects_disk_as_an_iso(attacker, people, beta_disk, created_vms):
    operator = attacker("operator")
    name = unique("ptatk-iso")
    created_vms.append(name)
    response = create(operator, people.alpha, name, {"method": "iso", "iso_volume": beta_disk.pk})
    assert_refused(response, "iso_volume", people["operator"], name)


def test_it_refuses_another_projects_disk_as_an_imported_disk(
    attacker, people, beta_disk, created_vms
):
    operator = attacker("operator")
    name = unique("ptatk-import")
    created_vms.append(name)
    response = create(operator, people.alpha, name, {"method": "import", "volume": beta_disk.pk})
    assert_refused(response, "volume", people["operator"], name)


def test_it_boots_an_operators_vm_from_the_shared_library_and_its_own_volume(
    attacker, people, library, make_volume, created_vms
):
    """The allowed way, for contrast: shared boot files and a volume of alpha."""
    own_initrd = make_volume(
        people.alpha,
        "operator",
        content=(GUEST_DIR / "initrd.img").read_bytes(),
        capacity_gib=(GUEST_DIR / "initrd.img").stat().st_size / 1024**3 + 0.001,
    )
    operator = attacker("operator")
    name = unique("ptatk-ok")
    created_vms.append(name)
    response = create(
        operator,
        people.alpha,
        name,
        {"method": "kernel", "kernel": library["kernel"].path, "initrd": own_initrd.path},
    )
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert wait_for(lambda: Job.objects.get(pk=job).is_finished, timeout=120)
    assert Job.objects.get(pk=job).state == "succeeded", Job.objects.get(pk=job).log
    [domain] = [d for d in hypervisor.list_domains(LOCAL_URI) if d.name == name]
    assert domain.state == "shutoff"
