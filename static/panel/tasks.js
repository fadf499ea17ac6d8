// The task panel at the foot of the page: open or closed as the user left it (kept in
// this browser, so the next page shows it the same). The page brings only its bar and the
// signature of its rows (data-seen); the rows come from GET /jobs/panel/ once the panel is
// open, and are asked for again while the page is in view (every 5 s while open, 10 s
// while closed), soon after a job in it ends and after the page sends an action. The
// server answers 204 while the rows are those the page has. Running jobs' state and
// progress come live over their websockets (live.js watches each row with data-job-ws).
(function () {
  "use strict";
  var KEY = "panel-task-panel";
  var OPEN_EVERY = 5000;
  var CLOSED_EVERY = 10000;
  var DONE = ["succeeded", "failed", "cancelled"];
  var panel = document.querySelector("[data-task-panel]");
  if (!panel) return;
  var toggle = panel.querySelector("[data-task-toggle]");
  var rows = panel.querySelector("[data-task-rows]");
  var summary = panel.querySelector("[data-task-summary]");

  function storedOpen() {
    try { return window.localStorage.getItem(KEY) === "open"; } catch (e) { return false; }
  }
  function show(open) {
    panel.classList.toggle("task-panel-open", open);
    rows.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }
  // At once, before the page is first drawn: no closed panel that then opens.
  show(storedOpen());

  var timer = null;
  var last = Date.now();
  var busy = false;
  var stopped = false;
  function every() { return rows.hidden ? CLOSED_EVERY : OPEN_EVERY; }
  function schedule(ms) {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(refresh, ms);
  }
  function list() { return rows.querySelector("[data-task-list]"); }
  function refresh() {
    if (document.visibilityState !== "visible" || busy || stopped) return;
    busy = true;
    last = Date.now();
    var current = list();
    // An open panel without its rows yet asks for them whatever they are.
    var seen = !current || (!rows.hidden && current.hasAttribute("data-unloaded")) ? "" : current.dataset.seen;
    var url = panel.dataset.url + "?seen=" + encodeURIComponent(seen);
    function done() {
      busy = false;
      var now = list();
      // Opened while a closed panel's question was under way: ask for its rows at once
      // (but not again at once when that was the question and it went unanswered).
      var wanting = !rows.hidden && now && now.hasAttribute("data-unloaded");
      schedule(wanting && seen !== "" ? 0 : every());
    }
    window.htmx.ajax("GET", url, { target: rows, swap: "innerHTML" }).then(done, done);
  }
  function countRunning() {
    var current = list();
    var running = current ? parseInt(current.dataset.running, 10) || 0 : 0;
    summary.textContent = running ? "Tasks: " + running + " running" : "Tasks";
  }

  toggle.addEventListener("click", function () {
    var open = rows.hidden;
    show(open);
    try { window.localStorage.setItem(KEY, open ? "open" : "closed"); } catch (e) { /* storage off */ }
    var current = list();
    if (open && (Date.now() - last > OPEN_EVERY || (current && current.hasAttribute("data-unloaded")))) refresh();
    else schedule(every());
  });
  // Only the panel's own answer goes in: a session that ended answers with the login
  // page (after a redirect), which stops the asking instead.
  rows.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.target !== rows) return;
    var path = new URL(e.detail.xhr.responseURL || panel.dataset.url, window.location.href).pathname;
    if (path !== panel.dataset.url) {
      e.detail.shouldSwap = false;
      stopped = true;
    }
  });
  rows.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target === rows) countRunning();
  });
  // A job of the panel ended: its row moves down among the finished ones.
  panel.addEventListener("job:update", function (e) {
    if (DONE.indexOf(e.detail.state) >= 0) schedule(500);
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var verb = e.detail.requestConfig && e.detail.requestConfig.verb;
    if (verb && verb !== "get") schedule(500);
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") {
      clearTimeout(timer);
      return;
    }
    schedule(Math.max(0, every() - (Date.now() - last)));
  });
  // Back to this page from the browser's history: it may have been a while.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) schedule(0);
  });
  document.addEventListener("DOMContentLoaded", function () { schedule(rows.hidden ? CLOSED_EVERY : 0); });
})();
