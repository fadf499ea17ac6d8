// Usage graphs of a VM or host: history from the stats API, then live samples pushed
// over the page's websocket (live.js re-dispatches them as "stats:update" events).
(function () {
  "use strict";
  var GIB = 1024 * 1024 * 1024;
  function bytes(v) {
    if (v == null) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : Math.round(v)) + " " + units[i];
  }
  function rate(v) { return v == null ? "–" : bytes(v) + "/s"; }
  function pct(v) { return v == null ? "–" : v.toFixed(1) + " %"; }
  function ops(v) { return v == null ? "–" : v.toFixed(1) + "/s"; }
  var CHARTS = {
    cpu: { fields: ["cpu"], labels: ["CPU"], fmt: pct, range: [0, 100] },
    mem: {
      fields: { vm: ["mem_used", "mem_balloon"], host: ["mem_used", "mem_total"], fleet: ["mem_used", "mem_total"] },
      labels: { vm: ["used", "balloon (current)"], host: ["used", "total"], fleet: ["used", "total"] },
      fmt: bytes,
    },
    disk: { fields: ["disk_rd", "disk_wr"], labels: ["read", "write"], fmt: rate },
    iops: { fields: ["disk_rd_iops", "disk_wr_iops"], labels: ["read", "write"], fmt: ops },
    net: { fields: ["net_rx", "net_tx"], labels: ["received", "sent"], fmt: rate },
  };
  var COLORS = ["#0d6efd", "#dc3545", "#198754"];
  var SPANS = { "1h": 3600, "1d": 86400, "30d": 30 * 86400 };

  function setup(card) {
    var kind = card.dataset.kind, id = card.dataset.id, url = card.dataset.url;
    var note = card.querySelector("[data-stats-note]");
    var range = "1h", step = 5, fetchedAt = 0, columns = null, plots = {};

    function fieldsOf(name) {
      var f = CHARTS[name].fields;
      return Array.isArray(f) ? f : f[kind];
    }
    function labelsOf(name) {
      var l = CHARTS[name].labels;
      return Array.isArray(l) ? l : l[kind];
    }
    function dataOf(name) {
      return [columns.t].concat(fieldsOf(name).map(function (f) { return columns[f]; }));
    }
    function draw() {
      Object.keys(CHARTS).forEach(function (name) {
        var el = card.querySelector('[data-chart="' + name + '"]');
        if (!el) return;
        var chart = CHARTS[name];
        if (plots[name]) { plots[name].setData(dataOf(name)); return; }
        var series = [{}].concat(labelsOf(name).map(function (label, i) {
          return {
            label: label, stroke: COLORS[i], width: 1.5,
            fill: i === 0 ? "rgba(13,110,253,0.08)" : undefined,
            value: function (u, v) { return chart.fmt(v); },
          };
        }));
        var opts = {
          width: Math.max(el.clientWidth, 250), height: 160, series: series,
          scales: { y: chart.range ? { range: chart.range } : { range: function (u, min, max) { return [0, Math.max(max, 1)]; } } },
          axes: [{}, { size: 70, values: function (u, vals) { return vals.map(chart.fmt); } }],
          legend: { live: true },
        };
        plots[name] = new uPlot(opts, dataOf(name), el);
      });
      card.dataset.points = columns.t.length;
      card.dataset.range = range;
    }
    function showNow(sample) {
      var cpu = card.querySelector('[data-now="cpu"]');
      var mem = card.querySelector('[data-now="mem"]');
      if (cpu) cpu.textContent = sample ? pct(sample.cpu) : "";
      if (mem) mem.textContent = sample ? bytes(sample.mem_used) + " of " + bytes(kind === "vm" ? sample.mem_balloon : sample.mem_total) : "";
    }
    function load(newRange) {
      range = newRange;
      fetch(url + "?range=" + range, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (body) {
          // Rows [t, v1, ...] in the order of "fields", turned into uPlot's columns.
          var h = body.history; step = h.step; fetchedAt = Date.now() / 1000;
          columns = {};
          h.fields.forEach(function (f, i) { columns[f] = h.points.map(function (p) { return p[i]; }); });
          showNow(body.latest);
          note.textContent = columns.t.length ? "" : (kind === "vm"
            ? "No samples in this range yet: the VM is not running, or the collector has not read it yet."
            : kind === "host" ? "No samples in this range yet: the collector has not read this host yet."
            : "No samples in this range yet: no host has reported to the collector yet.");
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
      showNow(sample);
      if (range !== "1h") {
        // Coarser ranges hold averages: fetch them again once a new bucket can exist.
        if (sample.t - fetchedAt >= step) load(range);
        return;
      }
      var start = sample.t - SPANS[range];
      Object.keys(columns).forEach(function (f) {
        columns[f].push(f === "t" ? sample.t : sample[f]);
      });
      while (columns.t.length && columns.t[0] < start) {
        Object.keys(columns).forEach(function (f) { columns[f].shift(); });
      }
      note.hidden = true;
      draw();
    }
    card.querySelectorAll("[data-range]").forEach(function (b) {
      b.addEventListener("click", function () {
        card.querySelectorAll("[data-range]").forEach(function (o) { o.classList.toggle("active", o === b); });
        load(b.dataset.range);
      });
    });
    document.addEventListener("stats:update", function (e) { push(e.detail); });
    window.addEventListener("resize", function () {
      Object.keys(plots).forEach(function (name) {
        var el = card.querySelector('[data-chart="' + name + '"]');
        plots[name].setSize({ width: Math.max(el.clientWidth, 250), height: 160 });
      });
    });
    load(range);
  }
  document.querySelectorAll("[data-stats-graphs]").forEach(setup);
})();
