// The VM page's tabs: the one shown follows the address (#snapshots) and is remembered
// for this VM in this browser tab, so that a form sent from a tab comes back to it.
(function () {
  "use strict";
  var list = document.querySelector("[data-vm-tabs]");
  if (!list || !window.bootstrap) return;
  var key = "vm-tab:" + list.dataset.vmTabs;
  function button(name) {
    return name ? list.querySelector('[data-tab="' + name + '"]') : null;
  }
  function remembered() {
    try { return window.sessionStorage.getItem(key); } catch (e) { return null; }
  }
  function show(name) {
    var b = button(name);
    if (b) window.bootstrap.Tab.getOrCreateInstance(b).show();
  }
  list.addEventListener("shown.bs.tab", function (e) {
    var name = e.target.dataset.tab;
    try { window.sessionStorage.setItem(key, name); } catch (err) { /* storage off */ }
    if (window.location.hash !== "#" + name) window.history.replaceState(null, "", "#" + name);
    // What was drawn while hidden (graphs) takes its size again.
    window.dispatchEvent(new Event("resize"));
  });
  window.addEventListener("hashchange", function () { show(window.location.hash.slice(1)); });
  // The Hardware tab's Add menu: the form for a disk, a CD-ROM drive or a NIC, ready.
  document.querySelectorAll("[data-add]").forEach(function (item) {
    item.addEventListener("click", function () {
      var what = item.dataset.add;
      var form = what === "nic" ? document.getElementById("nic-attach") : document.querySelector("[data-disk-attach]");
      if (!form) return;
      if (what !== "nic") {
        form.open = true;
        document.getElementById("d-device").value = what === "cdrom" ? "cdrom" : "disk";
      }
      form.scrollIntoView({ block: "center" });
      var first = form.querySelector("select, input:not([type=hidden])");
      if (first) first.focus();
    });
  });
  show(button(window.location.hash.slice(1)) ? window.location.hash.slice(1) : remembered());
})();
