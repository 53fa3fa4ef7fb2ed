"use strict";
// The search page: one query (an image file or an indexed id) at a time, results as a grid of thumbnails.
const $ = (id) => document.getElementById(id);
let current = null;  // {file} or {id}: the last query, searched again when the mode or k changes
let queryUrl = null; // what the query looks like (object URL of the file, or the item's thumbnail)

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({ error: r.statusText, detail: "" }));
  if (!r.ok) throw new Error(body.detail || body.error || r.statusText);
  return body;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawBoxes(layer, boxes) {  // boxes: normalised [x1, y1, x2, y2]
  layer.replaceChildren();
  for (const b of boxes) {
    if (!b) continue;
    const d = el("div", "box");
    Object.assign(d.style, { left: `${b[0] * 100}%`, top: `${b[1] * 100}%`,
      width: `${(b[2] - b[0]) * 100}%`, height: `${(b[3] - b[1]) * 100}%` });
    layer.append(d);
  }
}

// A frame takes its image's aspect ratio and fits inside its container, so boxes drawn over it in
// normalised coordinates land on the image whatever its shape.
function fit(frame, img) {
  if (!img.naturalWidth) return;
  const ratio = img.naturalWidth / img.naturalHeight;
  const box = frame.parentElement;
  frame.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
  const wide = ratio >= box.clientWidth / Math.max(box.clientHeight, 1);
  frame.classList.toggle("wide", wide);
  frame.classList.toggle("tall", !wide);
}

function thumb(src, boxes) {
  const t = el("div", "thumb");
  const frame = el("div", "frame");
  if (src) {
    const img = el("img");
    img.alt = "";
    img.loading = "lazy";
    img.onload = () => fit(frame, img);
    img.onerror = () => { frame.remove(); t.append(el("span", "none", "no image")); };
    img.src = src;
    frame.append(img);
  }
  const layer = el("div", "boxes");
  drawBoxes(layer, boxes || []);
  frame.append(layer);
  t.append(frame);
  return t;
}

function card(r) {
  const c = el("div", "card");
  c.tabIndex = 0;
  c.dataset.id = r.id;
  c.dataset.distance = r.distance;
  c.title = `id ${r.id}${r.path ? " — " + r.path : ""}\nclick to search by this image`;
  c.append(thumb(`/v1/items/${r.id}/thumbnail`, r.box ? [r.box] : []));
  const m = el("div", "meta");
  m.append(el("span", "dist d" + Math.min(r.distance, 1), `d=${r.distance}`));
  m.append(el("span", "labels", (r.labels || []).join(", ") || `#${r.id}`));
  c.append(m);
  const go = () => searchBy({ id: r.id });
  c.onclick = go;
  c.onkeydown = (e) => { if (e.key === "Enter") go(); };
  return c;
}

function render(res) {
  const out = $("results");
  out.replaceChildren();
  const groups = res.categories && res.categories.length
    ? res.categories.map((c) => ({ cat: c, items: res.results.filter((r) => r.category === c.name) }))
    : [{ cat: null, items: res.results }];
  for (const g of groups) {
    const sec = el("div", "group");
    if (g.cat) {
      sec.dataset.category = g.cat.name;
      const head = el("div", "group-head");
      head.append(thumb(queryUrl, g.cat.box ? [g.cat.box] : []));
      head.append(el("h2", "", `${g.cat.name} · p=${g.cat.prob.toFixed(2)} · ${g.items.length} results`));
      sec.append(head);
    }
    const grid = el("div", "grid");
    g.items.forEach((r) => grid.append(card(r)));
    sec.append(grid);
    out.append(sec);
  }
  const firstBox = groups[0].cat && groups[0].cat.box;
  drawBoxes($("query-boxes"), firstBox ? [firstBox] : []);
  setStatus(`${res.results.length} results (${res.mode})`);
}

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "muted";
}

function showQuery(url) {
  queryUrl = url;
  $("query-img").src = url;
  $("query-frame").hidden = false;
  $("drop-text").hidden = true;
  drawBoxes($("query-boxes"), []);
}

async function searchBy(query) {
  current = query;
  const k = $("k").value || "12";
  const mode = $("mode").value;
  setStatus("searching…");
  let options;
  if (query.file) {
    const form = new FormData();
    form.append("image", query.file, query.file.name);
    form.append("k", k);
    form.append("mode", mode);
    options = { method: "POST", body: form };
  } else {
    showQuery(`/v1/items/${query.id}/thumbnail?size=256`);
    options = { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: query.id, k: Number(k), mode }) };
  }
  try {
    render(await api("/v1/search", options));
  } catch (e) {
    $("results").replaceChildren();
    setStatus(e.message, true);
  }
}

function pick(file) {
  if (!file) return;
  if (queryUrl && queryUrl.startsWith("blob:")) URL.revokeObjectURL(queryUrl);
  showQuery(URL.createObjectURL(file));
  searchBy({ file });
}

async function loadInfo() {
  try {
    const i = await api("/v1/info");
    const model = i.model ? `model ${i.model} · ` : "";
    $("info").textContent = `${i.count.toLocaleString()} images · ${i.bits}-bit ${i.method.toUpperCase()} codes · ` +
      `${model}engine ${i.engine}` + (i.category_codes ? ` · ${i.category_codes.toLocaleString()} category codes` : "") +
      (i.class_names.length ? ` · ${i.class_names.length} classes` : "");
    const cat = $("mode").querySelector('option[value="category"]');
    if (!i.modes.includes("category")) cat.textContent = "category (no category codes)";
    if (!i.writable) $("admin").querySelector("summary").textContent = "Add images (server is read-only)";
  } catch (e) {
    $("info").textContent = `cannot read the index: ${e.message}`;
  }
}

$("query-img").addEventListener("load", () => fit($("query-frame"), $("query-img")));
window.addEventListener("resize", () => fit($("query-frame"), $("query-img")));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files[0]); });
drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("file").click(); });
$("file").addEventListener("change", (e) => pick(e.target.files[0]));
$("mode").addEventListener("change", () => current && searchBy(current));
$("k").addEventListener("change", () => current && searchBy(current));
$("token").addEventListener("input", (e) => { $("add-form").hidden = !e.target.value; });
$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const files = $("add-files").files;
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("image", f, f.name);
  $("add-status").textContent = "adding…";
  try {
    const r = await api("/v1/items", { method: "POST", body: form,
      headers: { Authorization: `Bearer ${$("token").value}` } });
    $("add-status").textContent = `added ids ${r.ids.join(", ")}; the index holds ${r.count}`;
    loadInfo();
  } catch (err) {
    $("add-status").textContent = err.message;
  }
});
loadInfo();
