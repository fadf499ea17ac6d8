"""The VM and host pages carry the usage card, pointed at their stats API."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from lxml import html

from monitoring.collector import Collector
from monitoring.series import HOST_FIELDS, VM_FIELDS
from tests.vms.conftest import virsh
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt]


def card(response):
    doc = html.fromstring(response.content.decode())
    return doc.xpath("//*[@data-stats-graphs]")


def test_it_puts_the_usage_card_on_the_vm_and_host_pages(client_for, make_vm, local_host):
    vm = make_vm()
    [vm_card] = card(client_for("viewer").get(f"/vms/{vm.pk}/"))
    assert vm_card.get("data-url") == f"/api/v1/vms/{vm.pk}/stats/"
    assert vm_card.get("data-kind") == "vm"
    [host_card] = card(client_for("admin").get(f"/hosts/{local_host.pk}/"))
    assert host_card.get("data-url") == f"/api/v1/hosts/{local_host.pk}/stats/"
    assert [b.get("data-range") for b in host_card.xpath(".//button")] == ["1h", "1d", "30d"]


def test_it_shows_the_tuning_tab_over_the_host_cpus_and_pins_from_it(client_for, make_vm):
    vm = make_vm(vcpus=2)
    page = client_for("member").get(f"/vms/{vm.pk}/tuning/")
    assert page.status_code == 200
    doc = html.fromstring(page.content.decode())
    boxes = doc.xpath("//tr[@data-vcpu='0']//input[@type='checkbox']")
    assert [b.get("value") for b in boxes] == [str(i) for i in range(os.cpu_count())]
    # Pin vCPU 1 to CPU 0 (persistent: the VM is off); vCPU 0 left on any CPU.
    response = client_for("member").post(
        f"/vms/{vm.pk}/tuning/vcpupin/", {"vcpu_rows": "2", "pin-1": ["0"], "persistent": "on"}
    )
    assert response.status_code == 302
    assert "<vcpupin vcpu='1' cpuset='0'/>" in virsh("dumpxml", "--inactive", vm.name)
    # A viewer sees the tab, greyed out, and may not post.
    viewer = client_for("viewer").get(f"/vms/{vm.pk}/tuning/")
    assert b"lets you look at this VM's tuning, not change it" in viewer.content
    assert (
        client_for("viewer").post(f"/vms/{vm.pk}/tuning/vcpus/", {"vcpus": "1"}).status_code == 403
    )


def test_it_shows_the_host_tuning_facts_the_collector_read(client_for, local_host, store):
    page = client_for("admin").get(f"/hosts/{local_host.pk}/")
    assert b"Not read yet: the stats collector" in page.content
    Collector(step=5, store=store).read_host_info([local_host])
    doc = html.fromstring(client_for("admin").get(f"/hosts/{local_host.pk}/").content.decode())
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    mode = thp[thp.index("[") + 1 : thp.index("]")]
    assert doc.xpath("string(//*[@data-thp])").strip() == mode
    ksm_run = Path("/sys/kernel/mm/ksm/run").read_text().strip()
    assert doc.xpath("string(//*[@data-ksm])").startswith(
        {"0": "stopped", "1": "running", "2": "stopped, pages unmerged"}[ksm_run]
    )
    tuned = doc.xpath("string(//*[@data-tuned])").strip()
    if shutil.which("tuned-adm") is None:  # as on these Debian machines
        assert tuned == "tuned-adm is not installed"
    else:
        active = subprocess.run(["tuned-adm", "active"], capture_output=True, text=True).stdout
        assert tuned and tuned in active


def test_it_shows_current_cpu_and_memory_in_the_vm_list(client_for, make_vm, store):
    busy, idle = make_vm(), make_vm()
    sample = {**dict.fromkeys(VM_FIELDS, 0), "cpu": 42.5, "mem_used": 64 * 2**20}
    store.write([("vm", str(busy.pk), time.time(), {**sample, "mem_balloon": 96 * 2**20})])
    doc = html.fromstring(client_for("member").get("/vms/").content.decode())
    cells = {
        row.get("data-vm"): row.xpath("string(.//td[@data-vm-usage])").strip()
        for row in doc.xpath("//tr[@data-vm]")
    }
    assert cells[str(busy.pk)] == "42.5 % · 64.0 MiB / 96.0 MiB"
    assert cells[str(idle.pk)] == "—"


def test_it_shows_the_busiest_vms_and_hosts_each_user_may_see(
    client_for, api_for, make_vm, local_host, people, store
):
    mine, theirs = make_vm(), make_vm()
    VirtualMachine.objects.filter(pk=theirs.pk).update(project=people.beta)
    now = time.time()
    zero = dict.fromkeys(VM_FIELDS, 0)
    store.write(
        [
            ("vm", str(mine.pk), now, {**zero, "cpu": 20.0}),
            ("vm", str(theirs.pk), now, {**zero, "cpu": 90.0}),
            ("host", str(local_host.pk), now, {**dict.fromkeys(HOST_FIELDS, 0), "cpu": 7.5}),
        ]
    )
    member = html.fromstring(client_for("member").get("/").content.decode())
    assert [a.text for a in member.xpath("//*[@data-busiest-vms]//a")] == [mine.name]
    assert [a.text for a in member.xpath("//*[@data-busiest-hosts]//a")] == ["local"]
    assert not member.xpath("//*[@data-stats-graphs]")
    admin = html.fromstring(client_for("admin").get("/").content.decode())
    assert [a.text for a in admin.xpath("//*[@data-busiest-vms]//a")] == [theirs.name, mine.name]
    assert admin.xpath("//*[@data-stats-graphs]/@data-url") == ["/api/v1/stats/fleet/"]
    assert api_for("member").get("/api/v1/stats/fleet/").status_code == 403
    assert api_for("admin").get("/api/v1/stats/fleet/", {"range": "1h"}).status_code == 200


def test_it_sets_numa_and_refuses_missing_cells_from_the_tuning_tab(client_for, make_vm):
    vm = make_vm()
    client = client_for("member")
    url = f"/vms/{vm.pk}/tuning/numatune/"
    client.post(url, {"mode": "preferred", "nodeset": "0", "persistent": "on"})
    assert "<memory mode='preferred' nodeset='0'/>" in virsh("dumpxml", "--inactive", vm.name)
    page = client.post(url, {"mode": "strict", "nodeset": "9", "persistent": "on"}, follow=True)
    assert b"has no NUMA cell 9" in page.content
    assert "<memory mode='preferred' nodeset='0'/>" in virsh("dumpxml", "--inactive", vm.name)
