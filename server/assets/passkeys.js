// Countersign hosted pages: runs the WebAuthn ceremony the page's button names
// (data-ceremony), with the single-use credential from the button (data-token) or the page's
// URL. No build step, no dependencies; the browser does all encoding (parse*OptionsFromJSON,
// toJSON).
"use strict";
(function () {
  const button = document.getElementById("start");
  const status = document.getElementById("status");
  if (!button || !status) {
    return;
  }

  const ceremonies = {
    enroll: {
      param: "code",
      options: "/passkeys/enroll/options",
      answer: "/passkeys/enroll/credential",
      run: (options) => navigator.credentials.create({
        publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
      }),
      done: "Your passkey is registered. You can close this page.",
    },
    "sign-in": {
      param: "token",
      options: "/passkeys/sign-in/options",
      answer: "/passkeys/sign-in/assertion",
      run: (options) => navigator.credentials.get({
        publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
      }),
      done: "You are signed in. Return to the application.",
    },
  };
  const ceremony = ceremonies[button.dataset.ceremony];

  function show(text, state) {
    status.textContent = text;
    status.dataset.state = state;
  }

  // POSTs JSON; an error answer ({"error","message"}) becomes an Error with its message.
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    });
    const json = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(json.message || "The server answered " + response.status + ".");
    }
    return json;
  }

  async function run() {
    button.disabled = true;
    show("Follow your browser's prompt…", "working");
    try {
      if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON
          || !PublicKeyCredential.parseRequestOptionsFromJSON) {
        throw new Error("This browser cannot use passkeys on this page; try a current browser.");
      }
      // The page's own token (the OIDC sign-in page), else the one in the page's URL.
      const secret = button.dataset[ceremony.param]
        || new URLSearchParams(window.location.search).get(ceremony.param) || "";
      const options = await post(ceremony.options, { [ceremony.param]: secret });
      const credential = await ceremony.run(options.public_key);
      await post(ceremony.answer, { [ceremony.param]: secret, credential: credential.toJSON() });
      // The page may say what happens next (the OIDC sign-in page returns to the application).
      show(button.dataset.done || ceremony.done, "done");
    } catch (error) {
      // NotAllowedError: the user cancelled, the prompt timed out, or the browser refused.
      show(error.name === "NotAllowedError"
        ? "The passkey prompt was cancelled or timed out. Try again. (" + error.message + ")"
        : error.message, "error");
      button.disabled = false;
    }
  }

  if (ceremony) {
    button.addEventListener("click", run);
  }
})();
