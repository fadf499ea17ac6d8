"""The VM and host pages carry the usage card, pointed at their stats API."""

from __future__ import annotations

import pytest
from lxml import html

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
