// The emulator's inspector: every run, newest first, and one run's windows on a timeline.
// It polls GET /_emulator/overview?since=VERSION and redraws when something was stored.
// Everything a client sent (emails, activity names, ids) is put in the page as text,
// never as markup.
"use strict";

const POLL_MS = 500;
const SVG = "http://www.w3.org/2000/svg";

const state = { version: null, runs: [], problems: [], picked: null, pickedByHand: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (name === "width") node.style.width = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  const sign = ms < 0 ? "-" : "";
  let rest = Math.abs(ms);
  // Under a second, in ms: a 40 ms gap is not "0.0 s".
  if (rest < 1000) return `${sign}${Math.round(rest)} ms`;
  if (rest < 60000) return `${sign}${(rest / 1000).toFixed(1)} s`;
  const hours = Math.floor(rest / 3600000);
  rest -= hours * 3600000;
  const minutes = Math.floor(rest / 60000);
  const seconds = Math.round((rest - minutes * 60000) / 1000);
  if (hours) return `${sign}${hours} h ${String(minutes).padStart(2, "0")} min`;
  return `${sign}${minutes} min ${String(seconds).padStart(2, "0")} s`;
}

function instant(text) {
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

function clock(text) {
  const ms = instant(text);
  return ms === null ? String(text) : new Date(ms).toISOString().slice(11, 23);
}

function shortId(runId) {
  return runId.length > 13 ? `${runId.slice(0, 8)}…` : runId;
}

// ── the list of runs ────────────────────────────────────────────────────────────────

function drawRuns() {
  const table = document.getElementById("runs");
  const body = table.querySelector("tbody");
  document.getElementById("no-runs").hidden = state.runs.length > 0;
  table.hidden = state.runs.length === 0;
  body.replaceChildren(
    ...state.runs.map((run) => {
      const row = el(
        "tr",
        { "data-run-id": run.runId, title: run.runId },
        el("td", { class: "mono" }, shortId(run.runId)),
        // Names as long as a client sends them: cut short, in full on hover.
        el("td", { class: "text", title: run.students.join(", ") }, run.students.join(", ")),
        el("td", { class: "text", title: run.activities.join(", ") }, run.activities.join(", ")),
        el("td", { class: "text", title: run.course || "" }, run.course || ""),
        el("td", { class: "num" }, duration(run.activeMs)),
        el("td", { class: "num" }, duration(run.inactiveMs)),
        el("td", { class: "num" }, run.windows),
        el("td", { class: "num" }, run.sessions),
        el("td", {}, run.completed ? `yes, ${clock(run.completedAt || "")}` : "no"),
        el("td", { class: "problems" }, run.problems.length ? run.problems.join(", ") : "none"),
      );
      if (run.problems.length) row.classList.add("has-problem");
      if (run.runId === state.picked) row.classList.add("picked");
      row.addEventListener("click", () => pick(run.runId, true));
      return row;
    }),
  );
}

function pick(runId, byHand) {
  state.picked = runId;
  state.pickedByHand = state.pickedByHand || byHand;
  if (byHand) history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
  drawRuns();
  loadRun();
}

// ── one run ─────────────────────────────────────────────────────────────────────────

async function loadRun() {
  const runId = state.picked;
  if (!runId) return;
  const response = await fetch(`runs/${encodeURIComponent(runId)}`, { cache: "no-store" });
  if (!response.ok || runId !== state.picked) return;
  drawRun(await response.json());
}

function completionsOf(run) {
  return run.events
    .filter((event) => event.kind === "completion" && event.endedAt)
    .map((event) => event.endedAt);
}

function drawRun(run) {
  const section = document.getElementById("run");
  section.hidden = false;
  section.dataset.runId = run.runId;
  document.getElementById("run-title").textContent = `Run ${run.runId}`;
  const completions = completionsOf(run);
  const summary = state.runs.find((listed) => listed.runId === run.runId);
  const facts = [
    ["student", run.students.join(", ")],
    ["activity", run.activities.join(", ")],
    ["course", summary ? summary.course || "" : ""],
    ["active", duration(run.activeMs)],
    ["paused", duration(run.inactiveMs)],
    ["windows", `${run.windows.length} in ${run.sessions} session(s)`],
    ["completed", completions.length ? completions.map(clock).join(", ") : "no"],
  ];
  document
    .getElementById("run-facts")
    .replaceChildren(...facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
  const problems = state.problems.filter((problem) => problem.runId === run.runId);
  drawProblems(problems);
  const marked = new Set(problems.flatMap((p) => p.windows.map((w) => w.seq)));
  drawTimeline(run, completions, marked);
  drawWindows(run, completions, marked);
}

function drawProblems(problems) {
  const box = document.getElementById("problems");
  if (!problems.length) {
    box.replaceChildren(el("p", { class: "ok" }, "No problem on this run."));
    return;
  }
  box.replaceChildren(
    ...problems.map((problem) =>
      el(
        "div",
        { class: "problem", "data-rule": problem.rule, role: "alert" },
        el("div", { class: "rule" }, problem.rule),
        el("div", { class: "evidence" }, problem.evidence),
        problem.windows.length
          ? el(
              "ul",
              {},
              ...problem.windows.map((w) =>
                el("li", { class: "mono" }, `${clock(w.startedAt)} – ${clock(w.endedAt)}`),
              ),
            )
          : null,
        el("div", { class: "fix" }, el("strong", {}, "Fix: "), problem.fix),
      ),
    ),
  );
}

// Gaps and overlaps between each window and the furthest end seen before it.
function stretches(windows) {
  const found = [];
  let furthest = null;
  for (const window of windows) {
    const start = instant(window.startedAt);
    const end = instant(window.endedAt);
    if (start === null || end === null) continue;
    if (furthest !== null && start > furthest) found.push({ kind: "gap", from: furthest, to: start, before: window.seq });
    if (furthest !== null && start < furthest) {
      found.push({ kind: "overlap", from: start, to: Math.min(end, furthest), before: window.seq });
    }
    furthest = furthest === null ? end : Math.max(furthest, end);
  }
  return found;
}

function drawTimeline(run, completions, marked) {
  const box = document.getElementById("timeline");
  const spans = run.windows
    .map((w) => ({ w, start: instant(w.startedAt), end: instant(w.endedAt) }))
    .filter((s) => s.start !== null && s.end !== null);
  const done = completions.map(instant).filter((ms) => ms !== null);
  if (!spans.length) {
    box.replaceChildren(el("p", { class: "empty" }, "No heartbeat window on this run."));
    return;
  }
  const from = Math.min(...spans.map((s) => s.start), ...done);
  const to = Math.max(...spans.map((s) => s.end), ...done);
  const width = 1000;
  const x = (ms) => 10 + ((ms - from) / Math.max(1, to - from)) * (width - 20);
  const image = svg("svg", { viewBox: `0 0 ${width} 86`, role: "img", "aria-label": "timeline" });
  const hatch = svg("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  hatch.append(svg("rect", { width: 6, height: 6, fill: "#e9ecef" }), svg("rect", { width: 2, height: 6, fill: "#ced4da" }));
  const defs = svg("defs", {});
  defs.append(hatch);
  image.append(defs);
  for (const stretch of stretches(run.windows)) {
    const shape = stretch.kind === "gap"
      ? { y: 14, height: 26, fill: "url(#hatch)" }
      : { y: 44, height: 10, fill: "#c92a2a" };
    image.append(
      svg("rect", { class: stretch.kind, x: x(stretch.from), width: Math.max(1, x(stretch.to) - x(stretch.from)), ...shape }),
    );
  }
  for (const { w, start, end } of spans) {
    const total = w.elapsedMs + w.pausedMs;
    const split = total > 0 ? start + ((end - start) * w.elapsedMs) / total : end;
    const group = svg("g", { class: "window", "data-seq": w.seq });
    group.append(
      svg("rect", { x: x(start), y: 14, width: Math.max(1, x(split) - x(start)), height: 26, fill: "#2f9e44" }),
      svg("rect", { x: x(split), y: 14, width: Math.max(0, x(end) - x(split)), height: 26, fill: "#adb5bd" }),
    );
    if (marked.has(w.seq)) {
      group.append(svg("rect", { x: x(start), y: 12, width: Math.max(1, x(end) - x(start)), height: 30, fill: "none", stroke: "#c92a2a", "stroke-width": 2 }));
    }
    const title = svg("title", {});
    title.textContent = `${clock(w.startedAt)} – ${clock(w.endedAt)}: ${duration(w.elapsedMs)} active, ${duration(w.pausedMs)} paused`;
    group.append(title);
    image.append(group);
  }
  for (const ms of done) {
    image.append(svg("line", { class: "completion", x1: x(ms), x2: x(ms), y1: 4, y2: 58, stroke: "#1c7ed6", "stroke-width": 3 }));
  }
  for (const [ms, anchor] of [[from, "start"], [to, "end"]]) {
    const label = svg("text", { class: "axis", x: x(ms), y: 76, "text-anchor": anchor });
    label.textContent = clock(new Date(ms).toISOString());
    image.append(label);
  }
  box.replaceChildren(image);
}

function drawWindows(run, completions, marked) {
  const markers = new Map();
  for (const stretch of stretches(run.windows)) {
    const text = stretch.kind === "gap"
      ? `gap of ${duration(stretch.to - stretch.from)}`
      : `overlap of ${duration(stretch.to - stretch.from)} with an earlier window`;
    markers.set(stretch.before, el("li", { class: `marker ${stretch.kind}` }, text));
  }
  const done = completions.map(instant).filter((ms) => ms !== null).sort((a, b) => a - b);
  const items = [];
  let completionShown = false;
  run.windows.forEach((w, index) => {
    const start = instant(w.startedAt);
    if (!completionShown && done.length && start !== null && start >= done[0]) {
      items.push(el("li", { class: "marker completion" }, `completed at ${clock(new Date(done[0]).toISOString())}`));
      completionShown = true;
    }
    if (markers.has(w.seq)) items.push(markers.get(w.seq));
    const total = Math.max(1, w.elapsedMs + w.pausedMs);
    const bar = el(
      "div",
      { class: "bar" },
      el("span", { class: "active", width: `${(100 * w.elapsedMs) / total}%` }),
      el("span", { class: "paused", width: `${(100 * w.pausedMs) / total}%` }),
    );
    const item = el(
      "li",
      { "data-seq": w.seq },
      el("span", { class: "mono" }, `#${index + 1}`),
      el("span", { class: "mono" }, `${clock(w.startedAt)} – ${clock(w.endedAt)}`),
      el("span", {}, `${duration(w.elapsedMs)} active`),
      el("span", {}, `${duration(w.pausedMs)} paused`),
      bar,
    );
    if (marked.has(w.seq)) item.classList.add("in-problem");
    items.push(item);
  });
  if (!completionShown && done.length) {
    items.push(el("li", { class: "marker completion" }, `completed at ${clock(new Date(done[0]).toISOString())}`));
  }
  document.getElementById("windows").replaceChildren(...items);
}

// ── polling ─────────────────────────────────────────────────────────────────────────

async function poll() {
  const status = document.getElementById("status");
  try {
    const since = state.version === null ? "" : `?since=${encodeURIComponent(state.version)}`;
    const response = await fetch(`overview${since}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const found = await response.json();
    status.className = "status live";
    status.textContent = `live: ${state.runs.length} run(s), ${state.problems.length} problem(s); updated ${new Date().toLocaleTimeString()}`;
    if (found.changed) {
      state.version = found.version;
      state.runs = found.runs;
      state.problems = found.problems;
      const known = state.runs.some((run) => run.runId === state.picked);
      if (!known || !state.pickedByHand) state.picked = state.runs.length ? state.runs[0].runId : null;
      status.textContent = `live: ${state.runs.length} run(s), ${state.problems.length} problem(s); updated ${new Date().toLocaleTimeString()}`;
      drawRuns();
      if (state.picked) await loadRun();
      else document.getElementById("run").hidden = true;
    }
  } catch (error) {
    status.className = "status down";
    status.textContent = `the emulator does not answer (${error.message}); trying again`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function start() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("run")) {
    state.picked = hash.get("run");
    state.pickedByHand = true;
  }
  poll();
}

start();
