// Storage pages: the pool form shows the fields of the chosen type; the upload page
// creates a volume through the API and streams the file into it with a progress bar.

function poolForm(form) {
  const type = form.querySelector("#type");
  const help = form.querySelector("[data-type-help]");
  const show = () => {
    const option = type.selectedOptions[0];
    const fields = option.dataset.fields.split(" ");
    const required = option.dataset.required.split(" ");
    help.textContent = option.dataset.help;
    form.querySelectorAll("[data-field]").forEach((el) => {
      const on = fields.includes(el.dataset.field);
      el.hidden = !on;
      const input = el.querySelector("input, select");
      input.disabled = !on;
      input.required = on && required.includes(el.dataset.field);
    });
    form.querySelectorAll("option[data-for]").forEach((opt) => {
      opt.hidden = opt.dataset.for !== type.value;
    });
  };
  type.addEventListener("change", show);
  show();
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const first = Object.values(data)[0];
    throw new Error(typeof first === "string" ? first : Array.isArray(first) ? first[0] : response.statusText);
  }
  return data;
}

function uploadForm(form) {
  const file = form.querySelector("#file");
  const name = form.querySelector("#name");
  const bar = form.querySelector("[data-upload-bar]");
  const status = form.querySelector("[data-upload-status]");
  const button = form.querySelector("button");
  file.addEventListener("change", () => {
    if (file.files[0] && !name.value) name.value = file.files[0].name.replace(/[^A-Za-z0-9._+-]/g, "_");
  });
  const setBar = (pct) => {
    bar.style.width = `${pct}%`;
    bar.textContent = `${pct} %`;
    bar.parentElement.setAttribute("aria-valuenow", String(pct));
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    button.disabled = true;
    status.className = "small";
    status.textContent = "Creating the volume…";
    let volume;
    try {
      volume = await api("POST", form.dataset.apiVolumes, {
        pool: Number(form.dataset.pool),
        name: name.value,
        format: "raw",
        capacity_gib: String(chosen.size / 1024 ** 3),
        project: form.querySelector("#project")?.value || null,
      });
    } catch (error) {
      status.className = "small text-danger";
      status.textContent = error.message;
      button.disabled = false;
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `${form.dataset.apiVolumes}${volume.id}/upload/?remove_on_failure=true`);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) setBar(Math.min(99, Math.floor((100 * e.loaded) / e.total)));
      status.textContent = `Sending ${e.loaded} of ${e.total} bytes`;
    });
    xhr.addEventListener("load", () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 202) {
        setBar(100);
        status.className = "small text-success";
        status.innerHTML = "";
        const link = document.createElement("a");
        link.href = form.dataset.volumePage.replace("/0/", `/${volume.id}/`);
        link.textContent = `Uploaded ${chosen.size} bytes into ${volume.name}`;
        status.append(link);
      } else {
        status.className = "small text-danger";
        status.textContent = data.detail || `Upload failed (${xhr.status}); the volume was removed.`;
        button.disabled = false;
      }
    });
    xhr.addEventListener("error", () => {
      status.className = "small text-danger";
      status.textContent = "The connection broke; the volume was removed. Try again.";
      button.disabled = false;
    });
    xhr.send(chosen);
  });
}

document.querySelectorAll("[data-pool-form]").forEach(poolForm);
document.querySelectorAll("[data-upload-form]").forEach(uploadForm);
