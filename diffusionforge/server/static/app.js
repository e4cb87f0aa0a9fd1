// diffusionforge web page: pick a model, fill its fields, watch the job, see and download.
// Plain JS, no build step. The page talks to the same API as any client (see /openapi.json).
"use strict";

const $ = (id) => document.getElementById(id);
const FIELDS = ["prompt", "negative_prompt", "class", "nfe", "guidance", "length", "seed", "n",
  "sampler", "init_image", "mask", "strength", "resample"];
const NUMBERS = new Set(["nfe", "length", "seed", "n", "resample"]);
const FLOATS = new Set(["guidance", "strength"]);
const FILES = new Set(["init_image", "mask"]); // sent as data: URLs (base64) in the JSON
let models = [];
let current = null; // {id, controller}
const objectUrls = [];

function headers(json) {
  const h = {};
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function setState(state, text) {
  document.body.dataset.state = state;
  if (text !== undefined) $("status").textContent = text;
  const busy = state === "queued" || state === "running";
  $("go").disabled = busy;
  $("stop").disabled = !busy;
}

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: headers(!!options.body) });
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: r.statusText }; }
  if (!r.ok) {
    const retry = r.headers.get("Retry-After");
    throw new Error((body && body.error) + (retry ? ` (retry in ${retry} s)` : ""));
  }
  return body;
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function showModel() {
  const m = models.find((x) => x.id === $("model").value);
  if (!m) return;
  const fields = new Set(m.fields);
  for (const name of FIELDS) {
    const label = $(name).closest("label");
    label.hidden = !fields.has(name);
  }
  if (!(m.classes || []).length) $("class").closest("label").hidden = true; // unconditional
  const cls = $("class");
  cls.replaceChildren(option("", "all classes in turn"));
  (m.classes || []).forEach((c, i) => cls.append(option(String(i), `${i}: ${c}`)));
  const sampler = $("sampler");
  sampler.replaceChildren(option("", "recommended"));
  (m.samplers || []).forEach((s) => sampler.append(option(s, s)));
  const d = m.defaults || {};
  if (d.nfe) $("nfe").value = d.nfe;
  if (d.guidance !== undefined) $("guidance").value = d.guidance;
  $("length").value = d.length || "";
  // text models trained on prompt/response pairs answer the prompt (their hint says how)
  $("prompt").placeholder = m.prompt_hint ||
    "a description; or, for a text model, text with [____] holes to fill in";
  const shape = m.shape ? ` · output ${m.shape.join("×")}` : "";
  $("model-info").textContent = `${m.kind} model` + shape;
}

function dataUrl(file) {
  return new Promise((ok, bad) => {
    const reader = new FileReader();
    reader.onload = () => ok(reader.result);
    reader.onerror = () => bad(new Error("could not read " + file.name));
    reader.readAsDataURL(file);
  });
}

async function requestBody(m) {
  const body = { model: m.id };
  for (const name of m.fields) {
    if (name === "model" || !FIELDS.includes(name)) continue;
    const el = $(name);
    if (el.closest("label").hidden) continue;
    if (FILES.has(name)) {
      if (el.files.length) body[name] = await dataUrl(el.files[0]);
      continue;
    }
    const raw = el.value.trim();
    if (raw === "") continue;
    if (name === "class") body.class = Number(raw);
    else if (NUMBERS.has(name)) body[name] = parseInt(raw, 10);
    else if (FLOATS.has(name)) body[name] = parseFloat(raw);
    else body[name] = el.value;
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  const m = models.find((x) => x.id === $("model").value);
  if (!m) return;
  sessionStorage.setItem("diffusionforge-token", $("token").value);
  clearResults();
  $("progress").value = 0;
  setState("queued", "Submitting…");
  let job;
  try {
    job = await api(`/api/generate/${m.kind}`, {
      method: "POST", body: JSON.stringify(await requestBody(m)),
    });
  } catch (e) {
    setState("failed", "Refused: " + e.message);
    return;
  }
  follow(job);
}

// Follow a job over its event stream; closing the page closes the stream, which cancels it.
async function follow(job) {
  const controller = new AbortController();
  current = { id: job.id, controller };
  update(job);
  try {
    const r = await fetch(`/api/jobs/${job.id}/events`, { headers: headers(false),
      signal: controller.signal });
    if (!r.ok) throw new Error((await r.json()).error);
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (line.startsWith("data: ")) job = JSON.parse(line.slice(6));
        update(job);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") setState("failed", "Lost the job: " + e.message);
    return;
  }
  if (job.status === "done") await showOutputs(job);
}

function update(job) {
  const p = job.progress || { done: 0, total: 0 };
  $("progress").max = Math.max(p.total, 1);
  $("progress").value = p.total ? p.done : 0;
  const where = job.queue_position !== undefined && job.status === "queued"
    ? ` (position ${job.queue_position + 1} in the queue)` : "";
  const text = {
    queued: "Waiting" + where + "…",
    running: `Running: step ${p.done} of ${p.total}`,
    done: `Done: ${p.total} steps.`,
    failed: "Failed: " + job.error,
    cancelled: "Cancelled.",
    timeout: "Stopped: " + job.error,
  }[job.status];
  if (job.status !== "done") setState(job.status, text);
  else $("status").textContent = "Loading the results…";
}

function clearResults() {
  objectUrls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  $("grid-figure").hidden = true;
  $("grid").removeAttribute("src");
  $("items").replaceChildren();
}

async function blobUrl(url) {
  const r = await fetch(url, { headers: headers(false) });
  if (!r.ok) throw new Error("could not fetch " + url);
  const u = URL.createObjectURL(await r.blob());
  objectUrls.push(u);
  return u;
}

function describe(meta) {
  const parts = [];
  if (meta.class_name !== undefined && meta.class_name !== null) parts.push(meta.class_name);
  if (meta.seed !== undefined) parts.push("seed " + meta.seed);
  return parts.join(" · ");
}

async function showOutputs(job) {
  const total = (job.progress && job.progress.total) || 1;
  try {
    for (const out of job.outputs) {
      const url = await blobUrl(out.url);
      if (out.role === "grid") {
        const img = $("grid");
        await new Promise((ok, bad) => { img.onload = ok; img.onerror = bad; img.src = url; });
        // small pixel grids are scaled by a whole factor (crisp pixels); pictures with text
        // (audio spectrograms) are shown at their own size
        const k = job.kind === "audio" ? 1 : Math.max(1, Math.floor(640 / img.naturalWidth));
        img.style.width = Math.min(img.naturalWidth * k, 640) + "px";
        $("grid-link").href = url;
        $("grid-link").download = out.name;
        $("grid-figure").hidden = false;
        continue;
      }
      const fig = document.createElement("figure");
      if (out.role === "record") { // the JSON record of a text: a download, not a view
        const a = document.createElement("a");
        a.href = url;
        a.download = out.name;
        a.textContent = "record (JSON) · seed " + out.metadata.seed;
        fig.append(a);
        $("items").append(fig);
        continue;
      }
      let media;
      if (out.media_type.startsWith("image/")) {
        media = document.createElement("img");
        media.alt = describe(out.metadata);
        media.title = out.metadata.prompt || media.alt;
        media.src = url;
      } else if (out.media_type.startsWith("audio/")) {
        media = document.createElement("audio");
        media.controls = true;
        media.src = url;
      } else {
        media = document.createElement("pre"); // generated spans [bracketed] when known
        media.textContent = out.metadata.marked || (await (await fetch(url)).text());
        fig.className = "text";
      }
      const link = document.createElement("a");
      link.href = url;
      link.download = out.name;
      link.textContent = describe(out.metadata) || "download";
      const cap = document.createElement("figcaption");
      cap.append(link);
      fig.append(media, cap);
      $("items").append(fig);
    }
  } catch (e) {
    setState("failed", "Could not show the results: " + e.message);
    return;
  }
  $("progress").max = total;
  $("progress").value = total;
  setState("done", `Done: ${total} steps, ${job.outputs.length} file(s).`);
}

async function cancel() {
  if (!current) return;
  try {
    await api(`/api/jobs/${current.id}/cancel`, { method: "POST" });
  } catch (e) {
    $("status").textContent = "Cancel failed: " + e.message;
  }
}

async function loadModels() {
  try {
    const data = await api("/api/models");
    models = data.models;
  } catch (e) {
    setState("failed", "Could not list the models: " + e.message);
    return;
  }
  const sel = $("model");
  sel.replaceChildren(...models.map((m) => option(m.id, `${m.id} (${m.kind})`)));
  showModel();
  setState("ready");
}

async function start() {
  $("token").value = sessionStorage.getItem("diffusionforge-token") || "";
  $("form").addEventListener("submit", submit);
  $("stop").addEventListener("click", cancel);
  $("model").addEventListener("change", showModel);
  $("token").addEventListener("change", loadModels);
  let health = {};
  try { health = await (await fetch("/health")).json(); } catch (e) { /* shown below */ }
  $("token-row").hidden = !health.auth;
  $("server-note").textContent = health.status === "ok"
    ? `${health.models} model(s) · ${health.running} running · ${health.waiting} waiting` : "";
  await loadModels();
}

start();
