// The badge of timeback_client.integrations.jupyter: an anywidget front-end module.
//
// It shows the activity's state and active time (ticking here between the kernel's
// updates), and reports the browser's side to the kernel as custom messages:
//   {event: "visibility", view, visible}  the page was hidden or shown (and at start)
//   {event: "input", view}                 a key, pointer, wheel or scroll, throttled
//   {event: "closed", view}                this view went away (its output was cleared)
// Only the newest view of a badge (the last display) listens and shows; older ones
// step aside, so a re-run cell never leaves two badges at work.

const STATES = {
  tracking: ["\u25cf", "Tracking", "tracking"],
  hidden: ["\u2016", "Paused: tab hidden", "paused"],
  paused: ["\u2016", "Paused", "paused"],
  idle: ["\u25cc", "Paused: idle", "idle"],
  ended: ["\u25a0", "Ended", "idle"],
  stopped: ["\u25a0", "Stopped", "idle"],
};
const FINAL = new Set(["ended", "stopped"]);

// Input anywhere on the page counts, not only on the badge: the student reads and types
// in the notebook's cells. Capture phase, so that a widget that stops propagation
// still lets it through.
const INPUT_EVENTS = ["keydown", "pointerdown", "pointermove", "wheel", "scroll", "touchstart"];

function clock(ms) {
  const seconds = Math.floor(ms / 1000);
  const hours = Math.floor(seconds / 3600);
  const rest = seconds % 3600;
  const mm = String(Math.floor(rest / 60));
  const ss = String(rest % 60).padStart(2, "0");
  return hours ? `${hours}:${mm.padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

function element(tag, className, parent) {
  const node = document.createElement(tag);
  node.className = className;
  parent.appendChild(node);
  return node;
}

function render({ model, el }) {
  const view = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const generation = model.get("generation");

  const badge = element("div", "timeback-badge", el);
  const text = element("div", "timeback-badge-text", badge);
  const name = element("div", "timeback-badge-name", text);
  const time = element("div", "timeback-badge-time", text);
  const chip = element("div", "timeback-badge-chip", badge);
  const problem = element("div", "timeback-badge-problem", el);

  // The active time: the kernel's figure, plus the time since it came while tracking.
  let baseMs = model.get("elapsed_ms");
  let baseAt = performance.now();
  const elapsed = () =>
    baseMs + (model.get("state") === "tracking" ? performance.now() - baseAt : 0);

  function draw() {
    const state = model.get("state");
    const [mark, label, look] = STATES[state] || STATES.paused;
    name.textContent = model.get("label");
    time.textContent = `Active ${clock(elapsed())} this session`;
    chip.textContent = `${mark}  ${label}`;
    chip.dataset.look = look;
    badge.dataset.state = state;
    const issue = model.get("problem");
    problem.textContent = issue ? `\u26a0 Time not saved yet: ${issue}` : "";
    problem.hidden = !issue;
  }

  const send = (message) => model.send({ ...message, view });

  // Input: one message at once, then at most one per touch interval; the last input of a
  // burst is always reported (late by less than the interval), so that idleness is
  // measured from it.
  let lastSent = -Infinity;
  let trailing = null;
  function sendInput() {
    lastSent = performance.now();
    send({ event: "input" });
  }
  function onInput() {
    const wait = lastSent + model.get("touch_interval_ms") - performance.now();
    if (wait <= 0) {
      sendInput();
    } else if (trailing === null) {
      trailing = setTimeout(() => {
        trailing = null;
        sendInput();
      }, wait);
    }
  }
  function onVisibility() {
    send({ event: "visibility", visible: document.visibilityState === "visible" });
  }

  let listening = false;
  function listen() {
    listening = true;
    document.addEventListener("visibilitychange", onVisibility);
    for (const type of INPUT_EVENTS) {
      document.addEventListener(type, onInput, { capture: true, passive: true });
    }
    onVisibility();
  }
  function stopListening() {
    if (!listening) return;
    listening = false;
    document.removeEventListener("visibilitychange", onVisibility);
    for (const type of INPUT_EVENTS) {
      document.removeEventListener(type, onInput, { capture: true });
    }
    if (trailing !== null) clearTimeout(trailing);
    trailing = null;
  }

  const ticker = setInterval(draw, 250);
  const onElapsed = () => {
    baseMs = model.get("elapsed_ms");
    baseAt = performance.now();
    draw();
  };
  const onState = () => {
    if (FINAL.has(model.get("state"))) stopListening();
    draw();
  };
  const onGeneration = () => {
    if (model.get("generation") !== generation) {
      // Displayed again elsewhere (a re-run cell): that view takes over.
      stopListening();
      clearInterval(ticker);
      el.hidden = true;
      send({ event: "closed" });
    }
  };
  model.on("change:elapsed_ms", onElapsed);
  model.on("change:state", onState);
  model.on("change:label", draw);
  model.on("change:problem", draw);
  model.on("change:generation", onGeneration);

  draw();
  if (!FINAL.has(model.get("state")) && model.get("generation") === generation) listen();

  return () => {
    const wasListening = listening;
    stopListening();
    clearInterval(ticker);
    model.off("change:elapsed_ms", onElapsed);
    model.off("change:state", onState);
    model.off("change:label", draw);
    model.off("change:problem", draw);
    model.off("change:generation", onGeneration);
    if (wasListening) send({ event: "closed" });
  };
}

export default { render };
