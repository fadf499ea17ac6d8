// Keyboard: "/" puts the cursor in the page's search box (the command palette where the
// page has none); Ctrl+K (⌘K) opens the palette, which goes to any page of the navbar or
// to a VM or host found by name as one types (the API's search, as the user sees it).
(function () {
  "use strict";
  var dialog = document.getElementById("palette");
  if (!dialog || !window.bootstrap) return;
  var input = document.getElementById("palette-input");
  var list = document.getElementById("palette-list");
  var modal = window.bootstrap.Modal.getOrCreateInstance(dialog);
  var pages = [];
  document.querySelectorAll("[data-palette-pages] a[href]:not([data-bs-toggle])").forEach(function (a) {
    pages.push({ label: a.dataset.paletteLabel || a.textContent.trim(), href: a.getAttribute("href"), kind: "page" });
  });
  var asked = 0;
  var active = 0;

  function typing(target) {
    return target.closest && target.closest("input, textarea, select, [contenteditable], .modal");
  }
  function render(items) {
    list.replaceChildren();
    items.forEach(function (item, i) {
      var li = document.createElement("li");
      li.className = "list-group-item d-flex justify-content-between" + (i === active ? " active" : "");
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === active ? "true" : "false");
      li.id = "palette-item-" + i;
      var a = document.createElement("a");
      a.href = item.href;
      a.className = "stretched-link text-reset text-decoration-none";
      a.textContent = item.label;
      var kind = document.createElement("small");
      kind.className = i === active ? "" : "text-body-secondary";
      kind.textContent = item.kind;
      li.append(a, kind);
      list.append(li);
    });
    input.setAttribute("aria-activedescendant", items.length ? "palette-item-" + active : "");
    list.dataset.count = String(items.length);
  }
  function matching(query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    return pages.filter(function (p) {
      return words.every(function (w) { return p.label.toLowerCase().indexOf(w) >= 0; });
    });
  }
  function found(url, kind, label, href) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { results: [] }; })
      .then(function (body) {
        return (body.results || []).map(function (row) { return { label: label(row), href: href(row), kind: kind }; });
      })
      .catch(function () { return []; });
  }
  function update() {
    var query = input.value.trim();
    var ask = ++asked;
    active = 0;
    var items = matching(query);
    render(items);
    if (query.length < 2) return;
    var q = encodeURIComponent(query);
    Promise.all([
      found("/api/v1/vms/?page_size=8&search=" + q, "VM",
        function (vm) { return vm.name + " · " + (vm.host_name || "") + " · " + vm.state; },
        function (vm) { return "/vms/" + vm.id + "/"; }),
      found("/api/v1/hosts/?page_size=5&search=" + q, "host",
        function (h) { return h.name; },
        function (h) { return "/hosts/" + h.id + "/"; })
    ]).then(function (more) {
      if (ask !== asked) return;  // a newer query has been typed since
      render(items.concat(more[0], more[1]));
    });
  }
  var timer = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(update, 150);
  });
  input.addEventListener("keydown", function (e) {
    var count = Number(list.dataset.count || 0);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!count) return;
      active = (active + (e.key === "ArrowDown" ? 1 : count - 1)) % count;
      list.querySelectorAll("[role=option]").forEach(function (li, i) {
        li.classList.toggle("active", i === active);
        li.setAttribute("aria-selected", i === active ? "true" : "false");
      });
      input.setAttribute("aria-activedescendant", "palette-item-" + active);
    } else if (e.key === "Enter") {
      e.preventDefault();
      var link = list.querySelector("#palette-item-" + active + " a");
      if (link) window.location.assign(link.getAttribute("href"));
    }
  });
  dialog.addEventListener("shown.bs.modal", function () {
    input.value = "";
    update();
    input.focus();
  });
  document.addEventListener("keydown", function (e) {
    // A console's keys are the guest's.
    if (e.target.closest && e.target.closest("#screen, #terminal")) return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
      e.preventDefault();
      modal.show();
      return;
    }
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    e.preventDefault();
    var search = document.querySelector("[data-search]");
    if (search) {
      search.focus();
      search.select();
    } else {
      modal.show();
    }
  });
})();
