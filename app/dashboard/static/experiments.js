/* The experiment list: GET /v1/experiments (every page), one row per experiment. */
"use strict";

(async () => {
  const { el, date, getJSON, showError } = Croupier;
  const status = document.getElementById("status");
  const tableNode = document.getElementById("experiments");
  const body = tableNode.querySelector("tbody");
  try {
    const items = [];
    let cursor = null;
    for (let page = 0; page < 50; page++) {
      const url = "/v1/experiments?limit=200" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const data = await getJSON(url);
      items.push(...data.items);
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    if (items.length === 0) {
      status.textContent = "No experiments yet. Create one with POST /v1/experiments.";
      return;
    }
    for (const e of items) {
      const href = "/dashboard/experiments/" + encodeURIComponent(e.key);
      const tr = body.appendChild(el("tr"));
      const keyCell = tr.appendChild(el("td"));
      keyCell.appendChild(el("a", { href }, e.key));
      tr.appendChild(el("td", { class: "text" }, e.name));
      tr.appendChild(el("td", { class: "status-" + e.status }, e.status));
      tr.appendChild(el("td", {}, e.policy && e.policy.type ? e.policy.type : "—"));
      tr.appendChild(el("td", {}, date(e.started_at)));
      tr.appendChild(el("td")).appendChild(el("a", { href }, "open report"));
    }
    status.textContent = items.length + (items.length === 1 ? " experiment" : " experiments");
    tableNode.hidden = false;
  } catch (err) {
    showError(status, err);
  }
})();
