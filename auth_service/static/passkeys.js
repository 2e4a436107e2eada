// The /passkeys page: password sign-in, passkey registration, list, removal and passwordless
// sign-in, all through the JSON API. Tokens stay in this closure (no storage): a reload signs out.
"use strict";
(function () {
  const api = "/api/v1";
  let accessToken = null;
  const $ = (id) => document.getElementById(id);

  function say(text) {
    $("status").textContent = text;
  }

  // base64url <-> ArrayBuffer, for browsers without the JSON helpers of WebAuthn level 3.
  function fromB64url(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
  }
  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      user: Object.assign({}, json.user, { id: fromB64url(json.user.id) }),
      excludeCredentials: (json.excludeCredentials || []).map((c) => Object.assign({}, c, { id: fromB64url(c.id) })),
    });
  }
  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => Object.assign({}, c, { id: fromB64url(c.id) })),
    });
  }
  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
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
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment,
    };
  }

  async function call(method, path, body, token) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers["Authorization"] = "Bearer " + token;
    const response = await fetch(api + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = (data && data.error) || {};
      const refused = new Error((error.code || response.status) + ": " + (error.message || "request failed"));
      refused.code = error.code;
      refused.mfa = error.mfa;
      throw refused;
    }
    return data;
  }

  async function signedIn(pair, how) {
    accessToken = pair.access_token;
    const me = await call("GET", "/auth/verify", undefined, accessToken);
    say("Signed in as " + me.username + " (" + how + ").");
    $("manage").hidden = false;
    $("sign-in").hidden = true;
    await refresh();
  }

  async function refresh() {
    const list = $("passkeys");
    const passkeys = await call("GET", "/users/me/passkeys", undefined, accessToken);
    list.replaceChildren();
    for (const passkey of passkeys) {
      const item = document.createElement("li");
      item.dataset.id = passkey.id;
      const used = passkey.last_used_at ? "last used " + passkey.last_used_at : "never used";
      item.append(passkey.name + " (" + used + (passkey.backup_eligible ? ", synced" : "") + ") ");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove " + passkey.name);
      remove.addEventListener("click", () => guarded(async () => {
        await call("DELETE", "/users/me/passkeys/" + encodeURIComponent(passkey.id), undefined, accessToken);
        say("Removed " + passkey.name + ".");
        await refresh();
      }));
      item.append(remove);
      list.append(item);
    }
    if (!passkeys.length) {
      const none = document.createElement("li");
      none.textContent = "No passkeys yet.";
      list.append(none);
    }
  }

  async function guarded(action) {
    try {
      await action();
    } catch (error) {
      say("Refused: " + error.message);
    }
  }

  $("password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      const credentials = { username: $("username").value, password: $("password").value };
      $("password").value = "";
      try {
        await signedIn(await call("POST", "/auth/login", credentials), "password");
      } catch (error) {
        // The password was right and a second factor is due: this page does it with a passkey.
        if (error.code !== "AUTH_MFA_REQUIRED" || !error.mfa.methods.includes("webauthn")) throw error;
        await secondStep(error.mfa.mfa_token);
      }
    });
  });

  async function secondStep(mfaToken) {
    say("Password accepted; confirm with your passkey.");
    const options = await call("POST", "/auth/mfa/webauthn/options", { mfa_token: mfaToken });
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options.public_key) });
    const pair = await call("POST", "/auth/mfa", { mfa_token: mfaToken, webauthn: credentialJSON(credential) });
    await signedIn(pair, "password and passkey");
  }

  $("add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      const name = $("passkey-name").value.trim();
      const options = await call("POST", "/users/me/passkeys/options", name ? { name } : {}, accessToken);
      const credential = await navigator.credentials.create({ publicKey: creationOptions(options.public_key) });
      const body = Object.assign(credentialJSON(credential), name ? { name } : {});
      const created = await call("POST", "/users/me/passkeys", body, accessToken);
      say("Added the passkey " + created.name + ".");
      $("passkey-name").value = "";
      await refresh();
    });
  });

  $("passkey-login").addEventListener("click", () => guarded(async () => {
    const options = await call("POST", "/auth/passkey/options");
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options.public_key) });
    const pair = await call("POST", "/auth/passkey", {
      ceremony_id: options.ceremony_id,
      credential: credentialJSON(credential),
    });
    await signedIn(pair, "passkey");
  }));

  $("sign-out").addEventListener("click", () => guarded(async () => {
    if (accessToken) await call("POST", "/auth/logout", undefined, accessToken);
    accessToken = null;
    $("manage").hidden = true;
    $("sign-in").hidden = false;
    say("Signed out.");
  }));

  if (!window.PublicKeyCredential || !window.isSecureContext) {
    $("support").hidden = false;
  }
  document.body.dataset.ready = "true";
})();
