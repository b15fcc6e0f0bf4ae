// The search page: plain JavaScript against the JSON API of the same server (no build step, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
// A token given as ?token=... is sent with every API call (and on media URLs, which <img> fetches).
const token = new URLSearchParams(location.search).get("token");
let lastQuery = null; // {kind: "text", q} | {kind: "file", file} | {kind: "like", chunkId, encoder}

function apiUrl(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined && value !== false) url.searchParams.set(key, value);
  }
  if (token) url.searchParams.set("token", token);
  return url;
}

async function api(path, params, init = {}) {
  const response = await fetch(apiUrl(path, params), init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function options(encoder) {
  return {
    k: $("k").value, modality: $("modality").value, encoder,
    group_by_file: $("group").checked, exact: $("exact").checked, hybrid: $("hybrid").checked,
    dedup: $("dedup").checked,
  };
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadBuild() {
  try {
    const build = await api("/api/build");
    for (const select of [$("encoder"), $("compare")]) {
      for (const e of build.encoders) {
        const model = e.model.split("/").pop();
        const option = new Option(`${e.encoder}${e.current ? "" : " (old)"} · ${model}`, e.encoder_key);
        option.title = `${e.encoder_key}: ${e.vectors} vectors, ${e.modalities.join("+")}`;
        select.add(option);
      }
    }
    if (build.default_encoder) $("encoder").value = build.default_encoder;
    const c = build.counts;
    setStatus(`${c.files} files, ${c.chunks} chunks, ${build.encoders.length} encoder table(s)`);
  } catch (error) {
    setStatus(`not ready: ${error.message}`, true);
  }
}

function place(hit) {
  const parts = [];
  if (hit.role && !["window", "image"].includes(hit.role)) parts.push(hit.role);
  if (hit.page) parts.push(`page ${hit.page}`);
  if (hit.t_start !== null && hit.t_start !== undefined) parts.push(`${hit.t_start.toFixed(1)}–${hit.t_end.toFixed(1)} s`);
  if (hit.heading) parts.push(hit.heading);
  return parts.join(" · ");
}

function hasPicture(hit) {
  // Image chunks, and text that sits on a PDF page (shown with its box outlined).
  return hit.modality === "image" || (hit.page && hit.bbox);
}

function card(hit) {
  const el = document.createElement("article");
  el.className = "hit";
  el.dataset.chunkId = hit.chunk_id;
  el.dataset.path = hit.path;
  el.dataset.modality = hit.modality;
  const media = apiUrl(`/api/media/${hit.chunk_id}`);
  if (hasPicture(hit)) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.loading = "lazy";
    img.alt = hit.text || hit.path;
    img.src = media;
    el.append(img);
  } else if (hit.modality === "audio") {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = media;
    el.append(audio);
  }
  if (hit.text) {
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = hit.text;
    el.append(text);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = hit.path.split("/").pop();
  meta.innerHTML = `<div class="path"></div><div class="place"></div><div>distance ${hit.distance.toFixed(4)}${hit.score == null ? "" : ` · score ${hit.score.toFixed(3)}`} · ${hit.modality}</div>`;
  meta.querySelector(".path").textContent = name;
  meta.querySelector(".place").textContent = place(hit);
  el.title = `${hit.path}\nencoder ${hit.encoder}\nchunk ${hit.chunk_id}`;
  el.append(meta);
  const actions = document.createElement("div");
  actions.className = "actions";
  const like = document.createElement("button");
  like.type = "button";
  like.className = "more-like-this";
  like.textContent = "more like this";
  like.onclick = () => run({ kind: "like", chunkId: hit.chunk_id, encoder: hit.encoder });
  const info = document.createElement("button");
  info.type = "button";
  info.className = "show-lineage";
  info.textContent = "lineage";
  info.onclick = () => showLineage(hit);
  actions.append(like, info);
  el.append(actions);
  return el;
}

async function showLineage(hit) {
  const body = $("lineage-body");
  body.replaceChildren();
  try {
    const lineage = await api(`/api/lineage/${hit.chunk_id}`, { encoder: hit.encoder });
    const rows = [
      ["file", lineage.path], ["file id", lineage.file_id], ["kind", lineage.kind], ["role", lineage.role],
      ["page", lineage.page], ["time", lineage.t_start !== null ? `${lineage.t_start}–${lineage.t_end} s` : null],
      ["batch", lineage.batch], ["encoder", lineage.encoder_key], ["model", lineage.model_id],
      ["revision", lineage.revision], ["precision", lineage.dtype], ["device", lineage.device],
    ];
    for (const [label, value] of rows) {
      if (value === null || value === undefined) continue;
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      body.append(dt, dd);
    }
  } catch (error) {
    body.textContent = error.message;
  }
  $("lineage").hidden = false;
}

async function resultsFor(query, encoder) {
  const params = options(encoder);
  if (query.kind === "text") return api("/api/search", { ...params, q: query.q });
  if (query.kind === "like") return api(`/api/similar/${query.chunkId}`, { ...params, encoder: query.encoder });
  const form = new FormData();
  form.append("file", query.file);
  const kind = query.file.type.startsWith("audio/") ? "audio" : "image";
  return api(`/api/search/${kind}`, params, { method: "POST", body: form });
}

async function run(query) {
  lastQuery = query;
  const encoders = [$("encoder").value, $("compare").value].filter(Boolean);
  if (query.kind === "like") encoders.splice(1);
  setStatus("searching…");
  const started = performance.now();
  try {
    const columns = await Promise.all(encoders.map(async (encoder) => [encoder, await resultsFor(query, encoder)]));
    $("columns").replaceChildren(...columns.map(([encoder, hits]) => column(encoder, hits)));
    const ms = Math.round(performance.now() - started);
    const n = columns.reduce((sum, [, hits]) => sum + hits.length, 0);
    setStatus(`${n} result(s) in ${ms} ms${query.kind === "like" ? " like the chosen chunk" : ""}`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function column(encoder, hits) {
  const el = document.createElement("section");
  el.className = "column";
  el.dataset.encoder = encoder;
  const title = document.createElement("h2");
  title.textContent = `${encoder} — ${hits.length} result(s)`;
  const grid = document.createElement("div");
  grid.className = "grid";
  grid.append(...hits.map(card));
  el.append(title, grid);
  return el;
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("query").value.trim();
  if (q) run({ kind: "text", q });
});
$("upload").addEventListener("change", () => {
  if ($("upload").files.length) run({ kind: "file", file: $("upload").files[0] });
});
for (const id of ["modality", "encoder", "compare", "group", "exact", "hybrid", "dedup"]) {
  $(id).addEventListener("change", () => lastQuery && run(lastQuery));
}
$("lineage-close").onclick = () => { $("lineage").hidden = true; };
document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) run({ kind: "file", file });
});

loadBuild();
