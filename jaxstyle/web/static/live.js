// The live view of a run: image(s), numbers, loss plot, settings, Stop and Download.
// Used by live.html (a command's --serve) and serve.html (jaxstyle serve).
"use strict";

const POST_HEADERS = {"X-Jaxstyle": "1"};
const ENDED = new Set(["done", "interrupted", "failed"]);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  return h ? `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}`
           : `${m}:${String(r).padStart(2, "0")}`;
}

function saveBlob(blob, name) {
  const a = el("a", {href: URL.createObjectURL(blob), download: name});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

class LiveView {
  constructor(root) {
    this.root = root;
    this.part = role => root.querySelector(`[data-role="${role}"]`);
    this.plot = new LossPlot(this.part("plot"));
    this.part("plot").addEventListener("click", e => this.plot.click(e));
    for (const radio of root.querySelectorAll("input[name=x-axis]")) {
      radio.addEventListener("change", () => this.plot.setAxis(radio.value));
    }
    this.part("stop").addEventListener("click", () => this.stop());
    this.part("download").addEventListener("click", () => this.download());
    this.run = null; this.state = {}; this.cells = null; this.urls = [];
    this.loading = false; this.wanted = null; this.shown = 0;
    this.downloadName = "jaxstyle.png"; this.blobs = [];
    this.onEnd = null;
    setInterval(() => this.tick(), 1000);
  }

  // A "live" message: what changed in the run shown.
  live(data) {
    if (data.run !== this.run || data.reset) this.newRun(data);
    if (data.points) {
      if (data.reset) this.plot.reset(data.series, data.points);
      else this.plot.append(data.series, data.points);
    }
    if ("status" in data) {
      Object.assign(this.state, data);
      this.stateAt = performance.now();
      this.showState();
    }
    if (data.image) this.want(data.image);
    this.checkEnd();
  }

  newRun(data) {
    const fresh = data.run !== this.run;
    this.run = data.run;
    if (data.title !== undefined) this.part("title").textContent = data.title;
    if (data.download) this.downloadName = data.download;
    if (data.settings) this.showSettings(data.settings);
    if (data.device) {
      const d = data.device;
      const kind = d.kind && d.kind.toLowerCase() !== d.platform ? `${d.kind} (${d.platform})` : d.platform;
      this.part("device").textContent = `${kind}${d.count > 1 ? ` x ${d.count}` : ""} on ${d.host}`;
    }
    if (fresh) {
      this.layout(data.cells || null);
      this.ended = false;
      this.part("stop").disabled = false;
      this.shown = 0;
    }
  }

  layout(cells) {
    const box = this.part("images");
    box.replaceChildren();
    for (const u of this.urls) if (u) URL.revokeObjectURL(u);
    this.urls = []; this.blobs = []; this.cells = cells;
    if (!cells) {
      this.imgs = [el("img", {alt: "the current image", "data-role": "image"})];
      const fig = el("figure", {class: "single"}, this.imgs[0]);
      fig.addEventListener("click", () => this.enlarge(0));
      box.append(el("p", {class: "empty", text: "The image appears once a page watches the running steps."}), fig);
      return;
    }
    const cols = cells.cols.length, rows = cells.rows.length;
    const grid = el("div", {class: "cells"});
    grid.style.gridTemplateColumns = `auto repeat(${cols}, minmax(0, 1fr))`;
    grid.append(el("span"));
    for (const c of cells.cols) grid.append(el("span", {class: "col-label", text: c}));
    this.imgs = [];
    for (let r = 0; r < rows; r++) {
      grid.append(el("span", {class: "row-label", text: cells.rows[r]}));
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const img = el("img", {alt: cells.labels[i], title: `${cells.labels[i]} (click: full size)`,
                               "data-role": "cell", "data-index": String(i)});
        const fig = el("figure", {}, img);
        fig.addEventListener("click", () => this.enlarge(i));
        grid.append(fig);
        this.imgs.push(img);
      }
    }
    box.append(el("p", {class: "empty", text: "The images appear once a page watches the running steps."}), grid);
  }

  want(image) {
    this.wanted = image;
    if (!this.loading) this.load();
  }

  async load() {
    this.loading = true;
    try {
      while (this.wanted) {
        const {version, count} = this.wanted;
        this.wanted = null;
        const run = this.run;
        const urls = [], blobs = [];
        for (let i = 0; i < this.imgs.length && i < count; i++) {
          const q = this.cells ? `cell=${i}&` : "";
          const r = await fetch(`/image?${q}v=${version}`, {cache: "no-store"});
          if (!r.ok) { urls.push(null); blobs.push(null); continue; }
          const blob = await r.blob();
          blobs.push(blob); urls.push(URL.createObjectURL(blob));
        }
        if (run !== this.run) { urls.forEach(u => u && URL.revokeObjectURL(u)); continue; }
        const decoded = [];
        urls.forEach((u, i) => {
          if (!u) return;
          if (this.urls[i]) URL.revokeObjectURL(this.urls[i]);
          this.urls[i] = u; this.blobs[i] = blobs[i];
          this.imgs[i].src = u;
          decoded.push(this.imgs[i].decode().catch(() => {}));
        });
        await Promise.all(decoded);
        if (urls.some(u => u)) {
          this.shown = version;
          this.root.classList.add("has-image");
          this.root.dataset.imageVersion = String(version);
        }
      }
    } catch (err) {
      // the server went away (the run ended) or a fetch failed: the last images stay
    } finally {
      this.loading = false;
      this.checkEnd();
    }
  }

  enlarge(i) {
    if (!this.urls[i]) return;
    const overlay = document.getElementById("overlay");
    overlay.querySelector("img").src = this.urls[i];
    overlay.querySelector("p").textContent = this.cells ? this.cells.labels[i] : "";
    overlay.hidden = false;
  }

  showState() {
    const s = this.state;
    const status = this.part("status");
    status.textContent = s.status + (s.exit_code !== null && s.exit_code !== undefined ? ` (exit ${s.exit_code})` : "");
    status.dataset.status = s.status;
    this.root.dataset.status = s.status;
    this.root.dataset.step = String(s.step);
    this.part("step").textContent = s.total ? `${s.step} / ${s.total}` : `${s.step}`;
    this.part("stage").textContent = s.stages > 1 || s.shape
      ? `${s.stage + 1} / ${s.stages}${s.shape ? ` (${s.shape[1]}x${s.shape[0]} px)` : ""}` : "";
    this.part("evals").textContent = s.evaluations ?? "";
    const extra = s.extra || {};
    let rate = s.steps_per_s === null || s.steps_per_s === undefined ? "" :
      `${s.steps_per_s.toPrecision(3)} steps/s`;
    if (extra.images_per_s) rate += ` (${extra.images_per_s.toPrecision(3)} images/s)`;
    this.part("rate").textContent = rate;
    let message = s.message || "";
    if (s.outputs) message += (message ? " " : "") + `Wrote ${[].concat(s.outputs).join(", ")}.`;
    this.part("message").textContent = message;
    this.part("stop").disabled = ENDED.has(s.status) || s.status === "stopping";
    this.tick();
  }

  tick() {
    const s = this.state;
    if (s.elapsed === undefined) return;
    const running = !ENDED.has(s.status);
    const extra = running && this.stateAt ? (performance.now() - this.stateAt) / 1000 : 0;
    this.part("elapsed").textContent = seconds(s.elapsed + extra);
  }

  memory(m) {
    if (!m.what) return;
    this.part("memory").textContent =
      `${bytes(m.used)} in use, peak ${bytes(m.peak)}${m.limit ? `, of ${bytes(m.limit)}` : ""} (${m.what})`;
  }

  showSettings(settings) {
    const table = this.part("settings");
    table.replaceChildren();
    const rows = [];
    const walk = (prefix, value) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
      } else rows.push([prefix, Array.isArray(value) ? value.join(", ") : String(value)]);
    };
    walk("", settings);
    for (const [k, v] of rows) table.append(el("tr", {}, el("th", {text: k}), el("td", {text: v})));
  }

  checkEnd() {
    if (this.ended || !ENDED.has(this.state.status) || this.loading || this.wanted) return;
    this.ended = true;
    if (this.onEnd) this.onEnd(this.state);
  }

  async stop() {
    this.part("stop").disabled = true;
    try {
      await fetch("/stop", {method: "POST", headers: POST_HEADERS});
    } catch (err) {
      this.part("message").textContent = "The server did not answer: the run may have ended.";
    }
  }

  async download() {
    const name = this.downloadName.replace(/\.png$/, "") +
      (this.state.step ? `_step${this.state.step}` : "") + ".png";
    try {
      const r = await fetch("/download", {cache: "no-store"});
      if (r.ok) { saveBlob(await r.blob(), name); return; }
    } catch (err) { /* the server is gone: the image shown is still here */ }
    if (this.blobs.length === 1 && this.blobs[0]) saveBlob(this.blobs[0], name);
  }
}

// An EventSource on /events that the page closes while hidden (nobody watching: the run
// stops sending images) and reopens when shown; `handlers` {event: function(data)}.
class Connection {
  constructor(handlers, onState) {
    this.handlers = handlers; this.onState = onState; this.closed = false;
    this.open();
    document.addEventListener("visibilitychange", () => {
      if (this.closed) return;
      if (document.hidden) this.pause(); else if (!this.source) this.open();
    });
  }

  open() {
    const source = new EventSource("/events");
    this.source = source;
    for (const [name, fn] of Object.entries(this.handlers)) {
      source.addEventListener(name, e => fn(JSON.parse(e.data)));
    }
    source.onopen = () => this.onState("connected");
    source.onerror = () => this.onState(this.closed ? "ended" : "reconnecting");
  }

  pause() {
    if (this.source) this.source.close();
    this.source = null;
    this.onState("paused while the page is hidden");
  }

  close() {
    this.closed = true;
    if (this.source) this.source.close();
    this.source = null;
  }
}

function closeOverlay() {
  const overlay = document.getElementById("overlay");
  if (overlay) overlay.addEventListener("click", () => { overlay.hidden = true; });
}

// live.html: one run.
if (document.body.dataset.page === "live") {
  const view = new LiveView(document.querySelector("[data-role=live]"));
  window.liveView = view;  // for the browser tests and the console
  const conn = document.getElementById("connection");
  const connection = new Connection({
    live: d => view.live(d),
    memory: m => view.memory(m),
  }, s => { conn.textContent = s; });
  view.onEnd = () => {
    connection.close();
    conn.textContent = "the run has ended; this page keeps its last image";
  };
  closeOverlay();
}
