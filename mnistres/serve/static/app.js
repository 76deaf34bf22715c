// mnistres serve: the page. Plain JavaScript, no build step, nothing fetched from elsewhere.
// Every text from the server is set with textContent; only a report's HTML, which the server
// renders with every character of the runs' text escaped, is inserted as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { checkpoint: null, poll: null, sending: false, pending: false, lastSent: 0, drawn: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

const percent = (value, digits = 2) => (value === null || value === undefined ? "—" : `${(100 * value).toFixed(digits)} %`);

// --- views ---------------------------------------------------------------------------------------

function route() {
  clearInterval(state.poll);
  state.poll = null;
  const hash = location.hash || "#/draw";
  const [, view, ...rest] = hash.split("/");
  const id = decodeURIComponent(rest.join("/"));
  for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  for (const link of document.querySelectorAll("nav a")) link.classList.remove("active");
  if (view === "runs") showRuns();
  else if (view === "run") showRun(id);
  else if (view === "report") showReport(id);
  else showDraw();
}

function every(seconds, work) {
  state.poll = setInterval(work, seconds * 1000);
}

// --- drawing -------------------------------------------------------------------------------------

function showDraw() {
  $("view-draw").hidden = false;
  $("nav-draw").classList.add("active");
  loadCheckpoints();
}

async function loadCheckpoints() {
  const picker = $("checkpoint");
  try {
    const { checkpoints } = await api("/api/checkpoints");
    picker.replaceChildren(...checkpoints.map((c) => el("option", {
      value: c.id,
      text: c.run === null ? `${c.file} (--checkpoint)` : `${c.run} · ${c.file}` +
        (c.best_val_acc !== null ? ` · ${percent(c.best_val_acc)}` : "") +
        (c.dataset && c.dataset !== "mnist" ? ` · ${c.dataset}` : ""),
    })));
    if (!checkpoints.length) message("draw-message", "No checkpoint to predict with: train a run, or start serve with --checkpoint.", true);
    if (state.checkpoint && checkpoints.some((c) => c.id === state.checkpoint)) picker.value = state.checkpoint;
    state.checkpoint = picker.value || null;
  } catch (error) {
    message("draw-message", error.message, true);
  }
}

function message(id, text, isError) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(isError));
}

function setUpPad() {
  const pad = $("pad");
  const ink = pad.getContext("2d");
  const blank = () => {
    ink.fillStyle = "#fff";
    ink.fillRect(0, 0, pad.width, pad.height);
    state.drawn = false;
  };
  blank();
  let last = null;
  const at = (event) => {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
  };
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    last = at(event);
    stroke(last, last);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = at(event);
    stroke(last, next);
    last = next;
    askSoon();
  });
  const end = () => {
    if (!last) return;
    last = null;
    ask();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  function stroke(from, to) {
    ink.strokeStyle = "#000";
    ink.lineWidth = 20;
    ink.lineCap = "round";
    ink.lineJoin = "round";
    ink.beginPath();
    ink.moveTo(...from);
    ink.lineTo(...to);
    ink.stroke();
    state.drawn = true;
  }
  $("clear").addEventListener("click", () => {
    blank();
    showAnswer(null);
    message("draw-message", "Draw a digit in the box.");
  });
  $("checkpoint").addEventListener("change", () => {
    state.checkpoint = $("checkpoint").value;
    if (state.drawn) ask();
  });
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    blank();
    try {  // show a picture on the pad; an array file is only predicted
      const picture = await createImageBitmap(file);
      const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
      ink.drawImage(picture, (pad.width - picture.width * scale) / 2, (pad.height - picture.height * scale) / 2,
        picture.width * scale, picture.height * scale);
    } catch (error) { /* not a picture the browser shows: the server may still read it */ }
    state.pending = false;  // the pad now shows the file: a drawing's question still to come is gone with it
    await send(file, file.name);
    $("upload").value = "";
  });
}

function askSoon() {  // while drawing: at most one question in flight, and not more often than every 150 ms
  if (state.sending || Date.now() - state.lastSent < 150) { state.pending = true; busy(true); return; }
  ask();
}

function ask() {
  if (!state.drawn) return;
  busy(true);
  if (state.sending) { state.pending = true; return; }
  // Taken from now, though toBlob answers later: an ask in between waits its turn, or two questions would
  // be in flight and an older answer could arrive last and stay on screen.
  state.sending = true;
  state.pending = false;
  $("pad").toBlob((blob) => send(blob, "drawing"), "image/png");
}

function busy(asking) {  // whether an answer is still to come (tests and screen readers wait on it)
  document.body.dataset.asking = asking ? "yes" : "no";
}

async function send(body, what) {
  busy(true);
  state.sending = true;
  state.lastSent = Date.now();
  const query = state.checkpoint ? `?checkpoint=${encodeURIComponent(state.checkpoint)}` : "";
  try {
    const answer = await api(`/api/predict${query}`, { method: "POST", body });
    showAnswer(answer);
    const extra = answer.images.length > 1 ? ` (the first of its ${answer.images.length} images)` : "";
    message("draw-message", `${what}${extra}: ${answer.digit}, epoch ${answer.epoch} of ${answer.checkpoint}`);
  } catch (error) {
    showAnswer(null);
    message("draw-message", error.message, true);
  } finally {
    state.sending = false;
    if (state.pending) ask();
    else busy(false);
  }
}

function showAnswer(answer) {
  $("digit").textContent = answer ? String(answer.digit) : "?";
  $("confidence").textContent = answer ? percent(answer.confidence, 1) : "";
  $("digit").dataset.digit = answer ? String(answer.digit) : "";
  const chances = answer ? answer.probabilities : Array(10).fill(0);
  bars($("bars"), chances.map((p, digit) => [String(digit), p]), answer ? answer.digit : -1);
  drawPixels($("seen"), answer ? answer.pixels : null);
}

function bars(container, rows, highlighted) {
  container.replaceChildren();
  rows.forEach(([label, value], i) => {
    const fill = el("span");
    fill.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
    const row = [el("span", { text: label }), el("div", { class: "bar" }, fill),
      el("span", { class: "value", text: value === null ? "—" : percent(value, 1) })];
    for (const cell of row) {
      if (i === highlighted) cell.classList.add("top");
      container.append(cell);
    }
  });
}

function drawPixels(canvas, pixels) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(28, 28);
  for (let i = 0; i < 28 * 28; i++) {
    const value = pixels ? pixels[Math.floor(i / 28)][i % 28] : 0;
    image.data.set([value, value, value, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

// --- runs ----------------------------------------------------------------------------------------

function showRuns() {
  $("view-runs").hidden = false;
  $("nav-runs").classList.add("active");
  loadRuns();
  every(3, loadRuns);
}

async function loadRuns() {
  try {
    const listed = await api("/api/runs");
    $("runs-folder").textContent = listed.folder ? `under ${listed.folder}` : "";
    $("groups").replaceChildren(...listed.groups.map((group) =>
      el("a", { href: `#/report/${encodeURIComponent(group.id)}`, text: `${group.kind} report: ${group.title}` })));
    const headers = ["run", "status", "epochs", "best val acc", "final val acc", ...listed.settings, "started", "time"];
    const rows = listed.runs.map((run) => el("tr", {},
      el("td", {}, el("a", { href: `#/run/${encodeURIComponent(run.id)}`, text: run.name })),
      el("td", { class: `status status-${run.status}`, text: run.status, title: run.note || "" }),
      el("td", { text: `${run.epochs_done ?? "—"}/${run.epochs_planned ?? "—"}` }),
      el("td", { text: percent(run.best_val_acc) }),
      el("td", { text: percent(run.final_val_acc) }),
      ...listed.settings.map((key) => el("td", { text: shown(run.settings[key]) })),
      el("td", { text: (run.started || "").replace("T", " ").slice(0, 16) }),
      el("td", { text: run.seconds === null ? "—" : `${run.seconds.toFixed(0)} s` })));
    $("runs-table").replaceChildren(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows));
    const refused = listed.refused.map((r) => `${r.id}: ${r.why}`).join("; ");
    message("runs-message", listed.runs.length ? (refused ? `Not served: ${refused}` : "") :
      (listed.folder ? "No runs here yet." : "No runs folder is served (serve RUNS_DIR)."));
  } catch (error) {
    message("runs-message", error.message, true);
  }
}

const shown = (value) => (value === null || value === undefined ? "—" : Array.isArray(value) ? value.join(", ") : String(value));

async function showRun(id) {
  $("view-run").hidden = false;
  $("nav-runs").classList.add("active");
  let mistakesShown = false;
  const load = async () => {
    let run;
    try {
      run = await api(`/api/run?id=${encodeURIComponent(id)}`);
    } catch (error) {
      $("run-title").textContent = id;
      $("run-status").textContent = error.message;
      return;
    }
    $("run-title").textContent = run.name;
    const status = el("span", { class: `status status-${run.status}`, text: run.status });
    $("run-status").replaceChildren(status, ` · epoch ${run.epochs_done ?? 0} of ${run.epochs_planned ?? "?"} · best ` +
      `${percent(run.best_val_acc)}` + (run.note ? ` · ${run.note}` : "") + (run.hint ? ` · ${run.hint}` : ""));
    $("run-checkpoints").replaceChildren(...run.checkpoints.map((checkpoint) => {
      const button = el("button", { type: "button", text: `Draw with ${checkpoint.split("/").pop()}` });
      button.addEventListener("click", () => { state.checkpoint = checkpoint; location.hash = "#/draw"; });
      return button;
    }));
    curves(run.history);
    perClass(run);
    confusion(run.summary.confusion_matrix);
    $("run-settings").replaceChildren(el("tbody", {}, ...Object.entries(run.config).map(([key, value]) =>
      el("tr", {}, el("th", { text: key }), el("td", { text: shown(value) })))));
    if (!mistakesShown) mistakesShown = await mistakes(id, run.has_mistakes);
    if (run.status !== "running") { clearInterval(state.poll); state.poll = null; }
  };
  await load();
  if (!state.poll && $("run-status").querySelector(".status-running")) every(2, load);
}

function curves(history) {
  chart($("chart-acc"), history, [["train_acc", "train"], ["val_acc", "val"]], true);
  chart($("chart-loss"), history, [["train_loss", "train"], ["val_loss", "val"]], false);
}

function chart(container, history, series, isAccuracy) {
  const width = 420, height = 240, left = 48, right = 12, top = 12, bottom = 34;
  const box = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const values = series.flatMap(([key]) => history.map((row) => row[key]).filter((v) => typeof v === "number" && isFinite(v)));
  if (!history.length || !values.length) {
    container.replaceChildren(el("p", { class: "muted", text: "No epoch has ended yet." }));
    return;
  }
  let low = Math.min(...values), high = Math.max(...values);
  if (isAccuracy) { high = Math.min(1, high + 0.005); low = Math.max(0, low - 0.005); }
  if (high - low < 1e-9) { high += 0.5; low = Math.max(0, low - 0.5); }
  const epochs = history.length;
  const x = (epoch) => left + (epochs === 1 ? 0.5 : (epoch - 1) / (epochs - 1)) * (width - left - right);
  const y = (value) => top + (1 - (value - low) / (high - low)) * (height - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const value = low + (i / 4) * (high - low);
    box.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
    const label = svg("text", { x: left - 4, y: y(value) + 4, "text-anchor": "end" });
    label.textContent = isAccuracy ? `${(100 * value).toFixed(1)}` : value.toPrecision(2);
    box.append(label);
  }
  box.append(svg("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }));
  const step = Math.max(1, Math.ceil(epochs / 8));
  for (let epoch = 1; epoch <= epochs; epoch += step) {
    const label = svg("text", { x: x(epoch), y: height - bottom + 14, "text-anchor": "middle" });
    label.textContent = String(epoch);
    box.append(label);
  }
  const caption = svg("text", { x: (left + width - right) / 2, y: height - 4, "text-anchor": "middle" });
  caption.textContent = isAccuracy ? "epoch (accuracy in %)" : "epoch (cross-entropy)";
  box.append(caption);
  series.forEach(([key, name], i) => {
    const rows = history.filter((row) => typeof row[key] === "number" && isFinite(row[key]));
    const points = rows.map((row) => `${x(row.epoch).toFixed(1)},${y(row[key]).toFixed(1)}`);
    if (points.length === 1) points.push(points[0]);
    box.append(svg("polyline", { class: `${name} series-${key}`, points: points.join(" ") }));
    for (const row of rows) {  // each epoch marked: a run of one epoch is a point, not an empty chart
      const dot = svg("circle", { class: `dot-${name}`, cx: x(row.epoch), cy: y(row[key]), r: 3 });
      const tip = svg("title");
      tip.textContent = `epoch ${row.epoch}: ${isAccuracy ? percent(row[key]) : row[key].toFixed(4)}`;
      dot.append(tip);
      box.append(dot);
    }
    box.append(svg("rect", { class: `legend-${name}`, x: width - right - 110 + 55 * i, y: top, width: 10, height: 10 }));
    const label = svg("text", { x: width - right - 96 + 55 * i, y: top + 9 });
    label.textContent = name;
    box.append(label);
  });
  container.replaceChildren(box);
}

function perClass(run) {
  const rows = run.summary.per_class || [];
  const last = run.history[run.history.length - 1] || {};
  const values = rows.length ? rows.map((row) => [String(row.class), row.accuracy])
    : Array.from({ length: 10 }, (_, c) => [String(c), last[`val_acc_class_${c}`] ?? null]).filter(([, v]) => v !== null);
  if (!values.length) {
    $("per-class").replaceChildren(el("p", { class: "muted", text: "Known once the run ends (or with the per_class_accuracy callback)." }));
    return;
  }
  bars($("per-class"), values, -1);
}

function confusion(matrix) {
  if (!matrix || !matrix.length) {
    $("confusion").replaceChildren(el("p", { class: "muted", text: "Known once the run ends." }));
    return;
  }
  const largest = Math.max(1, ...matrix.flatMap((row, i) => row.filter((_, j) => j !== i)));
  const head = el("tr", {}, el("th", { text: "true \\ predicted" }), ...matrix.map((_, j) => el("th", { text: String(j) })));
  const body = matrix.map((row, i) => el("tr", {}, el("th", { text: String(i) }), ...row.map((count, j) => {
    const cell = el("td", { text: String(count), class: i === j ? "diagonal" : "" });
    if (i !== j && count > 0) cell.style.background = `rgba(192, 57, 43, ${0.12 + 0.6 * (count / largest)})`;
    return cell;
  })));
  $("confusion").replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
}

async function mistakes(id, has) {
  if (!has) {
    $("mistakes-note").textContent = "Kept once the run completes (mistakes.npz).";
    $("mistakes").replaceChildren();
    return false;
  }
  try {
    const found = await api(`/api/run/mistakes?id=${encodeURIComponent(id)}`);
    $("mistakes-note").textContent = found.total === 0 ? `None: every one of the ${found.scored} images of ${found.source} was classified right.`
      : `${found.total} of ${found.scored} images of ${found.source} were misclassified; ` +
        `the ${found.mistakes.length} most confident (true → predicted, confidence):`;
    $("mistakes").replaceChildren(...found.mistakes.map((m) => {
      const canvas = el("canvas", { width: 28, height: 28 });
      drawPixels(canvas, m.pixels);
      return el("figure", {}, canvas, el("figcaption", { text: `${m.label} → ${m.predicted} (${(100 * m.confidence).toFixed(0)} %)` }));
    }));
    return true;
  } catch (error) {
    $("mistakes-note").textContent = error.message;
    return false;
  }
}

// --- reports -------------------------------------------------------------------------------------

async function showReport(id) {
  $("view-report").hidden = false;
  $("nav-runs").classList.add("active");
  message("report-message", "Writing the report…");
  $("report").replaceChildren();
  try {
    const report = await api(`/api/report?id=${encodeURIComponent(id)}`);
    if (report.html === null) { message("report-message", report.message, true); return; }
    message("report-message", "");
    $("report").innerHTML = report.html;  // rendered by the server, every text escaped (serve/markdown.py)
  } catch (error) {
    message("report-message", error.message, true);
  }
}

// --- start ---------------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  setUpPad();
  showAnswer(null);
  try {
    const info = await api("/api/info");
    $("served").textContent = `mnistres ${info.version}` + (info.folder ? ` · ${info.folder}` : "");
  } catch (error) { /* the views say what fails */ }
  route();
});
