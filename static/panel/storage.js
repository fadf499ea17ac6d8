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
        format: form.querySelector("#format")?.value || "raw",
        capacity_gib: String(chosen.size / 1024 ** 3),
        project: form.querySelector("#project")?.value || null,
      });
    } catch (error) {
      status.className = "small text-danger";
      status.textContent = error.message;
      button.disabled = false;
      return;
    }
    upload(chosen, volume, setBar, status).then(
      (done) => {
        setBar(100);
        status.className = "small text-success";
        status.innerHTML = "";
        const link = document.createElement("a");
        link.href = form.dataset.volumePage.replace("/0/", `/${done.volume.id}/`);
        link.textContent = `Uploaded ${chosen.size} bytes into ${done.volume.name}`;
        status.append(link);
      },
      (error) => {
        status.className = "small text-danger";
        status.textContent = `${error.message} The volume was removed; try again.`;
        button.disabled = false;
      },
    );
  });
}

// Send the file over a websocket in 1 MiB slices, a few in flight; the server acknowledges
// each once it is on its way into the host's volume, and the bar follows those.
const SLICE = 1024 * 1024;
const IN_FLIGHT = 4;

function upload(file, volume, setBar, status) {
  return new Promise((resolve, reject) => {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${window.location.host}/ws/volumes/${volume.id}/upload/`);
    ws.binaryType = "arraybuffer";
    let sent = 0;
    let acked = 0;
    let settled = false;
    const finish = (fn, value) => { if (!settled) { settled = true; fn(value); } };
    let pumping = false;
    const pump = async () => {
      // One sender at a time, so slices go out in order.
      if (pumping) return;
      pumping = true;
      try {
        while (sent < file.size && sent - acked < IN_FLIGHT * SLICE) {
          const end = Math.min(sent + SLICE, file.size);
          ws.send(await file.slice(sent, end).arrayBuffer());
          sent = end;
        }
      } finally {
        pumping = false;
      }
    };
    ws.addEventListener("open", () => ws.send(JSON.stringify({ size: file.size })));
    ws.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.error) return finish(reject, new Error(msg.error));
      if (msg.done) return finish(resolve, msg);
      if (msg.job !== undefined && msg.received === undefined) return pump();
      if (msg.received !== undefined) {
        acked = msg.received;
        setBar(Math.min(99, Math.floor((100 * acked) / file.size)));
        status.textContent = `Sent ${acked} of ${file.size} bytes`;
        pump();
      }
    });
    ws.addEventListener("close", () => finish(reject, new Error("The connection closed before the upload finished.")));
  });
}

document.querySelectorAll("[data-pool-form]").forEach(poolForm);
document.querySelectorAll("[data-upload-form]").forEach(uploadForm);
