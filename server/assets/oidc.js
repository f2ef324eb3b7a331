// Countersign OIDC sign-in page: waits for the answer (long-poll on the sign-in's status, with
// this browser's cookie), then posts the finish form, which sends the browser back to the
// application. No build step, no dependencies.
"use strict";
(function () {
  const form = document.getElementById("finish");
  const status = document.getElementById("status");
  if (!form || !status) {
    return;
  }

  // "Use a passkey instead" cancels the push: its answer must not finish the sign-in.
  let switching = false;
  const instead = document.getElementById("passkey-instead");
  if (instead) {
    instead.addEventListener("submit", () => {
      switching = true;
    });
  }

  async function follow() {
    for (;;) {
      if (switching) {
        return;
      }
      let state = "pending";
      try {
        const response = await fetch(form.dataset.status + "?wait=25", { credentials: "same-origin" });
        if (!response.ok && !switching) {
          // Over or not this browser's: the finish answers with the page that says so.
          form.submit();
          return;
        }
        state = (await response.json()).state;
      } catch (error) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        continue;
      }
      if (switching) {
        return;
      }
      if (state !== "pending") {
        status.textContent = state === "approved" ? "Confirmed. Returning to the application…" : "Returning to the application…";
        form.submit();
        return;
      }
    }
  }

  status.textContent = "Waiting for your answer…";
  follow();
})();
