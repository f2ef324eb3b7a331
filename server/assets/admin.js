// Countersign admin pages. No inline script (CSP): everything the pages do live is here.
// The overview's alert list follows /admin/api/events (server-sent events) and, when an alert
// names a user the under-attack table does not list yet, re-reads /admin/api/overview and
// redraws the table. Text is always set with textContent, never parsed as HTML.
"use strict";

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
