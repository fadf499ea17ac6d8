// Usage graphs of a VM or host: history from the stats API, then live samples pushed
// over the page's websocket (live.js re-dispatches them as "stats:update" events).
(function () {
  "use strict";
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  // Formatters take the decimals to show; axis labels ask for as few as keep them apart.
  function bytes(v, digits) {
    if (v == null) return "–";
    var i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(digits == null ? 1 : digits) : Math.round(v)) + " " + UNITS[i];
  }
  function rate(v, digits) { return v == null ? "–" : bytes(v, digits) + "/s"; }
  function pct(v, digits) { return v == null ? "–" : v.toFixed(digits == null ? 1 : digits) + " %"; }
  function ops(v, digits) { return v == null ? "–" : v.toFixed(digits == null ? 1 : digits) + "/s"; }

  // Tick steps of a byte axis: whole bytes, then 1-2-5 steps of KiB, MiB, ... so that
  // ticks fall on round binary sizes and an idle graph's axis is not 0, 0.2, 0.4 bytes.
  var BYTE_INCRS = [];
  UNITS.forEach(function (unit, i) {
    [1, 2, 5, 10, 20, 50, 100, 200, 500].forEach(function (m) { BYTE_INCRS.push(m * Math.pow(1024, i)); });
  });
  var MINUTE = 60, HOUR = 3600, DAY = 86400;
  var TIME_INCRS = [1, 2, 5, 10, 15, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
    HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY];
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

  var CHARTS = {
    cpu: { fields: ["cpu"], labels: ["CPU"], fmt: pct, range: [0, 100] },
    mem: {
      fields: { vm: ["mem_used", "mem_balloon"], host: ["mem_used", "mem_total"], fleet: ["mem_used", "mem_total"] },
      labels: { vm: ["used", "balloon (current)"], host: ["used", "total"], fleet: ["used", "total"] },
      fmt: bytes, incrs: BYTE_INCRS,
    },
    disk: { fields: ["disk_rd", "disk_wr"], labels: ["read", "write"], fmt: rate, incrs: BYTE_INCRS },
    iops: { fields: ["disk_rd_iops", "disk_wr_iops"], labels: ["read", "write"], fmt: ops },
    net: { fields: ["net_rx", "net_tx"], labels: ["received", "sent"], fmt: rate, incrs: BYTE_INCRS },
  };
  var SPANS = { "1h": 3600, "1d": 86400, "30d": 30 * 86400 };

  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function clock(t, seconds) {
    var d = new Date(t * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + (seconds ? ":" + pad(d.getSeconds()) : "");
  }
  function day(t) { var d = new Date(t * 1000); return d.getDate() + " " + MONTHS[d.getMonth()]; }
  function stamp(t) { return t == null ? "–" : day(t) + " " + clock(t, true); }

  // Time labels on one line each (uPlot's own put the date under the first, wider than
  // the room between ticks): seconds when ticks are seconds apart, the date at midnight.
  function timeLabels(u, splits, axisIdx, space, incr) {
    return splits.map(function (t) {
      if (incr >= DAY) return day(t);
      var d = new Date(t * 1000);
      if (incr >= MINUTE && d.getHours() === 0 && d.getMinutes() === 0) return day(t);
      return clock(t, incr < MINUTE);
    });
  }
  // Axis labels with as few decimals as keep them distinct.
  function tickLabels(fmt, values) {
    var labels = [];
    for (var digits = 0; digits <= 3; digits++) {
      labels = values.map(function (v) { return fmt(v, digits); });
      if (new Set(labels).size === labels.length) break;
    }
    return labels;
  }
  var measurer = document.createElement("canvas").getContext("2d");
  function textWidth(text) {
    measurer.font = AXIS_FONT;
    return measurer.measureText(text).width;
  }
  // Room between time ticks: the widest label and a gap, so that neighbours never touch.
  var TIME_SPACE = Math.ceil(textWidth("00:00:00")) + 24;
  // Width of a value axis: its widest label, the gap and the tick.
  function axisSize(u, values) {
    var widest = 0;
    (values || []).forEach(function (v) { widest = Math.max(widest, textWidth(String(v))); });
    return Math.max(60, Math.ceil(widest) + 20);
  }
  // The value under the cursor, or the latest one while the cursor is off the plot.
  function shown(u, v, seriesIdx, idx) {
    if (idx != null) return v;
    var column = u.data[seriesIdx] || [];
    for (var i = column.length - 1; i >= 0; i--) if (column[i] != null) return column[i];
    return null;
  }

  // Colours from Bootstrap's variables: readable in its light and dark themes alike.
  function themeColors() {
    var css = getComputedStyle(document.documentElement);
    function v(name, fallback) { return css.getPropertyValue(name).trim() || fallback; }
    return {
      text: v("--bs-body-color", "#212529"),
      background: v("--bs-body-bg", "#fff"),
      grid: v("--bs-border-color", "#dee2e6"),
      series: [v("--bs-primary", "#0d6efd"), v("--bs-danger", "#dc3545"), v("--bs-success", "#198754")],
      fill: "rgba(" + v("--bs-primary-rgb", "13, 110, 253") + ", 0.08)",
    };
  }

  function plotOptions(chart, labels, width, theme) {
    var series = [{ value: function (u, t, si, idx) { return stamp(shown(u, t, si, idx)); } }];
    labels.forEach(function (label, i) {
      series.push({
        label: label, stroke: theme.series[i], width: 1.5,
        fill: i === 0 ? theme.fill : undefined, points: { fill: theme.background },
        value: function (u, v, si, idx) { return chart.fmt(shown(u, v, si, idx)); },
      });
    });
    function lines() { return { stroke: theme.grid, width: 1 }; }
    var y = {
      stroke: theme.text, font: AXIS_FONT, grid: lines(), ticks: lines(), size: axisSize,
      values: function (u, vals) { return tickLabels(chart.fmt, vals); },
    };
    if (chart.incrs) y.incrs = chart.incrs;
    return {
      width: width, height: 160, series: series,
      scales: { y: chart.range ? { range: chart.range } : { range: function (u, min, max) { return [0, Math.max(max, 1)]; } } },
      axes: [
        { stroke: theme.text, font: AXIS_FONT, grid: lines(), ticks: lines(), space: TIME_SPACE, incrs: TIME_INCRS, values: timeLabels },
        y,
      ],
      legend: { live: true },
    };
  }

  var EMPTY = {
    vm: "No samples in this range yet: the VM is not running, or the collector has not read it yet.",
    host: "No samples in this range yet: the collector has not read this host yet.",
    fleet: "No samples in this range yet: no host has reported to the collector yet.",
  };
  // A chart's fields or labels: the same for all kinds, or its own for each.
  function pick(value, kind) { return Array.isArray(value) ? value : value[kind]; }
  function dataOf(columns, name, kind) {
    return [columns.t].concat(pick(CHARTS[name].fields, kind).map(function (f) { return columns[f]; }));
  }
  function widthOf(el) { return Math.max(el.clientWidth, 250); }
  // Rows [t, v1, ...] in the order of "fields", turned into uPlot's columns.
  function columnsOf(history) {
    var columns = {};
    history.fields.forEach(function (f, i) { columns[f] = history.points.map(function (p) { return p[i]; }); });
    return columns;
  }
  // A pushed sample appended, and the samples older than the range's start dropped.
  function append(columns, sample, start) {
    Object.keys(columns).forEach(function (f) { columns[f].push(f === "t" ? sample.t : sample[f]); });
    while (columns.t.length && columns.t[0] < start) {
      Object.keys(columns).forEach(function (f) { columns[f].shift(); });
    }
  }
  function showNow(card, kind, sample) {
    var cpu = card.querySelector('[data-now="cpu"]');
    var mem = card.querySelector('[data-now="mem"]');
    if (cpu) cpu.textContent = sample ? pct(sample.cpu) : "";
    if (mem) mem.textContent = sample ? bytes(sample.mem_used) + " of " + bytes(kind === "vm" ? sample.mem_balloon : sample.mem_total) : "";
  }
  function bindControls(card, plots, load) {
    card.querySelectorAll("[data-range]").forEach(function (b) {
      b.addEventListener("click", function () {
        card.querySelectorAll("[data-range]").forEach(function (o) { o.classList.toggle("active", o === b); });
        load(b.dataset.range);
      });
    });
    window.addEventListener("resize", function () {
      Object.keys(plots).forEach(function (name) {
        plots[name].setSize({ width: widthOf(card.querySelector('[data-chart="' + name + '"]')), height: 160 });
      });
    });
  }

  function setup(card) {
    var kind = card.dataset.kind, id = card.dataset.id, url = card.dataset.url;
    var note = card.querySelector("[data-stats-note]");
    var range = "1h", step = 5, fetchedAt = 0, columns = null, plots = {};
    function draw() {
      var theme = null;
      Object.keys(CHARTS).forEach(function (name) {
        var el = card.querySelector('[data-chart="' + name + '"]');
        if (!el) return;
        var data = dataOf(columns, name, kind);
        if (plots[name]) { plots[name].setData(data); return; }
        theme = theme || themeColors();
        var chart = CHARTS[name];
        plots[name] = new uPlot(plotOptions(chart, pick(chart.labels, kind), widthOf(el), theme), data, el);
      });
      card.dataset.points = columns.t.length;
      card.dataset.range = range;
    }
    // Bootstrap's theme changed: draw the plots again in its colours.
    function redraw() {
      if (!columns) return;
      Object.keys(plots).forEach(function (name) { plots[name].destroy(); delete plots[name]; });
      draw();
    }
    function load(newRange) {
      range = newRange;
      fetch(url + "?range=" + range, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (body) {
          step = body.history.step; fetchedAt = Date.now() / 1000;
          columns = columnsOf(body.history);
          showNow(card, kind, body.latest);
          note.textContent = columns.t.length ? "" : EMPTY[kind];
          note.hidden = !!columns.t.length;
          draw();
        })
        .catch(function (e) { note.hidden = false; note.textContent = "Could not load the usage history (" + e.message + "). Reload the page to try again."; });
    }
    function push(msg) {
      if (columns && kind === "fleet") {
        // The fleet is the hosts summed: re-read it when their samples move on.
        if (msg.kind === "host" && msg.sample.t - fetchedAt >= step) load(range);
        return;
      }
      if (!columns || msg.kind !== kind || String(msg.id) !== String(id)) return;
      var sample = msg.sample;
      showNow(card, kind, sample);
      if (range !== "1h") {
        // Coarser ranges hold averages: fetch them again once a new bucket can exist.
        if (sample.t - fetchedAt >= step) load(range);
        return;
      }
      append(columns, sample, sample.t - SPANS[range]);
      note.hidden = true; draw();
    }
    bindControls(card, plots, load);
    document.addEventListener("stats:update", function (e) { push(e.detail); });
    load(range);
    return redraw;
  }
  var redraws = Array.prototype.map.call(document.querySelectorAll("[data-stats-graphs]"), setup);
  if (redraws.length) {
    // Whatever switches the page's theme sets data-bs-theme on <html>: follow it.
    new MutationObserver(function () { redraws.forEach(function (redraw) { redraw(); }); })
      .observe(document.documentElement, { attributes: true, attributeFilter: ["data-bs-theme"] });
  }
})();
