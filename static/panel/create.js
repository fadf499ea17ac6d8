// The create wizard: show the fields of the chosen install method and cloud-init mode,
// and fill in the chosen OS variant's recommended size.

const form = document.querySelector("[data-create-form]");
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
  const variant = form.querySelector("#os_variant");
  variant.addEventListener("change", () => {
    const option = variant.selectedOptions[0];
    if (Number(option.dataset.vcpus)) form.querySelector("#vcpus").value = option.dataset.vcpus;
    if (Number(option.dataset.memory)) form.querySelector("#memory_mib").value = option.dataset.memory;
    if (Number(option.dataset.disk)) form.querySelector("#disk_size_gib").value = option.dataset.disk;
  });
}
