// Security keys and passkeys (WebAuthn): adding one on the Two factors page, using one at
// the login's second step. Options come from the server as JSON (base64url for bytes);
// the browser's answer goes back the same way.
(function () {
  "use strict";

  function toBytes(b64url) {
    const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function toB64url(buffer) {
    let raw = "";
    new Uint8Array(buffer).forEach((b) => { raw += String.fromCharCode(b); });
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBytes(options) {
    options.challenge = toBytes(options.challenge);
    if (options.user) options.user.id = toBytes(options.user.id);
    for (const list of [options.excludeCredentials, options.allowCredentials]) {
      (list || []).forEach((c) => { c.id = toBytes(c.id); });
    }
    return options;
  }

  function asJSON(credential) {
    const r = credential.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
    };
  }

  async function post(form, url, body) {
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token, "Content-Type": "application/json" },
      body: body === undefined ? "" : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || `The panel answered ${response.status}.`);
    return data;
  }

  function wire(form, run) {
    const error = form.querySelector("[data-webauthn-error]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      if (!window.PublicKeyCredential) {
        error.textContent = "This browser cannot use security keys here (reach the panel by its name over HTTPS).";
        return;
      }
      try {
        await run();
      } catch (exc) {
        error.textContent = exc.message || String(exc);
      }
    });
  }

  document.querySelectorAll("form[data-webauthn-register]").forEach((form) => {
    wire(form, async () => {
      const options = await post(form, form.dataset.options);
      const credential = await navigator.credentials.create({ publicKey: withBytes(options) });
      const name = form.querySelector("input[name=name]").value;
      await post(form, form.action, { name: name, credential: asJSON(credential) });
      window.location.assign(form.dataset.done);
    });
  });

  document.querySelectorAll("form[data-webauthn-login]").forEach((form) => {
    wire(form, async () => {
      const options = await post(form, form.dataset.options);
      const credential = await navigator.credentials.get({ publicKey: withBytes(options) });
      const done = await post(form, form.action, asJSON(credential));
      window.location.assign(done.redirect);
    });
  });
})();
