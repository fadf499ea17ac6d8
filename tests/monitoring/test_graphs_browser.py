"""In headless Chromium: the VM page's usage graph draws its history and grows with each
sample the collector process (manage.py collect_stats) pushes over the page's websocket."""

from __future__ import annotations

import contextlib
import sys

import pytest
from django.test import Client

from panel import hypervisor
from tests.conftest import LOCAL_URI
from tests.stack import spawn, stop_process

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.libvirt,
    pytest.mark.timeout(180),
]

# Pixels of the first series' colour (#0d6efd) on a chart's canvas: the line was drawn.
BLUE_PIXELS = """el => {
  const c = el.querySelector("canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - 13) < 40 && Math.abs(d[i + 1] - 110) < 40 && d[i + 2] > 200 && d[i + 3] > 200) n++;
  return n;
}"""


@pytest.fixture
def collector(transactional_db, stack, store, tmp_path):
    # After `store`: stopped before the store's keys are wiped.
    proc = spawn(
        [sys.executable, "manage.py", "collect_stats", "--interval", "1"],
        tmp_path / "collector.log",
    )
    yield proc
    stop_process(proc)


def test_it_draws_the_vm_graph_and_updates_it_live(page, stack, collector, make_vm, people, store):
    vm = make_vm(running=True)
    try:
        client = Client()
        client.force_login(people["member"])
        page.context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": stack.url}]
        )
        # Let the collector read the guest twice (a rate needs two readings), then open it.
        page.wait_for_timeout(2500)
        page.goto(f"{stack.url}/vms/{vm.pk}/")
        card = page.locator("[data-stats-graphs]")
        page.wait_for_function(
            "() => +document.querySelector('[data-stats-graphs]').dataset.points > 0"
        )
        cpu = card.locator('[data-chart="cpu"]')
        first = int(card.get_attribute("data-points"))
        # The collector pushes a sample a second: the chart grows without a reload.
        page.wait_for_function(
            f"() => +document.querySelector('[data-stats-graphs]').dataset.points >= {first + 2}",
            timeout=10_000,
        )
        assert cpu.evaluate(BLUE_PIXELS) > 20
        assert "%" in card.locator('[data-now="cpu"]').inner_text()
        page.get_by_role("button", name="Day").click()
        page.wait_for_function(
            "() => document.querySelector('[data-stats-graphs]').dataset.range === '1d'"
        )
        assert card.locator("canvas").count() == 5
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))
