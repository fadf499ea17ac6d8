"""In headless Chromium: the usage graphs of an idle VM and host read cleanly. Each axis
label says something of its own (a flat zero series gave "1 B/s" twice), no two labels
are drawn over each other (the first time label carried the date, wider than the room
between ticks), and the legend shows the latest values without the mouse on the plot (it
read "--"). They take Bootstrap's colours, and those of its dark theme once the page
switches to it.

The axes are drawn on a canvas: an init script records what uPlot writes there, where,
and in which colour, as a user would read it off the screen.
"""

from __future__ import annotations

import contextlib
import time
from itertools import combinations

import pytest
from django.test import Client

from monitoring.series import STORED
from panel import hypervisor
from tests.conftest import LOCAL_URI
from tests.vms.test_vm_browser import elsewhere
from vms import services as vm_services

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.libvirt,
    pytest.mark.timeout(180),
]

CHARTS = ("cpu", "mem", "disk", "iops", "net")

# Each canvas keeps its latest full drawing: the texts (with anchor, size and colour) and
# the colours of the lines.
RECORD_CANVAS = """(() => {
  const P = CanvasRenderingContext2D.prototype, fillText = P.fillText, clearRect = P.clearRect;
  const stroke = P.stroke;
  P.clearRect = function (x, y, w, h) {
    if (w >= this.canvas.width && h >= this.canvas.height) {
      this.canvas.texts = [];
      this.canvas.lines = [];
    }
    return clearRect.apply(this, arguments);
  };
  P.stroke = function () {
    (this.canvas.lines = this.canvas.lines || []).push(this.strokeStyle);
    return stroke.apply(this, arguments);
  };
  P.fillText = function (text, x, y) {
    const t = this.getTransform();
    (this.canvas.texts = this.canvas.texts || []).push({
      text: String(text), x: t.e + x, y: t.f + y, align: this.textAlign,
      baseline: this.textBaseline, width: this.measureText(text).width,
      size: parseFloat(this.font), color: this.fillStyle,
    });
    return fillText.apply(this, arguments);
  };
})();"""

CHART_TEXTS = """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(el => [
  el.dataset.chart, {
    texts: el.querySelector('canvas').texts || [],
    lines: [...new Set(el.querySelector('canvas').lines || [])],
    legend: [...el.querySelectorAll('.u-legend .u-value')].map(v => v.textContent),
  }]))"""

# A colour as a canvas states it (#rrggbb), from a CSS variable of the page.
CANVAS_COLOUR = """(name) => {
  const c = document.createElement('canvas').getContext('2d');
  c.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return c.fillStyle;
}"""

IDLE = {
    "cpu": 0.0,
    "mem_used": 60 * 2**20,
    "mem_balloon": 96 * 2**20,
    "mem_total": 8 * 2**30,
    "vms": 1,
}


def seed_idle_minute(store, kind: str, ident: str) -> None:
    """A minute of samples of an idle guest or host, as the collector writes them."""
    now = time.time()
    store.write(
        (kind, ident, now - 55 + 5 * i, {f: IDLE.get(f, 0) for f in STORED[kind]})
        for i in range(12)
    )


def open_graphs(page, stack, user, path: str) -> dict:
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": stack.url}]
    )
    page.add_init_script(RECORD_CANVAS)
    page.goto(stack.url + path)
    page.wait_for_function(
        "() => +document.querySelector('[data-stats-graphs]').dataset.points >= 12"
    )
    return page.evaluate(CHART_TEXTS)


def boxes(texts: list[dict]) -> list[tuple[str, float, float, float, float]]:
    """Each axis label as (text, left, top, right, bottom) on its canvas: the lines of a
    label that spans several (drawn one under the other at the same x) make one box."""
    labels: dict[tuple[str, float], list[dict]] = {}
    for t in texts:
        labels.setdefault((t["align"], round(t["x"], 1)), []).append(t)
    out = []
    for (align, x), lines in labels.items():
        if align == "right":  # the value axis: its lines are separate labels
            for t in lines:
                top = t["y"] - t["size"] / 2
                out.append((t["text"], x - t["width"], top, x, top + t["size"]))
            continue
        width = max(t["width"] for t in lines)
        top, bottom = min(t["y"] for t in lines), max(t["y"] + t["size"] for t in lines)
        text = " / ".join(t["text"] for t in lines)
        out.append((text, x - width / 2, top, x + width / 2, bottom))
    return out


def problems(charts: dict) -> list[str]:
    """What a reader would trip over on each chart: repeated value labels, labels drawn
    over each other, a legend without numbers."""
    found = [] if set(charts) == set(CHARTS) else [f"charts drawn: {sorted(charts)}"]
    for name, chart in charts.items():
        values = [t["text"] for t in chart["texts"] if t["align"] == "right"]
        if len(values) < 2 or len(set(values)) < len(values):
            found.append(f"{name}: the value axis reads {values}")
        for a, b in combinations(boxes(chart["texts"]), 2):
            if not (a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]):
                found.append(f"{name}: labels {a[0]!r} and {b[0]!r} overlap")
        legend = chart["legend"]
        if not legend or not all(any(c.isdigit() for c in v) for v in legend):
            found.append(f"{name}: the legend reads {legend}")
    return found


def test_an_idle_vms_graphs_read_cleanly(page, stack, transactional_db, make_vm, people, store):
    vm = make_vm(running=True)
    try:
        # Details read just now: the page does not reload itself to show fresh ones.
        vm = elsewhere(vm_services.refresh_details, vm)
        seed_idle_minute(store, "vm", str(vm.pk))
        charts = open_graphs(page, stack, people["member"], f"/vms/{vm.pk}/")
        assert not problems(charts)
        # Idle: nothing read or sent, and the legend says so in numbers, with the time
        # of the latest sample first.
        assert charts["disk"]["legend"][1:] == ["0 B/s", "0 B/s"]
        assert charts["mem"]["legend"][1:] == ["60.0 MiB", "96.0 MiB"]
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))


def test_an_idle_hosts_graphs_read_cleanly_in_either_theme(
    page, stack, transactional_db, local_host, people, store
):
    seed_idle_minute(store, "host", str(local_host.pk))
    charts = open_graphs(page, stack, people["admin"], f"/hosts/{local_host.pk}/")
    assert not problems(charts)
    light = page.evaluate(CANVAS_COLOUR, "--bs-body-color")
    assert {t["color"] for t in charts["cpu"]["texts"]} == {light}

    page.evaluate("() => document.documentElement.setAttribute('data-bs-theme', 'dark')")
    dark = page.evaluate(CANVAS_COLOUR, "--bs-body-color")
    assert dark != light
    page.wait_for_function(
        """(dark) => [...document.querySelectorAll('[data-chart] canvas')].every(c =>
             c.texts && c.texts.length && c.texts.every(t => t.color === dark))""",
        arg=dark,
    )
    charts = page.evaluate(CHART_TEXTS)
    assert not problems(charts)
    grid = page.evaluate(CANVAS_COLOUR, "--bs-border-color")
    assert all(grid in chart["lines"] for chart in charts.values())
    legend = page.locator('[data-chart="cpu"] .u-legend .u-value').first
    assert legend.evaluate("el => getComputedStyle(el).color") == page.evaluate(
        "() => getComputedStyle(document.body).color"
    )
