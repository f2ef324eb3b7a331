// Countersign admin sign-in pages: runs the ceremony <main data-ceremony> names (sign-in,
// bootstrap, invite) against /admin/api with the browser's own WebAuthn JSON helpers
// (parse*OptionsFromJSON, toJSON: base64url <-> ArrayBuffer without code of ours), sends the
// login-ceremony cookie (credentials: "same-origin"; the browser adds Origin), and on success
// goes to /admin. <main data-state> says where it is: ready, working, done, failed.
"use strict";
(function () {
  const main = document.querySelector("main");
  const form = document.getElementById("ceremony");
  const button = document.getElementById("start");
  const status = document.getElementById("status");
  if (!main || !form || !button || !status) {
    return;
  }

  const field = (id) => (document.getElementById(id) || { value: "" }).value;
  const create = (options) => navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
  });
  const get = (options) => navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
  });

  // Each ceremony: where its options and answer go, what the options call sends, and how the
  // browser answers.
  const ceremonies = {
    "sign-in": { path: "/admin/api/sign-in", body: () => ({}), run: get },
    bootstrap: {
      path: "/admin/api/bootstrap",
      body: () => ({ token: field("token").trim(), name: field("name") }),
      run: create,
    },
    invite: {
      path: "/admin/api/invite",
      body: () => ({ token: new URLSearchParams(window.location.search).get("token") || "" }),
      run: create,
    },
  };
  const ceremony = ceremonies[main.dataset.ceremony];

  function show(text, state) {
    status.textContent = text;
    main.dataset.state = state;
  }

  // POSTs JSON with the page's cookies; an error answer ({"error","message"}) becomes an Error.
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const json = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(json.message || "The server answered " + response.status + ".");
    }
    return json;
  }

  async function run(event) {
    event.preventDefault();
    button.disabled = true;
    show("Follow your browser's passkey prompt…", "working");
    try {
      if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON
          || !PublicKeyCredential.parseRequestOptionsFromJSON) {
        throw new Error("This browser cannot use passkeys here; try a current browser.");
      }
      const options = await post(ceremony.path + "/options", ceremony.body());
      const credential = await ceremony.run(options.public_key);
      await post(ceremony.path, { credential: credential.toJSON() });
      show("Signed in. Opening the admin pages…", "done");
      window.location.assign("/admin");
    } catch (error) {
      // NotAllowedError: the prompt was cancelled or timed out, or the browser refused.
      show(error.name === "NotAllowedError"
        ? "The passkey prompt was cancelled or timed out. Try again."
        : error.message, "failed");
      button.disabled = false;
    }
  }

  if (ceremony) {
    form.addEventListener("submit", run);
  }
})();
