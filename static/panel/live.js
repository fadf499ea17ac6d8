// Live updates over websockets: job progress bars and host/VM state badges.
(function () {
  "use strict";
  function wsUrl(path) {
    var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + window.location.host + path;
  }
  // The socket opens again after a drop until stop() is called (its element left the page).
  function connect(path, onMessage) {
    var delay = 1000;
    var ws = null;
    var retry = null;
    var stopped = false;
    function open() {
      if (stopped) return;
      ws = new WebSocket(wsUrl(path));
      ws.onmessage = function (e) { onMessage(JSON.parse(e.data)); };
      ws.onopen = function () { delay = 1000; };
      ws.onclose = function (e) {
        if (stopped || e.code === 4400 || e.code === 4401 || e.code === 4404) return;
        retry = setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
    return {
      stop: function () {
        stopped = true;
        clearTimeout(retry);
        if (ws) ws.close();
      }
    };
  }
  // A page that refreshes itself must not throw away what the user is typing: once any
  // form field on it was touched, it offers the reload instead of doing it.
  // Nor may it undo where the user is going: once a link is followed or a form sent,
  // a reload would cancel that navigation and keep the user here.
  var formTouched = false;
  var leaving = false;
  document.addEventListener("input", function (e) {
    if (e.target.closest && e.target.closest("form")) formTouched = true;
  }, true);
  window.addEventListener("beforeunload", function () { leaving = true; });
  window.addEventListener("pageshow", function () { leaving = false; });
  function refreshPage() {
    if (leaving) return;
    if (!formTouched) {
      window.location.reload();
      return;
    }
    if (document.querySelector("[data-stale-notice]")) return;
    var notice = document.createElement("div");
    notice.className = "alert alert-info py-2";
    notice.setAttribute("data-stale-notice", "");
    notice.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "Reload";
    notice.append("This page has newer information. ", link, " to see it (unsaved form input is lost).");
    var main = document.querySelector("main") || document.body;
    main.insertBefore(notice, main.firstChild);
  }
  // What templates may not write inline under the Content-Security-Policy: sizes from
  // data-width / data-indent, confirmations, select-all boxes and self-submitting selects.
  function applyLayout(root) {
    root.querySelectorAll("[data-width]").forEach(function (el) { el.style.width = el.dataset.width + "%"; });
    root.querySelectorAll("[data-indent]").forEach(function (el) { el.style.paddingLeft = el.dataset.indent + "em"; });
  }
  applyLayout(document);
  document.addEventListener("htmx:load", function (e) { applyLayout(e.detail.elt.parentNode || e.detail.elt); });
  // A form's data-confirm asks before any of its buttons submits it; a button's own
  // data-confirm asks before that button does (a bulk form's Force off, not its Start).
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var ask = (e.submitter && e.submitter.dataset.confirm) || (form.dataset && form.dataset.confirm);
    if (ask && !window.confirm(ask)) e.preventDefault();
  }, true);
  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
    if (el.dataset.selectAll) {
      document.querySelectorAll('input[name="' + el.dataset.selectAll + '"]').forEach(function (c) { c.checked = el.checked; });
    }
  });
  function setState(el, state) {
    if (!el) return;
    el.textContent = state;
    el.className = el.className.replace(/\bstate-\S+/g, "").trim() + " state-" + state;
  }
  // Job cards and rows follow their job, those of the page and those htmx brings in later
  // (the task panel's); a card htmx takes away closes its socket.
  var sockets = new WeakMap();
  function watchJobs(root) {
    if (root.matches && root.matches("[data-job-ws]")) watchJob(root);
    root.querySelectorAll("[data-job-ws]").forEach(watchJob);
  }
  watchJobs(document);
  document.addEventListener("htmx:load", function (e) { watchJobs(e.detail.elt); });
  document.addEventListener("htmx:beforeCleanupElement", function (e) {
    var socket = sockets.get(e.target);
    if (socket) {
      socket.stop();
      sockets.delete(e.target);
    }
  });
  function watchJob(card) {
    if (sockets.has(card)) return;
    var bar = card.querySelector("[data-job-progress] .progress-bar");
    var wrap = card.querySelector("[data-job-progress]");
    sockets.set(card, connect(card.dataset.jobWs, function (msg) {
      if (msg.type !== "job.update") return;
      var job = msg.job;
      bar.style.width = job.progress + "%";
      bar.textContent = job.progress + " %";
      wrap.setAttribute("aria-valuenow", job.progress);
      var done = ["succeeded", "failed", "cancelled"].indexOf(job.state) >= 0;
      bar.classList.toggle("progress-bar-animated", !done);
      bar.classList.toggle("progress-bar-striped", !done);
      bar.classList.toggle("bg-danger", job.state === "failed");
      setState(card.querySelector("[data-job-state]"), job.state);
      var message = card.querySelector("[data-job-message]");
      if (message) message.textContent = job.message;
      var log = card.querySelector("[data-job-log]");
      if (log) log.textContent = job.log;
      card.dispatchEvent(new CustomEvent("job:update", { detail: job, bubbles: true }));
      // A finished job has nothing to cancel; what it deleted has no page to go back to.
      if (done) {
        document.querySelectorAll('[data-job-cancel="' + job.id + '"]').forEach(function (f) { f.remove(); });
      }
      if (job.state === "succeeded") {
        document.querySelectorAll('[data-job-succeeded="' + job.id + '"]').forEach(function (a) { a.classList.remove("d-none"); });
      }
      if (job.state === "succeeded" && card.dataset.gotoOnSuccess) {
        var target = card.dataset.gotoOnSuccess;
        delete card.dataset.gotoOnSuccess;
        setTimeout(function () { window.location.assign(target); }, 1500);
      }
      if (done && card.hasAttribute("data-reload-on-done")) {
        card.removeAttribute("data-reload-on-done");
        setTimeout(refreshPage, 1500);
      }
    }));
  }
  // A VM's tags as badges, each a link to the VMs having it (the box's data-vm-tags: what
  // it says when there are none).
  function showTags(box, tags) {
    if (!tags) return;
    box.replaceChildren();
    tags.forEach(function (tag) {
      var a = document.createElement("a");
      a.className = "badge rounded-pill bg-secondary-subtle text-secondary-emphasis text-decoration-none";
      a.href = "/vms/?tag=" + encodeURIComponent(tag);
      a.title = "VMs tagged " + tag;
      a.textContent = tag;
      box.append(a, " ");
    });
    if (!tags.length) box.textContent = box.dataset.vmTags;
  }
  function vmChanged(vm) {
    document.querySelectorAll('[data-vm="' + vm.id + '"]').forEach(function (el) {
      el.querySelectorAll("[data-vm-state]").forEach(function (badge) { setState(badge, vm.state); });
      el.querySelectorAll("[data-vm-state-text]").forEach(function (t) { t.textContent = vm.state_display || vm.state; });
      el.querySelectorAll("[data-vm-host]").forEach(function (h) {
        // After a migration the VM is shown on its new host.
        if (!vm.host_name) return;
        h.textContent = vm.host_name;
        if (h.tagName === "A") h.setAttribute("href", "/hosts/" + vm.host + "/");
      });
      el.querySelectorAll("[data-vm-tags]").forEach(function (box) { showTags(box, vm.tags); });
      var ips = el.querySelector("[data-vm-ips]");
      if (ips && vm.ips) ips.textContent = vm.ips.map(function (i) { return i.address; }).join(", ");
    });
    document.querySelectorAll('[data-vm-buttons="' + vm.id + '"] button[data-states]').forEach(function (b) {
      if (b.hasAttribute("data-needs-saved") && "saved" in vm) b.toggleAttribute("data-saved", vm.saved);
      var ok = b.hasAttribute("data-allowed") && b.dataset.states.split(" ").indexOf(vm.state) >= 0;
      // Restore needs a saved state as well (the VM's details say whether it has one).
      if (b.hasAttribute("data-needs-saved") && !b.hasAttribute("data-saved")) ok = false;
      b.disabled = !ok;
    });
    document.dispatchEvent(new CustomEvent("vm:update", { detail: vm }));
  }
  document.querySelectorAll("[data-host-ws]").forEach(function (el) {
    connect(el.dataset.hostWs, function (msg) {
      if (msg.type === "host.update") {
        setState(el.querySelector("[data-host-state]"), msg.host.state);
      } else if (msg.type === "vm.update") {
        vmChanged(msg.vm);
      } else if (msg.type === "stats.update") {
        document.dispatchEvent(new CustomEvent("stats:update", { detail: msg }));
      }
    });
  });
  // A host's branch of the sidebar's tree follows its VMs' state (and only that: the
  // host's graphs have their own socket on its page).
  function followTree(root) {
    root.querySelectorAll("[data-tree-ws]").forEach(function (el) {
      if (el.dataset.following) return;
      el.dataset.following = "1";
      connect(el.dataset.treeWs, function (msg) {
        if (msg.type === "vm.update") vmChanged(msg.vm);
      });
    });
  }
  document.addEventListener("htmx:load", function (e) { followTree(e.detail.elt.parentNode || e.detail.elt); });
  // The VM list's rows: one socket for the rows shown, replaced when a search as you type
  // shows others.
  var rowsFeed = null;
  function followRows(root) {
    if (rowsFeed) rowsFeed.stop();
    rowsFeed = null;
    var el = root.querySelector("[data-vms-ws]");
    if (!el) return;
    rowsFeed = connect(el.dataset.vmsWs, function (msg) {
      if (msg.type === "vm.update") vmChanged(msg.vm);
    });
  }
  followRows(document);
  document.addEventListener("htmx:afterSettle", function (e) {
    var results = document.getElementById("vm-results");
    if (results && (e.target === results || e.target.contains(results) || results.contains(e.target))) followRows(results);
  });
  document.querySelectorAll("[data-vm-ws]").forEach(function (el) {
    connect(el.dataset.vmWs, function (msg) {
      if (msg.type === "stats.update") document.dispatchEvent(new CustomEvent("stats:update", { detail: msg }));
      if (msg.type !== "vm.update") return;
      vmChanged(msg.vm);
      // Fresh details (addresses, agent, disks) were read from the host: show them.
      if (msg.vm.details_at && msg.vm.details_at !== el.dataset.detailsAt) {
        el.dataset.detailsAt = msg.vm.details_at;
        refreshPage();
      }
    });
  });
})();
