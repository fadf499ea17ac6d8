// The serial console: xterm.js <-> websocket (binary frames) <-> the guest's ttyS0.
(function () {
  "use strict";
  var el = document.getElementById("terminal");
  var status = document.getElementById("console-status");
  // xterm.js adds <style> elements for its theme and sizes; the page's policy admits
  // only those carrying this page's nonce, so every one it creates gets it.
  var nonce = el.dataset.styleNonce;
  var createElement = document.createElement;
  document.createElement = function (name) {
    var made = createElement.apply(document, arguments);
    if (nonce && String(name).toLowerCase() === "style") made.setAttribute("nonce", nonce);
    return made;
  };
  var term = new Terminal({ scrollback: 5000, cursorBlink: true, convertEol: false });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  window.addEventListener("resize", function () { fit.fit(); });
  window.panelTerminal = term;
  function say(text, cls) { status.textContent = text; status.className = "badge " + cls; }
  fetch(el.dataset.ticketUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": el.dataset.csrf },
    body: JSON.stringify({ type: "serial" }),
    credentials: "same-origin",
  }).then(function (r) {
    return r.json().then(function (body) { if (!r.ok) throw new Error(body.detail || r.statusText); return body; });
  }).then(function (ticket) {
    var url = ticket.url;
    if (url.indexOf("ws") !== 0) url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
    var ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    var encoder = new TextEncoder();
    ws.onopen = function () { say("connected", "text-bg-success"); term.focus(); ws.send(encoder.encode("\r")); };
    ws.onmessage = function (e) {
      term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
    };
    ws.onclose = function (e) { say("closed (" + e.code + ")", "text-bg-secondary"); };
    term.onData(function (data) { if (ws.readyState === 1) ws.send(encoder.encode(data)); });
  }).catch(function (err) {
    say("refused", "text-bg-danger");
    term.write("\r\n[" + err.message + "]\r\n");
  });
})();
