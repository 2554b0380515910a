// The gpumix dashboard: reads the plan API every few seconds and draws what it says.
// No framework and no third-party code: the page must work with nothing but the operator's
// own port, and every value from the API is written with textContent (never innerHTML), so a
// service or pool name cannot inject markup.
"use strict";

const API = "api/v1";
const REFRESH_MS = 5000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const money = (value) => (value === null || value === undefined ? "–" : `$${value.toFixed(2)}/h`);
const signed = (value) => (value === null || value === undefined ? "" :
  `${value >= 0 ? "+" : "−"}$${Math.abs(value).toFixed(2)}/h`);
const key = (service) => `${service.namespace}/${service.name}`;

function row(cells, header = false) {
  return el("tr", {}, ...cells.map((cell) => {
    const [text, cls] = Array.isArray(cell) ? cell : [cell, ""];
    return el(header ? "th" : "td", cls ? { class: cls } : {}, text);
  }));
}

// Pools × services: GPUs each service's plan holds in each pool, then what is left.
function drawFleet(fleet, services) {
  const table = document.getElementById("fleet");
  const names = services.map(key);
  table.replaceChildren(row([["pool", "text"], ["GPU", "text"], ["capacity", "text"],
    "$/GPU-h", "GPUs", "allocated", "available", ...names], true));
  for (const pool of fleet.pools) {
    const held = Object.fromEntries(pool.holdings.map((h) => [key(h), h.gpus]));
    const tr = row([[pool.name, "text"], [pool.gpuType, "text"], [pool.capacityType, "text"],
      pool.pricePerGPUHour === null ? "–" : pool.pricePerGPUHour.toFixed(2),
      pool.gpus, pool.allocatedGPUs, pool.availableGPUs, ...names.map((n) => held[n] || "")]);
    tr.dataset.pool = pool.name;
    table.append(tr);
  }
}

// One pair of bars per service: the plan's cost and the best homogeneous baseline's.
function drawCosts(services) {
  const chart = document.getElementById("cost-chart");
  const rowHeight = 38;
  const left = 190;
  const width = 980;
  const labelRoom = 360; // right of the longest bar: "$24.64/h vs $28.56/h homogeneous:… (−13.7 %)"
  const priced = services.filter((s) => s.costPerHour !== null);
  const top = Math.max(1, ...priced.flatMap((s) => [s.costPerHour,
    s.baseline ? s.baseline.costPerHour : 0]));
  chart.setAttribute("viewBox", `0 0 ${width} ${Math.max(rowHeight, priced.length * rowHeight)}`);
  chart.setAttribute("width", width);
  chart.setAttribute("height", Math.max(rowHeight, priced.length * rowHeight));
  chart.replaceChildren();
  const scale = (value) => ((width - left - labelRoom) * value) / top;
  priced.forEach((service, index) => {
    const y = index * rowHeight;
    chart.append(svg("text", { x: 0, y: y + 16 }, key(service)));
    const plan = svg("rect", { x: left, y: y + 4, height: 13, width: scale(service.costPerHour),
      class: "bar-plan" });
    plan.dataset.service = key(service);
    plan.dataset.cost = service.costPerHour;
    chart.append(plan);
    let label = money(service.costPerHour);
    if (service.baseline) {
      chart.append(svg("rect", { x: left, y: y + 19, height: 9,
        width: scale(service.baseline.costPerHour), class: "bar-baseline" }));
      label += ` vs ${money(service.baseline.costPerHour)} ${service.baseline.name}`;
      if (service.savingsPercent !== null) {
        // 0 % shows as such, not as "−0.0 %"
        const saved = service.savingsPercent;
        label += saved >= 0.05 ? ` (−${saved.toFixed(1)} %)` : " (no saving)";
      }
    }
    chart.append(svg("text", { x: left + scale(Math.max(service.costPerHour,
      service.baseline ? service.baseline.costPerHour : 0)) + 6, y: y + 16 }, label));
  });
}

function drawConfigurations(services) {
  const box = document.getElementById("configurations");
  box.replaceChildren();
  for (const service of services) {
    const ready = service.feasible === false ? ["infeasible", "bad"] : ["", ""];
    box.append(el("h3", {}, `${key(service)} `, el("span", { class: ready[1] }, ready[0])));
    const table = el("table");
    table.append(row([["deployment", "text"], ["GPU", "text"], "TP", ["format", "text"],
      "ready/replicas", "$/h", ["class shares", "text"]], true));
    for (const entry of service.plan) {
      const shares = Object.entries(entry.assignment)
        .filter(([, share]) => share > 0)
        .map(([name, share]) => `${name} ${(100 * share).toFixed(0)} %`).join(", ");
      table.append(row([[entry.deployment || entry.pool, "text"],
        [`${entry.gpuType}/${entry.capacityType}`, "text"], entry.tensorParallel,
        [entry.weightFormat, "text"], `${entry.readyReplicas ?? "?"}/${entry.replicas}`,
        entry.costPerHour.toFixed(2), [shares, "text"]]));
    }
    box.append(table);
    for (const reason of service.reasons) box.append(el("p", { class: "muted" }, reason));
  }
}

function drawChanges(services) {
  const changes = services.flatMap((s) => s.planChanges.map((c) => ({ ...c, service: key(s) })))
    .sort((a, b) => (a.time < b.time ? 1 : -1));
  const table = document.getElementById("changes");
  table.replaceChildren(row([["time", "text"], ["service", "text"], "$/h",
    ["change and cause", "text"]], true));
  for (const change of changes) {
    table.append(row([[change.time, "text"], [change.service, "text"],
      `${money(change.costBefore)} → ${money(change.costAfter)}`, [change.message, "text"]]));
  }
}

function drawWhatIf(answer) {
  const box = document.getElementById("whatif-answer");
  box.replaceChildren(el("p", {}, `${answer.status} in ${answer.solveSeconds.toFixed(2)} s: `
    + `${money(answer.runningCostPerHour)} → ${money(answer.totalCostPerHour)} `
    + `(${signed(answer.costDeltaPerHour)})`));
  const table = el("table");
  table.append(row([["service", "text"], ["pool", "text"], "TP", ["format", "text"], "running",
    "planned", "delta"], true));
  for (const service of answer.services) {
    if (!service.feasible) {
      table.append(row([[key(service), "text"], [service.reasons.join("; "), "text bad"]]));
    }
    for (const change of service.changes) {
      const tr = row([[key(service), "text"], [change.pool, "text"], change.tensorParallel,
        [change.weightFormat, "text"], change.runningReplicas, change.plannedReplicas,
        change.delta > 0 ? `+${change.delta}` : change.delta]);
      tr.dataset.change = `${key(service)} ${change.pool} tp${change.tensorParallel} `
        + `${change.weightFormat} ${change.delta}`;
      table.append(tr);
    }
  }
  box.append(table);
}

async function getJSON(path, options) {
  const response = await fetch(`${API}/${path}`, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

async function refresh() {
  try {
    const [fleet, list] = await Promise.all([getJSON("fleet"), getJSON("services")]);
    const services = list.services;
    drawFleet(fleet, services);
    drawCosts(services);
    drawConfigurations(services);
    drawChanges(services);
    document.getElementById("summary").textContent =
      `${services.length} services, ${fleet.pools.length} pools, ${money(fleet.totalCostPerHour)}`;
    document.getElementById("updated").textContent = fleet.plannedAt
      ? `planned at ${fleet.plannedAt}` : "not planned yet";
  } catch (error) {
    document.getElementById("summary").textContent = `cannot read the API: ${error.message}`;
  }
}

async function runWhatIf() {
  const box = document.getElementById("whatif-answer");
  box.textContent = "planning…";
  try {
    const body = document.getElementById("whatif-body").value;
    drawWhatIf(await getJSON("whatif", { method: "POST", body,
      headers: { "content-type": "application/json" } }));
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad" }, error.message));
  }
}

document.getElementById("whatif-form").addEventListener("submit", (event) => {
  event.preventDefault();
  runWhatIf();
});

// A link can carry a what-if to run at once: /#whatif={"removedPools":["l4-spot"]}
const WHATIF_HASH = "#whatif=";
if (location.hash.startsWith(WHATIF_HASH)) {
  document.getElementById("whatif-body").value =
    decodeURIComponent(location.hash.slice(WHATIF_HASH.length));
  runWhatIf();
}

refresh();
setInterval(refresh, REFRESH_MS);
