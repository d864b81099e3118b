// The live page of image-transfer: polls api/overview, redraws each job's figures and tables,
// and fetches each job's chart (SVG drawn by the server). Every value from the journal goes
// into the page as text (textContent), never as markup; the chart is parsed as SVG, not HTML.
"use strict";

const jobs = new Map(); // job name -> {section, tables, chart, lastTables, lastSvg, versions}
let updates = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n) || 0;
  for (const unit of units) {
    if (Math.abs(value) < 1024 || unit === "TiB") {
      return unit === "B" ? `${value.toFixed(0)} B` : `${value.toFixed(1)} ${unit}`;
    }
    value /= 1024;
  }
  return `${value}`;
}

const rate = (n) => `${bytes(n)}/s`;

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function when(stamp) {
  if (!stamp) return "–";
  return `${stamp.slice(0, 10)} ${stamp.slice(11, 19)} UTC`;
}

function ago(stamp, now) {
  if (!stamp || !now) return "–";
  const seconds = (Date.parse(now) - Date.parse(stamp)) / 1000;
  return `${Math.max(0, Math.round(seconds))} s ago`;
}

function figure(label, value, extra) {
  return el("div", { class: "figure" }, el("span", { class: "label" }, label),
    el("span", { class: "value" }, value), extra);
}

function table(headers, rows, empty) {
  if (rows.length === 0) return el("p", { class: "none" }, empty);
  const head = el("tr", {}, ...headers.map(([text, cls]) => el("th", { class: cls }, text)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function summary(job, now) {
  const counts = el("div", { class: "value counts" });
  for (const [state, count] of Object.entries(job.states)) {
    counts.append(el("span", { class: "count", "data-state": state }, el("b", {}, count), ` ${state}`));
  }
  const progress = el("progress", { max: job.bytes_total || 1, value: job.bytes_done });
  const last = job.last_run;
  const lastText = last
    ? `#${last.id} ${last.worker}: ${when(last.started_at)} → ` +
      (last.finished_at ? `${when(last.finished_at)} (${last.outcome})` : "running")
    : "never run";
  return el("div", { class: "summary" },
    el("div", { class: "figure states" }, el("span", { class: "label" }, "entries by state"), counts),
    figure("bytes done / total", `${bytes(job.bytes_done)} / ${bytes(job.bytes_total)}`, progress),
    figure("current rate", rate(job.rate)),
    figure("ETA", job.eta_seconds === null ? "–" : duration(job.eta_seconds)),
    el("div", { class: "figure wide" }, el("span", { class: "label" }, "last run"),
      el("span", { class: "value" }, lastText)));
}

function workersTable(job, now) {
  const rows = job.workers.map((w) => el("tr", { "data-worker": w.worker },
    el("td", {}, w.worker),
    el("td", { class: `state-${w.state}` }, w.state === "finished" ? `finished (${w.outcome})` : w.state),
    el("td", { class: "num" }, `#${w.run_id}`),
    el("td", {}, ago(w.last_seen_at, now)),
    el("td", { class: "num" }, `${w.images_done} (${w.images_failed} failed)`),
    el("td", { class: "num" }, bytes(w.bytes_done)),
    el("td", { class: "num" }, rate(w.rate)),
    el("td", {}, w.leases ? `${w.leases} leased until ${when(w.lease_expires)}` :
      (w.state === "running" ? "holds no lease" : "–")),
    el("td", { class: "num" }, w.holds.length)));
  return table([["worker"], ["state"], ["run", "num"], ["last seen"], ["images done", "num"],
    ["bytes", "num"], ["rate", "num"], ["lease"], ["holds", "num"]], rows, "no worker recently");
}

function holdsTable(job) {
  const rows = [];
  for (const w of job.workers) {
    for (const h of w.holds) {
      rows.push(el("tr", { "data-worker": w.worker, "data-source": h.source_id },
        el("td", {}, w.worker), el("td", {}, h.name), el("td", {}, h.target),
        el("td", { class: "num" }, `${bytes(h.done)} / ${bytes(h.total)}`),
        el("td", {}, el("progress", { max: h.total || 1, value: h.done })),
        el("td", { class: "num" }, rate(h.rate)), el("td", {}, h.state),
        el("td", {}, h.lease_expires ? `until ${when(h.lease_expires)}` : "–")));
    }
  }
  return table([["worker"], ["image"], ["target"], ["bytes", "num"], ["progress"],
    ["rate", "num"], ["state"], ["lease"]], rows, "nothing held right now");
}

function failuresTable(job) {
  const rows = job.failures.map((f) => el("tr", { class: "failed", "data-source": f.source_id },
    el("td", {}, f.image), el("td", {}, f.target), el("td", {}, f.step || "–"),
    el("td", { class: "reason" }, f.reason || "–"), el("td", { class: "num" }, f.attempts),
    el("td", {}, f.retryable ? "transient" : "needs a person")));
  const shown = job.failures_total > job.failures.length
    ? el("p", { class: "none" }, `${job.failures.length} of ${job.failures_total} shown`) : null;
  const body = table([["image"], ["target"], ["step"], ["reason"], ["attempts", "num"], ["kind"]],
    rows, "no failure");
  return shown ? el("div", {}, body, shown) : body;
}

function runsTable(job) {
  const rows = job.runs.map((r) => el("tr", {},
    el("td", { class: "num" }, `#${r.id}`), el("td", {}, r.worker), el("td", {}, when(r.started_at)),
    el("td", {}, r.finished_at ? when(r.finished_at) : "running"), el("td", {}, r.outcome || "–")));
  return table([["run", "num"], ["worker"], ["started"], ["ended"], ["outcome"]], rows, "no run yet");
}

function jobView(name) {
  let view = jobs.get(name);
  if (view) return view;
  const chart = el("div", { class: "chart-box", "data-version": 0 });
  const tables = el("div", { class: "tables" });
  const section = el("section", { class: "job", "data-job": name, "data-version": 0 },
    el("h2", {}, `job ${name}`), tables, el("h3", { class: "chart-title" }, "throughput over time"),
    chart);
  document.getElementById("jobs").append(section);
  view = { section, tables, chart, lastTables: null, lastSvg: null, tableVersion: 0, chartVersion: 0 };
  jobs.set(name, view);
  return view;
}

function renderJob(job, now) {
  const view = jobView(job.job);
  const content = el("div", { class: "tables" }, summary(job, now),
    el("h3", {}, "workers"), workersTable(job, now),
    el("h3", {}, "held now"), holdsTable(job),
    el("h3", {}, `failures (${job.failures_total})`), failuresTable(job),
    el("h3", {}, "runs"), runsTable(job));
  view.section.querySelector(".chart-title").textContent =
    `throughput over time (${job.samples} samples)`;
  view.tables.replaceWith(content);
  view.tables = content;
  const facts = JSON.stringify([job.states, job.bytes_done, job.workers, job.failures, job.runs]);
  if (facts !== view.lastTables) {
    view.lastTables = facts;
    view.tableVersion += 1;
    view.section.dataset.version = view.tableVersion;
  }
}

async function renderChart(name) {
  const view = jobView(name);
  const answer = await fetch(`api/jobs/${encodeURIComponent(name)}/chart.svg`, { cache: "no-store" });
  if (!answer.ok) throw new Error(`chart of ${name}: ${answer.status}`);
  const text = await answer.text();
  if (text === view.lastSvg) return;
  const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = parsed.documentElement;
  if (svg.nodeName !== "svg") throw new Error(`chart of ${name}: not SVG`);
  view.chart.replaceChildren(document.importNode(svg, true));
  view.lastSvg = text;
  view.chartVersion += 1;
  view.chart.dataset.version = view.chartVersion;
}

async function refresh() {
  const status = document.getElementById("status");
  let wait = 2000;
  try {
    const answer = await fetch("api/overview", { cache: "no-store" });
    if (!answer.ok) throw new Error(`${answer.status}: ${(await answer.text()).trim()}`);
    const data = await answer.json();
    wait = (data.refresh_seconds || 2) * 1000;
    document.getElementById("where").textContent =
      `journal ${data.journal}${data.shared ? " (shared by every worker)" : " (this host)"}`;
    for (const job of data.jobs) renderJob(job, data.generated_at);
    await Promise.all(data.jobs.map((job) => renderChart(job.job)));
    updates += 1;
    document.body.dataset.updates = updates;
    status.textContent = `updated ${when(data.generated_at)}`;
    status.classList.remove("error");
  } catch (error) {
    status.textContent = `cannot refresh: ${error.message}`;
    status.classList.add("error");
  }
  setTimeout(refresh, wait);
}

document.addEventListener("DOMContentLoaded", refresh);
