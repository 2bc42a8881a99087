// The board's browser side: the API key, fragment loading, the live feed, clocks, actions.
// Plain JavaScript, no build step and no CDN: the page works on a closed network.
"use strict";

const KEY = "leadrouter-api-key";
const REMEMBERED = "leadrouter-board-"; // + a control's id: choices kept for this tab
const fragment = document.getElementById("fragment");
const statusLine = document.getElementById("status");
const indicator = document.getElementById("live-indicator");
let skewMs = 0; // server clock minus this browser's clock, from the fragment's data-now
let reloadTimer = null;
let latestLoad = 0; // a slow, older response must not overwrite a newer one

function authHeaders(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

function say(text) {
  statusLine.textContent = text;
}

async function problemText(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// -- fragments ------------------------------------------------------------------------------

// What the person changed but has not sent (a reject reason, a date being typed), by id:
// a live refresh must not undo it.
function unsentInputs() {
  const kept = {};
  for (const el of fragment.querySelectorAll("input[id], select[id]")) {
    const changed = el.tagName === "SELECT"
      ? [...el.options].some((o) => o.selected !== o.defaultSelected)
      : el.value !== el.defaultValue;
    if (changed) kept[el.id] = el.value;
  }
  return kept;
}

async function loadFragment() {
  const url = fragment.dataset.fragment + window.location.search;
  const load = ++latestLoad;
  fragment.setAttribute("aria-busy", "true");
  const response = await fetch(url, { headers: authHeaders() });
  if (load !== latestLoad) return;
  if (!response.ok) {
    fragment.innerHTML = "";
    const hint = response.status === 401 || response.status === 403 ? " Enter an API key above." : "";
    say(`Could not load: ${await problemText(response)}.${hint}`);
    fragment.setAttribute("aria-busy", "false");
    return;
  }
  const html = await response.text();
  if (load !== latestLoad) return;
  // read just before the swap: the person may have typed while the request was in flight
  const focused = document.activeElement && document.activeElement.id;
  const kept = unsentInputs();
  fragment.innerHTML = html;
  for (const [id, value] of Object.entries(kept)) {
    const el = document.getElementById(id);
    if (el) el.value = value;
  }
  for (const el of fragment.querySelectorAll("[data-remember]")) {
    const value = sessionStorage.getItem(REMEMBERED + el.id);
    if (value !== null && !(el.id in kept)) el.value = value;
  }
  fragment.setAttribute("aria-busy", "false");
  const stamped = fragment.querySelector("[data-now]");
  if (stamped) skewMs = Date.parse(stamped.dataset.now) - Date.now();
  if (focused) document.getElementById(focused)?.focus(); // keep keyboard users in place
  tick();
}

function scheduleReload() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadFragment, 100); // one reload for a burst of commits
}

// -- clocks ---------------------------------------------------------------------------------

function duration(seconds) {
  const sign = seconds < 0 ? "-" : "";
  let s = Math.floor(Math.abs(seconds));
  if (s < 3600) return `${sign}${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${sign}${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function tick() {
  const now = Date.now() + skewMs;
  for (const el of fragment.querySelectorAll(".countdown")) {
    const left = (Date.parse(el.dataset.due) - now) / 1000;
    const state = left <= 0 ? "breached" : now >= Date.parse(el.dataset.warn) ? "warning" : "ok";
    el.dataset.state = state;
    el.querySelector(".left").textContent = duration(Math.trunc(left));
    el.querySelector(".what").textContent = (state === "breached" ? "overdue to " : "to ") + el.dataset.clock;
    el.querySelector(".flag").textContent = { ok: "", warning: "Warning", breached: "Breached" }[state];
  }
  for (const el of fragment.querySelectorAll(".waited")) {
    el.textContent = duration((now - Date.parse(el.dataset.since)) / 1000);
  }
}

// -- live feed: server-sent events read with fetch, so the key goes in a header --------------

async function listen() {
  for (;;) {
    try {
      const response = await fetch("/board/events", { headers: authHeaders({ accept: "text/event-stream" }) });
      if (!response.ok) throw new Error(await problemText(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(message)?.[1];
          if (event === "ready") {
            indicator.dataset.state = "live";
            indicator.textContent = "Live";
            scheduleReload(); // whatever changed while we were not listening
          } else if (event === "change") {
            scheduleReload();
          }
        }
      }
    } catch (error) {
      console.warn("board feed:", error);
    }
    indicator.dataset.state = "reconnecting";
    indicator.textContent = "Reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// -- actions: the API's own endpoints ------------------------------------------------------

async function send(method, url, body, done, row) {
  const response = await fetch(url, {
    method,
    headers: authHeaders({ "content-type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    say(`Not done: ${await problemText(response)}`);
    return;
  }
  say(done);
  await loadFragment();
  // the pressed button may be gone (accepted): keep keyboard users on the same row
  const again = row && fragment.querySelector(`tr[data-handoff="${row}"]`);
  if (again) (again.querySelector("button") || again.querySelector("a"))?.focus();
}

fragment.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.action) {
    const id = button.dataset.handoff;
    const action = button.dataset.action;
    const author = fragment.querySelector("#acting-as");
    const body = author && author.value ? { rep_id: author.value } : {};
    if (action === "reject") body.reason = fragment.querySelector(`[data-reason-for="${id}"]`).value;
    if (action === "convert") body.converted_to = fragment.querySelector(`[data-stage-for="${id}"]`).value;
    send("POST", `/v1/handoffs/${encodeURIComponent(id)}/${action}`, body, `${action}: done`, id);
  } else if (button.dataset.availability) {
    const available = button.dataset.availability === "true";
    const rep = button.dataset.rep;
    send("PUT", `/v1/reps/${encodeURIComponent(rep)}/availability`, { available },
      `${button.dataset.repName} is now ${available ? "available" : "out of office"}`);
  }
});

// Filter and period forms change the page's query: bookmarkable, and the fragment follows it.
function applyForm(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
  loadFragment();
}
fragment.addEventListener("change", (event) => {
  if (event.target.matches("[data-remember]")) {
    sessionStorage.setItem(REMEMBERED + event.target.id, event.target.value);
  }
  const form = event.target.closest("form[data-keep-query]");
  if (form && form.id === "filters") applyForm(form);
});
fragment.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-keep-query]");
  if (form) {
    event.preventDefault();
    applyForm(form);
  }
});

// -- header forms --------------------------------------------------------------------------

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  if (input.value) sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  say("Key saved for this tab.");
  loadFragment();
});
document.getElementById("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  say("Key forgotten.");
  loadFragment();
});
document.getElementById("lead-search").addEventListener("submit", (event) => {
  event.preventDefault();
  let lead = document.getElementById("lead-search-input").value.trim();
  if (lead.includes("@") && !lead.includes(":")) lead = `email:${lead.toLowerCase()}`;
  window.location.href = `/board/leads/${encodeURIComponent(lead)}`;
});

loadFragment();
setInterval(tick, 1000);
listen();
