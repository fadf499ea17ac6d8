// Saved filters of a list page, kept in this browser: "Save this filter…" names the
// filters in the address; each saved one is a link back to them, with a button to forget it.
(function () {
  "use strict";
  document.querySelectorAll("[data-saved-filters]").forEach(function (box) {
    var key = "panel-filters:" + box.dataset.savedFilters;
    var list = box.querySelector("[data-saved-list]");
    var save = box.querySelector("[data-save-filter]");
    function saved() {
      try { return JSON.parse(window.localStorage.getItem(key) || "[]"); } catch (e) { return []; }
    }
    function store(items) {
      try { window.localStorage.setItem(key, JSON.stringify(items)); } catch (e) { /* storage off */ }
      render();
    }
    function current() {
      // The filters in use: not the page number, nor the fields left empty.
      var query = new URLSearchParams();
      new URLSearchParams(window.location.search).forEach(function (value, name) {
        if (value !== "" && name !== "page") query.append(name, value);
      });
      return query.toString();
    }
    function render() {
      list.replaceChildren();
      saved().forEach(function (item, i) {
        var group = document.createElement("span");
        group.className = "btn-group btn-group-sm";
        var link = document.createElement("a");
        link.className = "btn btn-outline-secondary";
        link.href = "?" + item.query;
        link.textContent = item.name;
        var forget = document.createElement("button");
        forget.type = "button";
        forget.className = "btn btn-outline-secondary";
        forget.setAttribute("aria-label", "Forget the saved filter " + item.name);
        forget.textContent = "×";
        forget.addEventListener("click", function () {
          store(saved().filter(function (_, j) { return j !== i; }));
        });
        group.append(link, forget);
        list.append(group);
      });
      save.disabled = current() === "";
    }
    save.addEventListener("click", function () {
      var query = current();
      if (!query) return;
      var name = (window.prompt("Name this filter:", "") || "").trim();
      if (!name) return;
      store(saved().filter(function (item) { return item.name !== name; }).concat([{ name: name, query: query }]));
    });
    // The address changes as the list is filtered in place (htmx).
    document.addEventListener("htmx:pushedIntoHistory", render);
    window.addEventListener("popstate", render);
    render();
  });
})();
