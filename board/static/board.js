// The town board's page script: renders what the server pushes, sends the CLI's actions.
// Every piece of user text goes in with textContent: never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("token")) localStorage.setItem("boardToken", params.get("token"));

function token() {
  return document.querySelector('meta[name="board-token"]').content || localStorage.getItem("boardToken") || "";
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function age(since) {
  if (!since) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (seconds < 120) return seconds + "s";
  if (seconds < 7200) return Math.round(seconds / 60) + "m";
  return Math.round(seconds / 3600) + "h";
}

function notice(text) {
  document.getElementById("notice").textContent = text;
}

async function act(key, action, body) {
  const answer = await fetch("/api/polecats/" + key + "/" + action, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Board-Token": token()},
    body: JSON.stringify(body || {}),
  });
  let said = answer.statusText;
  try { said = (await answer.json()).message; } catch (error) { /* not JSON: a proxy's page */ }
  notice(said);
  return answer.ok;
}

function actions(key) {
  const box = el("div", {class: "actions", "data-key": key});
  box.append(nudgeForm(key));
  const restart = el("button", {type: "button", class: "restart"}, "restart");
  restart.addEventListener("click", () => act(key, "restart"));
  const terminate = el("button", {type: "button", class: "terminate"}, "terminate");
  terminate.addEventListener("click", () => act(key, "terminate"));
  box.append(restart, terminate);
  return box;
}

function nudgeForm(key, form) {
  form = form || el("form", {class: "nudge"},
    el("input", {name: "message", placeholder: "a follow-up", maxlength: "4000"}),
    el("button", {type: "submit"}, "nudge"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = form.querySelector("input");
    if (await act(key, "nudge", {message: input.value})) input.value = "";
  });
  return form;
}

// --- the town page ---------------------------------------------------------------------------

const cells = new Map();

function cell(polecat) {
  const title = polecat.bead_title ? " " + polecat.bead_title : "";
  return el("div", {class: "cell phase-" + polecat.phase, "data-key": polecat.key, "data-phase": polecat.phase},
    el("a", {class: "name", href: "/polecats/" + polecat.key}, polecat.name),
    el("span", {class: "badge phase-" + polecat.phase}, polecat.phase),
    el("div", {class: "bead"}, el("span", {class: "id"}, polecat.bead), el("span", {class: "title"}, title)),
    el("div", {class: "meta"}, el("span", {class: "age", "data-since": polecat.since || ""}, age(polecat.since)),
      " ", el("span", {class: "cost"}, polecat.cost)),
    el("div", {class: "last"}, polecat.last_line),
    actions(polecat.key));
}

function putCell(polecat) {
  const grid = document.getElementById("polecats");
  const fresh = cell(polecat);
  const old = cells.get(polecat.key);
  if (old) old.replaceWith(fresh); else grid.append(fresh);
  cells.set(polecat.key, fresh);
}

function rows(id, items, columns) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...items.map((item) => el("tr", {}, ...columns(item).map((value) => el("td", {}, value)))));
}

function convoys(items) {
  document.getElementById("convoys").replaceChildren(...items.map((convoy) => {
    const done = convoy.total ? Math.round(100 * convoy.completed / convoy.total) : 0;
    const bar = el("progress", {max: String(convoy.total || 1), value: String(convoy.completed)});
    return el("div", {class: "convoy phase-" + convoy.phase, "data-key": convoy.key},
      el("span", {class: "name"}, convoy.name), " ", el("span", {class: "badge"}, convoy.phase), " ", bar,
      " ", convoy.completed + "/" + convoy.total + " (" + done + "%), " + convoy.failed + " failed, "
        + convoy.in_progress + " in progress " + (convoy.cost || ""));
  }));
}

function queue(items) {
  const body = document.querySelector("#queue tbody");
  body.replaceChildren(...items.map((entry) => {
    const row = el("tr", {}, el("td", {}, entry.refinery), el("td", {}, entry.branch), el("td", {}, entry.polecat),
      el("td", {}, entry.status + (entry.approved ? " (approved)" : "")));
    const cellOfButton = el("td", {});
    if (!entry.approved) {
      const approve = el("button", {type: "button", class: "approve"}, "approve");
      approve.addEventListener("click", async () => {
        const answer = await fetch("/api/refineries/" + entry.refinery + "/approve", {
          method: "POST", headers: {"Content-Type": "application/json", "X-Board-Token": token()},
          body: JSON.stringify({branch: entry.branch}),
        });
        notice((await answer.json()).message);
      });
      cellOfButton.append(approve);
    }
    row.append(cellOfButton);
    return row;
  }));
}

function showTown(town) {
  cells.clear();
  document.getElementById("polecats").replaceChildren();
  town.polecats.forEach(putCell);
  rows("rigs", town.rigs, (rig) => [rig.name, rig.phase, rig.polecats]);
  convoys(town.convoys);
  queue(town.queue);
  rows("alerts", town.alerts, (alert) => [alert.witness, alert.polecat, alert.type, age(alert.since), alert.message]);
}

function applyChange(change) {
  if (change.town) return showTown(change.town);
  if (change.polecats) {
    change.polecats.upsert.forEach(putCell);
    for (const key of change.polecats.remove) { cells.get(key)?.remove(); cells.delete(key); }
  }
  if (change.rigs) rows("rigs", change.rigs, (rig) => [rig.name, rig.phase, rig.polecats]);
  if (change.convoys) convoys(change.convoys);
  if (change.queue) queue(change.queue);
  if (change.alerts) rows("alerts", change.alerts, (a) => [a.witness, a.polecat, a.type, age(a.since), a.message]);
}

// --- one polecat's page ----------------------------------------------------------------------

let shownState = null;

async function showPolecat(polecat) {
  const badge = document.getElementById("phase");
  badge.textContent = polecat.phase;
  badge.className = "badge phase-" + polecat.phase;
  document.getElementById("message").textContent = polecat.message;
  const state = polecat.phase + "/" + polecat.follow_ups;
  if (shownState !== null && state !== shownState) {
    // A new phase or follow-up: its follow-ups, conditions and diff as the server renders them now.
    const page = new DOMParser().parseFromString(await (await fetch(location.pathname)).text(), "text/html");
    const details = page.getElementById("details");
    if (details) document.getElementById("details").replaceWith(document.adoptNode(details));
  }
  shownState = state;
}

function follow(onTown, onCell) {
  const live = document.getElementById("live");
  const stream = new EventSource("/events");
  stream.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  stream.addEventListener("error", () => { live.textContent = "reconnecting"; live.className = "live"; });
  stream.addEventListener("town", (event) => onTown(JSON.parse(event.data)));
  stream.addEventListener("change", (event) => onCell(JSON.parse(event.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "town") {
    showTown(JSON.parse(document.getElementById("town-data").textContent));
    follow(showTown, applyChange);
    setInterval(() => document.querySelectorAll(".age").forEach((span) => { span.textContent = age(span.dataset.since); }), 5000);
  } else if (page === "polecat") {
    const key = document.body.dataset.key;
    const box = document.querySelector(".actions");
    nudgeForm(key, box.querySelector("form.nudge"));
    box.querySelector(".restart").addEventListener("click", () => act(key, "restart"));
    box.querySelector(".terminate").addEventListener("click", () => act(key, "terminate"));
    const log = document.getElementById("log");
    const output = new EventSource("/events/polecats/" + key + "/log?from=" + log.dataset.from);
    output.addEventListener("log", (event) => {
      const lines = (log.textContent + JSON.parse(event.data)).split("\n");
      log.textContent = lines.slice(-500).join("\n");  // the tail only: a long run stays light
    });
    const mine = (polecat) => polecat.key === key;
    follow((town) => town.polecats.filter(mine).forEach(showPolecat),
      (change) => (change.town ? change.town.polecats : change.polecats ? change.polecats.upsert : []).filter(mine).forEach(showPolecat));
  }
});
