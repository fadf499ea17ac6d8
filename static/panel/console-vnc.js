// The graphical console: noVNC (ES module) through websockify with a single-use ticket.
import RFB from "../vendor/novnc/core/rfb.js";

const el = document.getElementById("screen");
const status = document.getElementById("console-status");
const viewOnly = el.dataset.viewOnly === "1";
function say(text, cls) { status.textContent = text; status.className = "badge " + cls; }

try {
  const r = await fetch(el.dataset.ticketUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": el.dataset.csrf },
    body: JSON.stringify({ type: "vnc" }),
    credentials: "same-origin",
  });
  const ticket = await r.json();
  if (!r.ok) throw new Error(ticket.detail || r.statusText);
  const rfb = new RFB(el, ticket.url, ticket.password ? { credentials: { password: ticket.password } } : {});
  rfb.viewOnly = viewOnly;
  rfb.scaleViewport = true;
  rfb.resizeSession = false;
  window.panelRFB = rfb;
  rfb.addEventListener("connect", () => say("connected", "text-bg-success"));
  rfb.addEventListener("disconnect", (e) => say(e.detail.clean ? "closed" : "connection lost", "text-bg-secondary"));
  document.getElementById("cad").addEventListener("click", () => rfb.sendCtrlAltDel());
  document.getElementById("fullscreen").addEventListener("click", () => el.requestFullscreen());
  document.getElementById("paste").addEventListener("click", async () => {
    const text = await navigator.clipboard.readText();
    for (const ch of text) {
      const code = ch.codePointAt(0);
      const keysym = ch === "\n" ? 0xff0d : code < 0x100 ? code : 0x1000000 + code;
      rfb.sendKey(keysym, null);
    }
  });
} catch (err) {
  say("refused: " + err.message, "text-bg-danger");
}
