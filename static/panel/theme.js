// Light or dark pages: the system's setting, unless the user chose one with the navbar's
// theme button (kept in this browser). Loaded in <head> so that no page flashes white.
(function () {
  "use strict";
  var KEY = "panel-theme";
  var CHOICES = ["auto", "light", "dark"];
  var system = window.matchMedia("(prefers-color-scheme: dark)");
  function chosen() {
    var value = null;
    try { value = window.localStorage.getItem(KEY); } catch (e) { /* storage off */ }
    return CHOICES.indexOf(value) > 0 ? value : "auto";
  }
  function apply() {
    var choice = chosen();
    var theme = choice === "auto" ? (system.matches ? "dark" : "light") : choice;
    document.documentElement.setAttribute("data-bs-theme", theme);
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      button.dataset.themeChoice = choice;
      var label = button.querySelector("[data-theme-label]");
      if (label) label.textContent = choice === "auto" ? "Auto (" + theme + ")" : choice === "dark" ? "Dark" : "Light";
      button.setAttribute("aria-label", "Theme: " + choice + ". Change the theme");
    });
  }
  apply();
  system.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", function () {
    apply();
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      button.addEventListener("click", function () {
        var next = CHOICES[(CHOICES.indexOf(chosen()) + 1) % CHOICES.length];
        try { window.localStorage.setItem(KEY, next); } catch (e) { /* storage off */ }
        apply();
      });
    });
  });
  window.addEventListener("storage", function (e) { if (e.key === KEY) apply(); });
})();
