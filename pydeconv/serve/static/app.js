// pydeconv serve: the page. Plain ES module, no build step, nothing from the network but
// this server's /api (docs/SERVE.md). The view lives in the URL hash:
// #image=ID&layer=NAME&channel=C&rule=R&at=max|map|Y,X  (reload-safe, shareable).

const $ = (sel) => document.querySelector(sel);
const CELL = 48;

const DEFAULTS = { image: null, layer: null, channel: null, rule: "deconvnet", at: "max" };
const view = { ...DEFAULTS };
let model = null;
let images = [];
let fmaps = null;   // the /api/fmaps answer for view.image + view.layer
let urls = {};      // object URLs of the shown pictures, revoked when replaced
let token = 0;      // drops answers to superseded requests

function status(text, error = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

async function api(path) {
  const r = await fetch(path);
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)).toString();
}

// --- the URL hash ------------------------------------------------------------------------------
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  for (const k of Object.keys(view)) view[k] = h.has(k) ? h.get(k) : DEFAULTS[k];
  if (view.channel !== null) view.channel = Number(view.channel);
  if (!["deconvnet", "guided", "backprop"].includes(view.rule)) view.rule = DEFAULTS.rule;
}

function writeHash() {
  const h = query(view);
  if (location.hash.slice(1) !== h) history.replaceState(null, "", `#${h}`);
}

// --- images ------------------------------------------------------------------------------------
async function loadImages() {
  images = (await (await api("/api/images")).json()).images;
  const box = $("#images");
  box.replaceChildren();
  for (const im of images) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = `/api/image/${encodeURIComponent(im.id)}.png`;
    img.alt = img.title = im.name;
    img.dataset.id = im.id;
    img.addEventListener("click", () => selectImage(im.id));
    box.append(img);
  }
}

async function selectImage(id) {
  view.image = id;
  for (const t of document.querySelectorAll(".thumb")) t.classList.toggle("selected", t.dataset.id === id);
  $("#input").src = `/api/image/${encodeURIComponent(id)}.png`;
  writeHash();
  loadDetections();
  if (view.layer) await selectLayer(view.layer, true);
}

async function upload(file) {
  if (!file) return;
  status(`uploading ${file.name || "image"}...`);
  try {
    const r = await fetch("/api/upload", { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": file.name || "" } });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error);
    await loadImages();
    await selectImage(answer.id);
    status(`uploaded ${answer.name}`);
  } catch (e) {
    status(`upload failed: ${e.message}`, true);
  }
}

// --- layers and feature maps -------------------------------------------------------------------
function layerRow(name) {
  return model.layers.find((l) => l.name === name);
}

function showLayers() {
  const list = $("#layers");
  for (const l of model.layers) {
    const li = document.createElement("li");
    li.dataset.layer = l.name;
    li.title = `${l.kind}, output ${l.shape.join("x")}, receptive field ${l.rf.size.join("x")} stride ${l.rf.stride.join("x")}`;
    const name = document.createElement("span");
    name.textContent = l.name;
    const info = document.createElement("small");
    info.textContent = `${l.shape.join("x")} rf ${l.rf.size[0]}`;
    li.append(name, info);
    li.addEventListener("click", () => selectLayer(l.name));
    list.append(li);
  }
}

async function selectLayer(name, keepChannel = false) {
  const row = layerRow(name);
  if (!row || !view.image) return;
  view.layer = name;
  if (!keepChannel) { view.channel = null; if (!["max", "map"].includes(view.at)) view.at = "max"; }
  for (const li of document.querySelectorAll("#layers li")) li.classList.toggle("selected", li.dataset.layer === name);
  $("#layers li.selected")?.scrollIntoView({ block: "nearest" });
  writeHash();
  const mine = ++token;
  status(`feature maps of ${name}...`);
  let answer;
  try {
    answer = await (await api(`/api/fmaps?${query({ image: view.image, layer: name })}`)).json();
  } catch (e) {
    status(e.message, true);
    return;
  }
  if (mine !== token) return;
  fmaps = answer;
  drawFmaps(row);
  status(`${name}: ${fmaps.channels} channels, strongest first`);
  if (view.channel !== null && view.channel < fmaps.channels) await selectChannel(view.channel);
}

function drawFmaps(row) {
  $("#fmaps-title").textContent = `Feature maps of ${row.name} (${row.kind} ${row.shape.join("x")})`;
  const grid = $("#fmaps");
  grid.replaceChildren();
  const [ch, cw] = fmaps.cell;
  const w = CELL, h = Math.max(8, Math.round((CELL * ch) / cw));
  const sprite = `/api/fmaps.png?${query({ image: view.image, layer: row.name })}`;
  const top = new Set(fmaps.top);
  fmaps.order.forEach((c, k) => {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.dataset.channel = c;
    cell.title = `channel ${c}: max ${fmaps.max[c].toPrecision(4)}`;
    cell.style.width = `${w}px`;
    cell.style.height = `${h}px`;
    cell.style.backgroundImage = `url("${sprite}")`;
    cell.style.backgroundSize = `${fmaps.cols * w}px ${fmaps.rows * h}px`;
    cell.style.backgroundPosition = `-${(k % fmaps.cols) * w}px -${Math.floor(k / fmaps.cols) * h}px`;
    if (top.has(c)) cell.classList.add("top");
    cell.addEventListener("click", () => selectChannel(c));
    grid.append(cell);
  });
}

// --- one unit ----------------------------------------------------------------------------------
function setPicture(img, link, blob, name) {
  if (urls[img.id]) URL.revokeObjectURL(urls[img.id]);
  urls[img.id] = URL.createObjectURL(blob);
  img.src = urls[img.id];
  link.href = urls[img.id];
  link.download = name;
  link.hidden = false;
}

async function selectChannel(c) {
  if (!fmaps) return;
  view.channel = c;
  for (const cell of document.querySelectorAll(".cell")) cell.classList.toggle("selected", Number(cell.dataset.channel) === c);
  document.querySelector(".cell.selected")?.scrollIntoView({ block: "nearest" });
  syncControls();
  writeHash();
  const unit = { image: view.image, layer: view.layer, channel: c, at: view.at };
  const mine = ++token;
  status(`projecting ${view.layer} channel ${c} (${view.rule}, at ${view.at})...`);
  try {
    const [proj, patch] = await Promise.all([
      api(`/api/project?${query({ ...unit, rule: view.rule })}`),
      api(`/api/patch?${query(unit)}`),
    ]);
    const blobs = await Promise.all([proj.blob(), patch.blob()]);
    if (mine !== token) return;
    const stem = `${view.layer}-c${c}-${view.rule}-${view.at.replace(",", "_")}`;
    setPicture($("#projection-img"), $("#download-projection"), blobs[0], `${stem}.png`);
    setPicture($("#patch-img"), $("#download-patch"), blobs[1], `${stem}-patch.png`);
    const pos = patch.headers.get("X-Pydeconv-Position").split(",").map(Number);
    showField(pos);
    $("#unit-title").textContent = `${view.layer} channel ${c}, max ${fmaps.max[c].toPrecision(4)}`;
    status(`${view.layer} channel ${c}: ${view.rule} from ${view.at === "map" ? "the whole map" : `(${pos[0]}, ${pos[1]})`}`);
    $("#projection-img").dataset.unit = `${view.image}/${view.layer}/${c}/${view.rule}/${view.at}`;
  } catch (e) {
    if (mine === token) status(e.message, true);
  }
  loadAtlas();
}

function showField([y, x]) {
  const row = layerRow(view.layer);
  const [, ih, iw] = model.input.shape;
  const top = Math.max(0, row.rf.start[0] + y * row.rf.stride[0]);
  const left = Math.max(0, row.rf.start[1] + x * row.rf.stride[1]);
  const bottom = Math.min(ih, row.rf.start[0] + y * row.rf.stride[0] + row.rf.size[0]);
  const right = Math.min(iw, row.rf.start[1] + x * row.rf.stride[1] + row.rf.size[1]);
  const box = $("#rf-box");
  box.style.top = `${(100 * top) / ih}%`;
  box.style.left = `${(100 * left) / iw}%`;
  box.style.height = `${(100 * (bottom - top)) / ih}%`;
  box.style.width = `${(100 * (right - left)) / iw}%`;
  box.hidden = false;
}

function syncControls() {
  for (const r of document.querySelectorAll("input[name=rule]")) r.checked = r.value === view.rule;
  const pos = !["max", "map"].includes(view.at);
  for (const r of document.querySelectorAll("input[name=at]")) {
    r.checked = pos ? r.value === "pos" : r.value === view.at;
    if (r.value === "pos") r.disabled = !pos;
  }
  $("#at-pos").textContent = pos ? `(${view.at})` : "";
}

// A click on the input picks the layer position whose receptive field is centred nearest to it.
function clickInput(ev) {
  if (!view.layer || view.channel === null) return;
  const row = layerRow(view.layer);
  if (row.shape.length !== 3) return;
  const img = $("#input");
  const [, ih, iw] = model.input.shape;
  const rect = img.getBoundingClientRect();
  const py = ((ev.clientY - rect.top) / rect.height) * ih;
  const px = ((ev.clientX - rect.left) / rect.width) * iw;
  const pick = (p, d) => {
    const v = Math.round((p - row.rf.start[d] - row.rf.size[d] / 2) / row.rf.stride[d]);
    return Math.min(row.shape[d + 1] - 1, Math.max(0, v));
  };
  view.at = `${pick(py, 0)},${pick(px, 1)}`;
  selectChannel(view.channel);
}

// --- atlas tiles and detector boxes ------------------------------------------------------------
async function loadAtlas() {
  if (!model.atlas || view.channel === null) return;
  const pane = $("#atlas-pane");
  const box = $("#atlas");
  box.replaceChildren();
  try {
    const unit = { layer: view.layer, channel: view.channel };
    const answer = await (await api(`/api/atlas?${query(unit)}`)).json();
    if (answer.tile) {
      const img = document.createElement("img");
      img.id = "atlas-tile";
      img.src = `/api/atlas/tile?${query(unit)}`;
      img.alt = `the atlas's top ${answer.top.length} for ${view.layer} channel ${view.channel}`;
      box.append(img);
    }
    const list = document.createElement("ol");
    for (const t of answer.top) {
      const li = document.createElement("li");
      li.textContent = `${t.name} (image ${t.image}) at (${t.y}, ${t.x}): ${t.value.toPrecision(4)}`;
      list.append(li);
    }
    box.append(list);
    pane.hidden = answer.top.length === 0;
  } catch (e) {
    pane.hidden = true;
  }
}

async function loadDetections() {
  const layer = $("#boxes");
  layer.replaceChildren();
  let answer;
  try {
    answer = await (await api(`/api/detections?${query({ image: view.image })}`)).json();
  } catch (e) {
    return;
  }
  const [, ih, iw] = model.input.shape;
  for (const d of answer.boxes) {
    const [x1, y1, x2, y2] = d.box;
    const el = document.createElement("div");
    el.className = "box";
    el.style.left = `${(100 * x1) / iw}%`;
    el.style.top = `${(100 * y1) / ih}%`;
    el.style.width = `${(100 * (x2 - x1)) / iw}%`;
    el.style.height = `${(100 * (y2 - y1)) / ih}%`;
    const label = document.createElement("span");
    label.textContent = `${d.label} ${d.score.toFixed(2)}`;
    el.append(label);
    el.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      view.at = `${d.at[0]},${d.at[1]}`;
      view.channel = d.channel;
      await selectLayer(d.layer, true);
    });
    layer.append(el);
  }
}

// --- keyboard, upload, webcam ------------------------------------------------------------------
function onKey(ev) {
  if (ev.target.tagName === "INPUT" && ev.target.type !== "radio") return;
  if (!fmaps || !model) return;
  if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
    const order = fmaps.order;
    const k = view.channel === null ? -1 : order.indexOf(view.channel);
    const next = ev.key === "ArrowRight" ? Math.min(order.length - 1, k + 1) : Math.max(0, k - 1);
    selectChannel(order[next]);
  } else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
    const names = model.layers.map((l) => l.name);
    const k = names.indexOf(view.layer);
    const next = ev.key === "ArrowDown" ? Math.min(names.length - 1, k + 1) : Math.max(0, k - 1);
    selectLayer(names[next]);
  } else {
    return;
  }
  ev.preventDefault();
}

function setupUpload() {
  $("#upload").addEventListener("change", (ev) => upload(ev.target.files[0]));
  const strip = $("#strip");
  strip.addEventListener("dragover", (ev) => { ev.preventDefault(); strip.classList.add("drop"); });
  strip.addEventListener("dragleave", () => strip.classList.remove("drop"));
  strip.addEventListener("drop", (ev) => {
    ev.preventDefault();
    strip.classList.remove("drop");
    upload(ev.dataTransfer.files[0]);
  });
  if (!navigator.mediaDevices?.getUserMedia) return;
  const button = $("#webcam-button");
  button.hidden = false;
  button.addEventListener("click", async () => {
    const video = $("#webcam");
    try {
      if (!video.srcObject) {
        video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
        video.hidden = false;
        button.textContent = "snap";
        return;
      }
      const canvas = document.createElement("canvas");
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      canvas.getContext("2d").drawImage(video, 0, 0);
      const blob = await new Promise((ok) => canvas.toBlob(ok, "image/png"));
      await upload(new File([blob], "webcam.png", { type: "image/png" }));
    } catch (e) {
      status(`webcam: ${e.message}`, true);
    }
  });
}

async function main() {
  readHash();
  model = await (await api("/api/model")).json();
  $("#model-name").textContent = `${model.name || "model"} (${model.layers.length} layers)`;
  showLayers();
  await loadImages();
  setupUpload();
  $("#input").addEventListener("click", clickInput);
  for (const r of document.querySelectorAll("input[name=rule]")) {
    r.addEventListener("change", () => { view.rule = r.value; if (view.channel !== null) selectChannel(view.channel); });
  }
  for (const r of document.querySelectorAll("input[name=at]")) {
    r.addEventListener("change", () => {
      if (r.value !== "pos") { view.at = r.value; if (view.channel !== null) selectChannel(view.channel); }
    });
  }
  document.addEventListener("keydown", onKey);
  // A view typed or pasted into the address bar (the page's own changes use replaceState).
  window.addEventListener("hashchange", () => { readHash(); applyView(); });
  await applyView();
  document.body.dataset.ready = "1";
}

async function applyView() {
  syncControls();
  if (!images.some((im) => im.id === view.image)) view.image = images.length ? images[0].id : null;
  if (!layerRow(view.layer)) view.layer = model.layers[0].name;
  if (view.image !== null) await selectImage(view.image);
  else status("no images: upload one");
}

main().catch((e) => status(e.message, true));
