// The sidebar's resource tree: a host's branch is fetched when it is opened, and the
// hosts left open stay open on the next pages (kept in this browser).
(function () {
  "use strict";
  var KEY = "panel-tree-open";
  function opened() {
    try { return JSON.parse(window.localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function remember(id, open) {
    var ids = opened().filter(function (x) { return x !== id; });
    if (open) ids.push(id);
    try { window.localStorage.setItem(KEY, JSON.stringify(ids)); } catch (e) { /* storage off */ }
  }
  function show(item, open) {
    var button = item.querySelector(".tree-toggle");
    var children = item.querySelector("[data-tree-children]");
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.textContent = open ? "▾" : "▸";
    children.hidden = !open;
    if (open && !item.dataset.loaded && window.htmx) {
      item.dataset.loaded = "1";
      window.htmx.ajax("GET", item.dataset.treeUrl, { target: children, swap: "innerHTML" });
    }
  }
  document.querySelectorAll("[data-tree-host]").forEach(function (item) {
    var id = item.dataset.treeHost;
    item.querySelector(".tree-toggle").addEventListener("click", function () {
      var open = this.getAttribute("aria-expanded") !== "true";
      remember(id, open);
      show(item, open);
    });
    if (opened().indexOf(id) >= 0) show(item, true);
  });
})();
