// Countersign admin pages. No inline script (CSP): everything the pages do live is here.
// The overview's alert list follows /admin/api/events (server-sent events) and, when an alert
// names a user the under-attack table does not list yet, re-reads /admin/api/overview and
// redraws the table. The pages' actions (user, admins, requests, policy, apps) POST to the admin
// API with the page's CSRF token. Text is always set with textContent, never parsed as HTML.
"use strict";

// POSTs JSON with the session cookie and the page's CSRF token (<meta name="csrf-token">).
// Answers {status, json}; an error answer ({"error","message"}) becomes an Error.
async function adminPost(url, body) {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": meta ? meta.content : "" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(json.message || "The server answered " + response.status + ".");
  }
  return { status: response.status, json };
}

// A fresh passkey assertion for one sensitive action, named by `action` ("approve_request:<id>",
// …): the server lets only that action spend it (the browser's own WebAuthn JSON helpers, as on
// the sign-in pages).
async function stepUp(action) {
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
    throw new Error("This browser cannot use passkeys here; try a current browser.");
  }
  const options = (await adminPost("/admin/api/session/step-up/options", { action })).json;
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.public_key),
  });
  await adminPost("/admin/api/session/step-up", { credential: credential.toJSON() });
}

// Revoke buttons (in table rows): each click runs a step-up for exactly that revoke
// (`stepUpFor(button)`), then POSTs to `url(button)`, and marks the row (data-state revoked or
// failed).
function wireRevokeButtons(selector, stepUpFor, url) {
  document.querySelectorAll(selector).forEach((button) => {
    const row = button.closest("tr");
    button.addEventListener("click", async () => {
      button.disabled = true;
      row.dataset.state = "working";
      button.textContent = "Follow your browser's passkey prompt…";
      try {
        await stepUp(stepUpFor(button));
        await adminPost(url(button));
        row.dataset.state = "revoked";
        button.textContent = "Revoked";
      } catch (error) {
        row.dataset.state = "failed";
        button.textContent = "Failed (" + failureText(error) + "): revoke again";
        button.disabled = false;
      }
    });
  });
}

function showResult(element, state, text, link) {
  element.dataset.state = state;
  element.textContent = text;
  if (link) {
    const a = document.createElement("a");
    a.href = link.href;
    a.textContent = link.text;
    element.append(" ", a);
  }
}

// What a failed action says: a cancelled passkey prompt in words, anything else its message.
function failureText(error) {
  return error.name === "NotAllowedError" ? "The passkey prompt was cancelled or timed out." : error.message;
}

// A four-eyes request filed (202): says so and links to it on the requests page.
function showPending(element, answer) {
  showResult(element, "pending", "Pending: a second admin must approve on the Requests page (request "
    + answer.json.id + ").", { href: "/admin/requests#request-" + answer.json.id, text: "Open the request" });
}

// A form whose submission runs `run(data, result)` (which shows its own outcome in the form's
// `.result`) instead of loading a page; the form is reset after success, a failure shown.
function onFormSubmit(id, working, run) {
  const form = document.getElementById(id);
  const result = form && form.querySelector(".result");
  const button = form && form.querySelector('button[type="submit"]');
  if (!form || !result || !button) {
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    showResult(result, "working", working);
    try {
      await run(new FormData(form), result);
      form.reset();
    } catch (error) {
      showResult(result, "failed", failureText(error));
    }
    button.disabled = false;
  });
}

(function () {
  const feed = document.getElementById("alerts");
  if (!feed || typeof EventSource === "undefined") {
    return;
  }
  const table = document.querySelector("#under-attack tbody");

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function timeText(iso) {
    return iso.replace("T", " ").replace(/(\.\d+)?Z$/, "").replace(/[+-]00:00$/, "");
  }

  function alertItem(alert) {
    const li = document.createElement("li");
    li.dataset.alertId = String(alert.id);
    const time = document.createElement("time");
    time.textContent = timeText(alert.created_at);
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = alert.kind;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = alert.username || alert.subject;
    const details = document.createElement("span");
    details.className = "details";
    details.textContent = JSON.stringify(alert.details);
    li.append(time, " ", kind, " ", who, " ", details);
    return li;
  }

  function listed(username) {
    if (!table) {
      return true;
    }
    return Array.from(table.rows).some((row) => row.dataset.username === username);
  }

  function source(last) {
    if (!last) {
      return "";
    }
    const place = last.location ? " (" + last.location + ")" : "";
    return last.app_name + " from " + last.ip + place + ", " + timeText(last.at);
  }

  function redraw(users) {
    const rows = users.map((user) => {
      const row = document.createElement("tr");
      row.dataset.username = user.username;
      const link = document.createElement("a");
      link.href = "/admin/users/" + encodeURIComponent(user.username);
      link.textContent = user.username;
      cell(row, "").appendChild(link);
      cell(row, String(user.score), "num");
      const standing = document.createElement("span");
      standing.className = "standing standing-" + user.standing.push;
      standing.textContent = user.standing.push;
      cell(row, "").appendChild(standing);
      cell(row, user.standing.reason || "");
      cell(row, source(user.last_source));
      return row;
    });
    table.replaceChildren(...rows);
    const none = document.getElementById("no-attack");
    if (none && rows.length > 0) {
      none.remove();
    }
  }

  let refetching = false;
  async function refreshOverview() {
    if (refetching) {
      return;
    }
    refetching = true;
    try {
      const response = await fetch("/admin/api/overview", { credentials: "same-origin" });
      if (response.ok) {
        redraw((await response.json()).under_attack);
      }
    } finally {
      refetching = false;
    }
  }

  const after = feed.dataset.after || "0";
  const events = new EventSource(feed.dataset.feed + "?after=" + encodeURIComponent(after));
  events.addEventListener("open", () => {
    feed.dataset.state = "live";
  });
  events.addEventListener("error", () => {
    feed.dataset.state = events.readyState === EventSource.CLOSED ? "closed" : "connecting";
  });
  events.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    feed.prepend(alertItem(alert));
    if (alert.username && !listed(alert.username)) {
      refreshOverview();
    }
  });
})();

// The user page: Unfreeze lifts a freeze (200) or, for a "not me" quarantine, files a request
// a second admin must approve (202).
(function () {
  const button = document.querySelector('button[data-action="unfreeze"]');
  const result = document.getElementById("action-result");
  if (!button || !result) {
    return;
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    showResult(result, "working", "Unfreezing…");
    try {
      const path = "/admin/api/users/" + encodeURIComponent(button.dataset.username) + "/unfreeze";
      const answer = await adminPost(path);
      if (answer.status === 202) {
        showResult(result, "pending", "Quarantined after a \"not me\": a second admin must approve request "
          + answer.json.id + ".", { href: "/admin/requests#request-" + answer.json.id, text: "Open the request" });
      } else {
        showResult(result, "lifted", "Push is available again.");
      }
    } catch (error) {
      showResult(result, "failed", error.message);
      button.disabled = false;
    }
  });
})();

// The user page: Revoke on a device or passkey row.
(function () {
  const user = document.getElementById("user");
  if (!user) {
    return;
  }
  const base = "/admin/api/users/" + encodeURIComponent(user.dataset.username);
  wireRevokeButtons('button[data-action="revoke-device"]', (b) => "revoke_user_device:" + b.dataset.id,
    (b) => base + "/devices/" + encodeURIComponent(b.dataset.id) + "/revoke");
  wireRevokeButtons('button[data-action="revoke-passkey"]', (b) => "revoke_user_passkey:" + b.dataset.id,
    (b) => base + "/passkeys/" + encodeURIComponent(b.dataset.id) + "/revoke");
})();

// The user page: "Verify caller" sends a number-matching push, shows the number for the agent
// to read out, and follows the answer by long-polling; a verified caller can be sent a passkey
// link (shown as text only).
(function () {
  const button = document.querySelector('button[data-action="verify-caller"]');
  const number = document.getElementById("verification-number");
  const result = document.getElementById("verification-result");
  const linkButton = document.querySelector('button[data-action="passkey-link"]');
  const link = document.getElementById("passkey-link");
  if (!button || !number || !result || !linkButton || !link) {
    return;
  }
  const base = "/admin/api/users/" + encodeURIComponent(button.dataset.username);
  const words = {
    verified: "Verified: the caller typed the number on their phone.",
    wrong_number: "Wrong number: the caller typed another number. Do not trust this call.",
    denied: "Denied on the phone.",
    reported: "Reported as \"not me\" on the phone. Do not trust this call.",
    expired: "No answer in time.",
    cancelled: "Cancelled.",
  };
  let verificationId = null;

  async function follow(id) {
    for (;;) {
      const response = await fetch("/admin/api/caller-verifications/" + encodeURIComponent(id) + "?wait=25",
        { credentials: "same-origin" });
      const json = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new Error(json.message || "The server answered " + response.status + ".");
      }
      if (json.state !== "pending") {
        return json.state;
      }
    }
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    linkButton.hidden = true;
    link.textContent = "";
    number.textContent = "";
    showResult(result, "working", "Sending the push…");
    try {
      const started = (await adminPost(base + "/caller-verifications")).json;
      verificationId = started.id;
      number.textContent = started.number;
      showResult(result, "pending", "Read this number to the caller; waiting for their answer…");
      const state = await follow(started.id);
      showResult(result, state, words[state] || state);
      linkButton.hidden = state !== "verified";
    } catch (error) {
      showResult(result, "failed", error.message);
    }
    button.disabled = false;
  });

  linkButton.addEventListener("click", async () => {
    linkButton.disabled = true;
    try {
      const issued = (await adminPost(base + "/passkey-links", { verification_id: verificationId })).json;
      showResult(link, "issued", issued.url);
      linkButton.hidden = true;
    } catch (error) {
      showResult(link, "failed", error.message);
    }
    linkButton.disabled = false;
  });
})();

// The apps page (admins only): the Revoke buttons and the create forms. Each change runs a
// step-up for exactly that change, then calls the admin API; a new key or client secret is shown
// once, as text, and never kept by the page.
(function () {
  wireRevokeButtons('button[data-action="revoke-app"]', (b) => "revoke_app:" + b.dataset.name,
    (b) => "/admin/api/apps/" + encodeURIComponent(b.dataset.name) + "/revoke");
  wireRevokeButtons('button[data-action="revoke-client"]', (b) => "revoke_client:" + b.dataset.clientId,
    (b) => "/admin/api/clients/" + encodeURIComponent(b.dataset.clientId) + "/revoke");

  // Runs `create` (step-up, then the POST) on submit, and shows the answer's secret line, which
  // `reveal` fills.
  function createForm(id, create, reveal) {
    const secret = document.querySelector("#" + id + " .secret");
    onFormSubmit(id, "Follow your browser's passkey prompt…", async (data, result) => {
      secret.hidden = true;
      secret.querySelectorAll("code").forEach((code) => { code.textContent = ""; });
      const answer = (await create(data)).json;
      showResult(result, "created", "Created " + answer.name + ". Reload the page to see it listed.");
      reveal(answer, secret);
      secret.hidden = false;
    });
  }

  createForm("create-app", async (data) => {
    const name = String(data.get("name"));
    await stepUp("create_app:" + name);
    return adminPost("/admin/api/apps", { name, scopes: data.getAll("scopes").map(String) });
  }, (answer, secret) => {
    secret.querySelector(".value").textContent = answer.api_key;
  });

  createForm("create-client", async (data) => {
    const text = (name) => String(data.get(name) || "").trim();
    const body = {
      name: text("name"),
      redirect_uris: text("redirect_uris").split(/\s+/).filter((uri) => uri !== ""),
      auth_method: text("auth_method"),
      id_token_alg: text("id_token_alg"),
    };
    ["jwks_uri", "ciba", "notification_endpoint"].forEach((name) => {
      if (text(name) !== "") {
        body[name] = text(name);
      }
    });
    await stepUp("create_client");
    return adminPost("/admin/api/clients", body);
  }, (answer, secret) => {
    secret.querySelector(".client-id").textContent = answer.client_id;
    secret.querySelector(".value").textContent = answer.client_secret || "(none: this client has no secret)";
  });
})();

// The admins page: inviting an admin, changing a role and removing an admin are four-eyes
// requests (202: the page links to the request a second admin approves); cancelling a scheduled
// removal (admins) and revoking or adding one's own passkey each run a step-up for exactly that
// action first.
(function () {
  const roster = document.getElementById("admins");
  if (!roster) {
    return;
  }

  onFormSubmit("invite-admin", "Asking…", async (data, result) => {
    showPending(result, await adminPost("/admin/api/admins/invite",
      { name: String(data.get("name")), role: String(data.get("role")) }));
  });

  roster.querySelectorAll("tbody tr[data-admin-id]").forEach((row) => {
    const outcome = row.querySelector(".outcome");
    const base = "/admin/api/admins/" + encodeURIComponent(row.dataset.adminId);
    const buttons = row.querySelectorAll("button[data-action]");
    // The row's buttons stay disabled once one has done its work: reload to act on it again.
    function act(action, run) {
      const button = row.querySelector('button[data-action="' + action + '"]');
      if (!button || !outcome) {
        return;
      }
      button.addEventListener("click", async () => {
        buttons.forEach((b) => { b.disabled = true; });
        showResult(outcome, "working", "Asking…");
        try {
          await run();
        } catch (error) {
          showResult(outcome, "failed", failureText(error));
          buttons.forEach((b) => { b.disabled = false; });
        }
      });
    }
    act("change-role", async () => {
      const role = row.querySelector('select[name="role"]').value;
      showPending(outcome, await adminPost(base + "/role", { role }));
    });
    act("remove-admin", async () => {
      showPending(outcome, await adminPost(base + "/remove"));
    });
    act("end-sessions", async () => {
      showResult(outcome, "working", "Follow your browser's passkey prompt…");
      await stepUp("end_sessions:" + row.dataset.adminId);
      const answer = (await adminPost(base + "/sessions/end")).json;
      showResult(outcome, "ended", "Ended " + answer.ended + " session(s): they sign in again with a passkey.");
    });
    act("cancel-removal", async () => {
      showResult(outcome, "working", "Follow your browser's passkey prompt…");
      await stepUp("cancel_removal:" + row.dataset.adminId);
      const answer = (await adminPost(base + "/removal/cancel")).json;
      showResult(outcome, "cancelled", "Removal cancelled: " + answer.name + " is " + answer.status
        + " again and signs in anew.");
    });
  });

  wireRevokeButtons('button[data-action="revoke-own-passkey"]', (b) => "revoke_passkey:" + b.dataset.id,
    (b) => "/admin/api/passkeys/" + encodeURIComponent(b.dataset.id) + "/revoke");

  // Adding a passkey: a step-up with a passkey the admin has, then the registration of the new
  // one (the browser's own WebAuthn JSON helpers, as on the sign-in pages).
  onFormSubmit("add-passkey", "Confirm with a passkey you have…", async (data, result) => {
    if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON) {
      throw new Error("This browser cannot use passkeys here; try a current browser.");
    }
    await stepUp("add_passkey");
    const options = (await adminPost("/admin/api/passkeys/options", { name: String(data.get("name")) })).json;
    showResult(result, "working", "Now create the new passkey…");
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.public_key),
    });
    const added = (await adminPost("/admin/api/passkeys", { credential: credential.toJSON() })).json;
    showResult(result, "added", "Added " + added.name + ". Reload the page to see it listed.");
  });
})();

// The requests page: Approve and Reject each run a step-up for this request, then the decision
// (an approved invitation's link is shown once, to the approver); Withdraw, one's own request,
// needs none. Each marks the row.
(function () {
  const rows = document.querySelectorAll("#requests tbody tr[data-request-id]");
  rows.forEach((row) => {
    const outcome = row.querySelector(".outcome");
    const path = "/admin/api/requests/" + row.dataset.requestId;
    const buttons = row.querySelectorAll("button[data-action]");
    function decide(action, run) {
      const button = row.querySelector('button[data-action="' + action + '"]');
      if (!button || !outcome) {
        return;
      }
      button.addEventListener("click", async () => {
        buttons.forEach((b) => { b.disabled = true; });
        row.dataset.state = "working";
        try {
          const said = await run();
          row.dataset.state = said.state;
          outcome.textContent = said.text;
          if (said.link) {
            const code = document.createElement("code");
            code.className = "invitation";
            code.textContent = said.link;
            outcome.append(" ", code);
          }
        } catch (error) {
          row.dataset.state = "failed";
          outcome.textContent = failureText(error);
          buttons.forEach((b) => { b.disabled = false; });
        }
      });
    }
    decide("approve", async () => {
      outcome.textContent = "Follow your browser's passkey prompt…";
      await stepUp("approve_request:" + row.dataset.requestId);
      const answer = (await adminPost(path + "/approve")).json;
      const invitation = answer.invitation;
      return {
        state: "approved",
        text: "Approved (" + answer.request.state + ")."
          + (invitation ? " Hand this one-time invitation link to the new admin (shown only now):" : ""),
        link: invitation
          ? location.origin + "/admin/invite?token=" + encodeURIComponent(invitation.token) : null,
      };
    });
    decide("reject", async () => {
      outcome.textContent = "Follow your browser's passkey prompt…";
      await stepUp("approve_request:" + row.dataset.requestId);
      await adminPost(path + "/reject");
      return { state: "rejected", text: "Rejected." };
    });
    decide("withdraw", async () => {
      await adminPost(path + "/cancel");
      return { state: "withdrawn", text: "Withdrawn." };
    });
  });
})();

// The policy page: "Ask for this change" sends every setting as a whole new policy (a
// `fatigue_policy` request); a second admin approves it on the requests page.
onFormSubmit("policy-change", "Asking…", async (data, result) => {
  const payload = {};
  data.forEach((value, name) => { payload[name] = Number(value); });
  showPending(result, await adminPost("/admin/api/requests/submit", { kind: "fatigue_policy", payload }));
});

// The audit page: "Verify now" walks the whole chain on the server (in the background) and
// follows it until it is done.
(function () {
  const button = document.querySelector('button[data-action="verify-chain"]');
  const result = document.getElementById("chain-result");
  if (!button || !result) {
    return;
  }
  const describe = (v) => {
    if (v.state === "intact") {
      return ["intact", "Intact: " + v.events + " events checked."];
    }
    if (v.state === "broken") {
      return ["broken", "Broken: " + (v.message || "at sequence number " + v.broken_at) + "."];
    }
    return [v.state, v.message || "The check could not finish."];
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    showResult(result, "running", "Walking the chain…");
    try {
      let verification = (await adminPost("/admin/api/audit/verifications")).json;
      while (verification.state === "running") {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const response = await fetch("/admin/api/audit/verification", { credentials: "same-origin" });
        verification = await response.json();
      }
      const [state, text] = describe(verification);
      showResult(result, state, text);
    } catch (error) {
      showResult(result, "failed", error.message);
    }
    button.disabled = false;
  });
})();
