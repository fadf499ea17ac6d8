// The create wizard: show the fields of the chosen install method and cloud-init mode,
// narrow the OS variants to those matching what is typed in their search, and fill in the
// chosen OS variant's recommended size.

const form = document.querySelector("[data-create-form]");

const fillSize = (option) => {
  if (!option) return;
  if (Number(option.dataset.vcpus)) form.querySelector("#vcpus").value = option.dataset.vcpus;
  if (Number(option.dataset.memory)) form.querySelector("#memory_mib").value = option.dataset.memory;
  if (Number(option.dataset.disk)) form.querySelector("#disk_size_gib").value = option.dataset.disk;
};

// Every word typed must appear in the option's name or short id ("deb 12", "win 11").
const narrow = (variant, search, matches) => {
  const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
  const common = variant.querySelector("optgroup[data-common]");
  common.hidden = words.length > 0; // while searching, each variant shows once
  let first = null;
  let shown = 0;
  variant.querySelectorAll("optgroup:not([data-common]) option").forEach((option) => {
    const text = option.textContent.toLowerCase();
    option.hidden = !words.every((word) => text.includes(word));
    if (!option.hidden) {
      shown += 1;
      first = first || option;
    }
  });
  if (!words.length) {
    matches.textContent = "";
    return;
  }
  matches.textContent = shown
    ? `${shown} match${shown === 1 ? "" : "es"}`
    : "No OS variant matches: type less of its name, or clear the search and choose Generic OS.";
  const chosen = variant.selectedOptions[0];
  // A choice the search hides would still be sent: the first match takes its place.
  if (first && (!chosen || chosen.hidden || chosen.parentElement === common)) {
    first.selected = true;
    fillSize(first);
  }
};

const searchable = (variant) => {
  const search = form.querySelector("[data-variant-search]");
  const matches = form.querySelector("[data-variant-matches]");
  variant.addEventListener("change", () => fillSize(variant.selectedOptions[0]));
  search.addEventListener("input", () => narrow(variant, search, matches));
  search.addEventListener("keydown", (event) => {
    // Enter keeps the first match instead of sending the form; the arrows go to the list.
    if (event.key === "Enter" || event.key === "ArrowDown") {
      event.preventDefault();
      variant.focus();
    }
  });
};

if (form) {
  const show = () => {
    const method = form.querySelector("input[name=method]:checked")?.value;
    const ci = form.querySelector("input[name=ci_mode]:checked")?.value;
    form.querySelectorAll("[data-method]").forEach((el) => {
      const on = el.dataset.method === method && (!el.dataset.ci || el.dataset.ci === ci);
      el.hidden = !on;
      el.querySelectorAll("input, select, textarea").forEach((input) => { input.disabled = !on; });
    });
  };
  form.querySelectorAll("input[name=method], input[name=ci_mode]").forEach((r) => r.addEventListener("change", show));
  show();
  searchable(form.querySelector("#os_variant"));
}
