// jaxstyle serve: inputs, controls, preview, runs (queued), the live view, the gallery.
"use strict";

const app = {
  setup: null, lastQueue: null, content: null, styles: [], masks: {}, mine: new Set(), maskFor: null,
  previewTimer: null, previewBusy: false, previewAgain: false,
};
const $ = id => document.getElementById(id);

function showError(text, field) {
  $("errors").textContent = text || "";
  for (const e of document.querySelectorAll(".invalid")) e.classList.remove("invalid");
  if (field && $(field)) $(field).classList.add("invalid");
}

async function answer(r) {
  if (r.ok) return r;
  let data = {error: `${r.status} ${r.statusText}`};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  const err = new Error(data.error || r.statusText);
  err.field = data.field;
  throw err;
}

async function postJSON(url, body) {
  return answer(await fetch(url, {
    method: "POST", headers: {...POST_HEADERS, "Content-Type": "application/json"},
    body: JSON.stringify(body)}));
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const r = await fetch("/upload", {method: "POST", headers: POST_HEADERS, body: form});
  return (await answer(r)).json();
}

function thumb(entry, {remove, mask} = {}) {
  const box = el("div", {class: "thumb", "data-id": entry.id, title: `${entry.name} (${entry.width}x${entry.height})`},
                 el("img", {src: `/input/${entry.id}/thumb`, alt: entry.name}),
                 el("span", {text: entry.name}));
  if (remove) {
    const b = el("button", {type: "button", title: "remove", text: "x"});
    b.addEventListener("click", remove);
    box.append(b);
  }
  if (mask) box.append(mask);
  return box;
}

function renderInputs() {
  const c = $("content-thumbs");
  c.replaceChildren(...(app.content ? [thumb(app.content)] : []));
  const s = $("style-thumbs");
  s.replaceChildren(...app.styles.map((entry, i) => {
    const m = app.masks[entry.id];
    const maskButton = el("a", {href: "#", class: "mask", text: m ? `mask: ${m.name}` : "+ mask",
                                title: "optional: white where this style applies"});
    maskButton.addEventListener("click", e => {
      e.preventDefault();
      if (m) { delete app.masks[entry.id]; renderInputs(); return; }
      app.maskFor = entry.id; $("mask-file").click();
    });
    return thumb(entry, {remove: () => { app.styles.splice(i, 1); delete app.masks[entry.id]; renderInputs(); changed(); },
                         mask: maskButton});
  }));
}

async function addFiles(target, files) {
  showError("");
  for (const file of files) {
    try {
      const entry = await upload(file);
      if (target === "content") app.content = entry; else app.styles.push(entry);
      renderInputs();
      changed();
    } catch (err) {
      showError(`${file.name}: ${err.message}`.replace(`${file.name}: ${file.name}: `, `${file.name}: `));
    }
    if (target === "content") break;
  }
}

function settings() {
  const num = id => $(id).value === "" ? null : Number($(id).value);
  return {
    style_weight: Number((10 ** Number($("style_weight").value)).toPrecision(3)),
    content_weight: num("content_weight"), tv_weight: num("tv_weight"),
    alpha: Number($("alpha").value), image_size: num("image_size"),
    style_scale: Number($("style_scale").value), optimizer: $("optimizer").value,
    iterations: num("iterations"), preserve_colors: $("preserve_colors").value,
  };
}

function request(mode) {
  return {mode, content: app.content && app.content.id, styles: app.styles.map(s => s.id),
          masks: app.styles.some(s => app.masks[s.id]) ? app.styles.map(s => app.masks[s.id] ? app.masks[s.id].id : null) : null,
          settings: settings()};
}

function showOutputs() {
  for (const [id, fmt] of [["style_weight", v => `${(10 ** v).toPrecision(2)}`],
                           ["alpha", v => Number(v).toFixed(2)], ["style_scale", v => `${Number(v).toFixed(2)}x`]]) {
    document.querySelector(`output[for=${id}]`).textContent = fmt($(id).value);
  }
}

// The feed-forward preview, shortly after an input or control changes (one at a time).
function changed() {
  showOutputs();
  if (!app.setup || !app.setup.model || !app.content || !app.styles.length) return;
  clearTimeout(app.previewTimer);
  app.previewTimer = setTimeout(preview, 350);
}

async function preview() {
  if (!app.content || !app.styles.length) { showError("Choose a content and a style image first."); return; }
  if (app.previewBusy) { app.previewAgain = true; return; }
  app.previewBusy = true;
  $("preview-note").textContent = `${app.setup.model} preview...`;
  try {
    const r = await postJSON("/preview", request("preview"));
    const blob = await r.blob();
    const img = $("preview-image");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
    $("preview-note").textContent =
      `${app.setup.model} in ${Number(r.headers.get("X-Seconds")).toFixed(2)} s. Refine starts from it.`;
    showError("");
  } catch (err) {
    $("preview-note").textContent = "";
    showError(err.message, err.field);
  } finally {
    app.previewBusy = false;
    if (app.previewAgain) { app.previewAgain = false; preview(); }
  }
}

async function start(mode) {
  if (!app.content || !app.styles.length) { showError("Choose a content and a style image first."); return; }
  try {
    const r = await (await postJSON("/run", request(mode))).json();
    app.mine.add(r.job);
    showError("");
    const q = app.lastQueue;
    const known = q && [q.running, ...q.waiting, ...q.recent].some(j => j && j.id === r.job);
    if (known) renderQueue(q);
    else $("queue").append(el("div", {text: r.ahead ? `Queued: ${r.ahead} run(s) ahead of yours.` : "Starting."}));
  } catch (err) {
    showError(err.message, err.field);
  }
}

function renderQueue(q) {
  app.lastQueue = q;
  const box = $("queue");
  box.replaceChildren();
  if (q.running) box.append(el("div", {text: `On the device: ${q.running.title}` +
                                               (app.mine.has(q.running.id) ? " (yours)" : "")}));
  q.waiting.forEach((job, i) => {
    const line = el("div", {class: "waiting", text: `Queued, ${i + (q.running ? 1 : 0)} run(s) ahead: ` +
      `${job.title}${app.mine.has(job.id) ? " (yours)" : ""}`});
    if (app.mine.has(job.id)) {
      const b = el("button", {type: "button", text: "cancel"});
      b.addEventListener("click", () => postJSON("/cancel", {job: job.id}).catch(() => {}));
      line.append(" ", b);
    }
    box.append(line);
  });
  for (const job of q.recent) {
    if (app.mine.has(job.id) && job.status === "failed") {
      showError(`${job.title}: ${job.message}`);
      app.mine.delete(job.id);
    }
  }
}

function renderGallery(items) {
  const box = $("gallery");
  box.replaceChildren();
  if (!items.length) { box.append(el("p", {class: "note", text: "Nothing yet."})); return; }
  for (const item of items) {
    const c = item.settings.config || {};
    const about = `style weight ${c.style_weight}, content weight ${c.content_weight}, TV ${c.tv_weight}, ` +
      `${c.image_size} px, ${c.optimizer}, ${c.iterations} iterations, init ${item.settings.init}`;
    const img = el("img", {src: `/gallery/${item.id}/0/thumb`, alt: item.title, title: about});
    img.addEventListener("click", () => enlargeURL(`/gallery/${item.id}/0`, item.title));
    const fig = el("figure", {"data-item": String(item.id)}, img,
                   el("figcaption", {text: item.title}));
    const link = el("a", {href: `/gallery/${item.id}/0?download=1`, download: item.files[0], text: "download"});
    fig.append(el("div", {}, link));
    if (item.kind === "sweep") {
      const cells = el("div", {class: "thumbs"});
      item.labels.forEach((label, i) => {
        const t = el("img", {src: `/gallery/${item.id}/${i + 1}/thumb`, alt: label, title: `${label} (click: full size)`});
        t.style.width = "44px"; t.style.height = "44px";
        t.addEventListener("click", () => enlargeURL(`/gallery/${item.id}/${i + 1}`, label));
        cells.append(t);
      });
      fig.append(cells);
    }
    box.append(fig);
  }
}

function enlargeURL(url, label) {
  const overlay = $("overlay");
  overlay.querySelector("img").src = url;
  overlay.querySelector("p").textContent = label;
  overlay.hidden = false;
}

async function init() {
  const setup = await (await fetch("/setup")).json();
  app.setup = setup;
  const d = setup.defaults;
  $("style_weight").value = Math.log10(d.style_weight);
  for (const id of ["content_weight", "tv_weight", "alpha", "image_size", "style_scale", "iterations"]) $(id).value = d[id];
  $("optimizer").replaceChildren(...setup.optimizers.map(o => el("option", {value: o, text: o})));
  $("optimizer").value = d.optimizer;
  $("preserve_colors").replaceChildren(...setup.color_modes.map(o => el("option", {value: o, text: o})));
  $("model").textContent = setup.model ? `feed-forward model: ${setup.model}` : "no feed-forward model (--model): Refine starts from the content";
  $("preview").disabled = !setup.model;
  $("alpha").disabled = !setup.model;
  showOutputs();
  for (const target of ["content", "styles"]) {
    const select = document.querySelector(`[data-folder=${target}]`);
    if (setup.folder.length) {
      select.hidden = false;
      for (const entry of setup.folder) select.append(el("option", {value: entry.id, text: entry.name}));
      select.addEventListener("change", () => {
        const entry = setup.folder.find(e => e.id === select.value);
        if (!entry) return;
        fetch(`/input/${entry.id}/thumb`).then(answer).then(() => {
          if (target === "content") app.content = entry; else app.styles.push(entry);
          renderInputs(); changed(); showError("");
        }).catch(err => showError(err.message));
        select.value = "";
      });
    }
    const input = document.querySelector(`[data-file=${target}]`);
    input.addEventListener("change", () => { addFiles(target, [...input.files]); input.value = ""; });
    const drop = document.querySelector(`[data-drop=${target}]`);
    drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", e => {
      e.preventDefault(); drop.classList.remove("over");
      addFiles(target, [...e.dataTransfer.files]);
    });
  }
  $("mask-file").addEventListener("change", async () => {
    const file = $("mask-file").files[0];
    $("mask-file").value = "";
    if (!file || !app.maskFor) return;
    try { app.masks[app.maskFor] = await upload(file); renderInputs(); showError(""); }
    catch (err) { showError(`${file.name}: ${err.message}`); }
  });
  for (const id of ["style_weight", "alpha", "style_scale", "image_size", "preserve_colors"]) {
    $(id).addEventListener("input", changed);
  }
  for (const id of ["content_weight", "tv_weight", "optimizer", "iterations"]) $(id).addEventListener("input", showOutputs);
  $("preview").addEventListener("click", preview);
  $("refine").addEventListener("click", () => start("refine"));
  $("sweep").addEventListener("click", () => start("sweep"));
}

if (document.body.dataset.page === "serve") {
  const view = new LiveView(document.querySelector("[data-role=live]"));
  window.liveView = view;  // for the browser tests and the console
  const conn = $("connection");
  new Connection({
    live: d => view.live(d),
    memory: m => view.memory(m),
    queue: renderQueue,
    gallery: renderGallery,
  }, s => { conn.textContent = s; });
  closeOverlay();
  init().catch(err => showError(`could not read the server's setup: ${err.message}`));
}
