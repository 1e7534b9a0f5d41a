// yamnet-beam explore: search, listen, label, train, re-rank. Every text from the server goes in with
// textContent (never innerHTML), so a file name is shown as text whatever it holds.
"use strict";
const TOKEN = document.querySelector('meta[name="token"]').content;
const $ = (id) => document.getElementById(id);
const state = { kind: null, params: {}, offset: 0, page: null, current: -1, renders: 0 };

async function api(path, options = {}) {
  const opts = Object.assign({ credentials: "same-origin" }, options);
  if (opts.method === "POST") opts.headers = Object.assign({ "X-Token": TOKEN }, opts.headers || {});
  const r = await fetch(path, opts);
  const type = r.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || body || r.statusText);
  return body;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function windowParams(item) {
  return new URLSearchParams({ path: item.path, start: item.start_s, end: item.end_s }).toString();
}

function labelClass() {
  return $("label-class").value.trim() || (state.kind === "class" ? state.params.q : "");
}

function render(page) {
  state.page = page;
  const list = $("results");
  list.replaceChildren();
  page.items.forEach((item, i) => {
    const li = el("li");
    li.dataset.path = item.path;
    li.dataset.start = item.start_s;
    li.dataset.end = item.end_s;
    li.dataset.index = String(i);
    li.appendChild(el("div", "path", item.path));
    const meta = el("div", "meta", `${item.start_s.toFixed(2)}–${item.end_s.toFixed(2)} s · frame ${item.frame} · score ${item.score.toFixed(3)}`);
    const badge = el("span", "badge", "");
    meta.appendChild(badge);
    li.appendChild(meta);
    li.appendChild(el("div", "top", item.top.map(([n, s]) => `${n} ${s.toFixed(2)}`).join(" · ")));
    const img = el("img", "spec");
    img.alt = "spectrogram";
    img.loading = "lazy";
    img.src = "/api/spectrogram?" + windowParams(item);
    li.appendChild(img);
    const audio = el("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = "/api/audio?" + windowParams(item);
    li.appendChild(audio);
    const buttons = el("div", "buttons");
    for (const [key, name] of [["p", "positive"], ["n", "negative"], ["u", "uncertain"]]) {
      const b = el("button", "", `${key} ${name}`);
      b.type = "button";
      b.addEventListener("click", () => { select(i); label(name); });
      buttons.appendChild(b);
    }
    const like = el("button", "", "more like this");
    like.type = "button";
    like.addEventListener("click", () => { $("example-q").value = `${item.path}:${item.frame}`; search("example", { q: $("example-q").value }); });
    buttons.appendChild(like);
    li.appendChild(buttons);
    li.addEventListener("click", (ev) => { if (ev.target.tagName !== "BUTTON") select(i); });
    list.appendChild(li);
    const cls = labelClass();
    if (cls && item.label[cls]) mark(li, item.label[cls]);
  });
  const n = page.items.length;
  status(`${page.query} — search: ${page.method} — results ${n ? page.offset + 1 : 0}–${page.offset + n}${page.more ? " (more)" : ""}`);
  $("prev").disabled = page.offset === 0;
  $("next").disabled = !page.more;
  select(n ? 0 : -1);
  state.renders += 1;
  document.body.dataset.renders = String(state.renders);
}

function mark(li, value) {
  li.classList.remove("positive", "negative", "uncertain");
  li.classList.add(value);
  li.querySelector(".badge").textContent = value;
  li.dataset.label = value;
}

function select(i) {
  const items = $("results").children;
  if (state.current >= 0 && items[state.current]) items[state.current].classList.remove("current");
  state.current = Math.max(-1, Math.min(i, items.length - 1));
  const li = items[state.current];
  if (li) { li.classList.add("current"); li.scrollIntoView({ block: "nearest" }); }
}

async function label(value) {
  const li = $("results").children[state.current];
  const cls = labelClass();
  if (!li) return;
  if (!cls) { status("type the class you are judging in 'Label class' first", true); return; }
  const item = state.page.items[state.current];
  try {
    await api("/api/label", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: item.path, start_s: item.start_s, end_s: item.end_s, class: cls, label: value, query: state.page.query }),
    });
    mark(li, value);
    document.body.dataset.labelled = String(Number(document.body.dataset.labelled || 0) + 1);
    select(state.current + 1);
  } catch (e) { status(e.message, true); }
}

async function search(kind, params, offset = 0) {
  state.kind = kind; state.params = params; state.offset = offset;
  status("searching…");
  try {
    const page = kind === "reranked"
      ? await api("/api/reranked?" + new URLSearchParams({ offset, mode: params.mode }))
      : await api("/api/search?" + new URLSearchParams(Object.assign({ kind, offset }, params)));
    render(page);
  } catch (e) { status(e.message, true); }
}

async function train() {
  const cls = labelClass();
  if (!cls) { status("type the class to train in 'Label class'", true); return; }
  const box = $("train-status");
  box.className = "";
  try {
    await api("/api/train", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ class: cls, mode: $("rank-mode").value }) });
    for (;;) {
      const job = await api("/api/train");
      box.textContent = `training ${cls}: ${job.step}`;
      if (job.state === "error") { box.className = "error"; box.textContent = `training failed: ${job.error}`; return; }
      if (job.state === "done") {
        const m = job.metrics;
        const pc = m.per_class[cls] || {};
        box.textContent = `head ${job.head_dir}: ${m.windows} windows, cross-validated accuracy ${(m.accuracy ?? 0).toFixed(3)}, ` +
          `${cls} precision ${(pc.precision ?? 0).toFixed(3)} recall ${(pc.recall ?? 0).toFixed(3)}; threshold ${job.threshold.toFixed(3)}`;
        document.body.dataset.trained = String(job.round);
        await search("reranked", { mode: $("rank-mode").value });
        return;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  } catch (e) { box.className = "error"; box.textContent = e.message; }
}

document.addEventListener("keydown", (ev) => {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const items = $("results").children;
  const key = ev.key;
  if (key === "j" || key === "ArrowDown") select(state.current + 1);
  else if (key === "k" || key === "ArrowUp") select(state.current - 1);
  else if (key === "p") label("positive");
  else if (key === "n") label("negative");
  else if (key === "u") label("uncertain");
  else if (key === " ") { const a = items[state.current] && items[state.current].querySelector("audio"); if (a) { a.paused ? a.play() : a.pause(); } }
  else if (key === "]" && state.page && state.page.more) search(state.kind, state.params, state.offset + state.page.items.length);
  else if (key === "[" && state.offset > 0) search(state.kind, state.params, Math.max(0, state.offset - 20));
  else return;
  ev.preventDefault();
});

$("class-form").addEventListener("submit", (ev) => { ev.preventDefault(); search("class", { q: $("class-q").value, threshold: $("class-threshold").value || 0 }); });
$("example-form").addEventListener("submit", (ev) => { ev.preventDefault(); search("example", { q: $("example-q").value }); });
$("train-form").addEventListener("submit", (ev) => { ev.preventDefault(); train(); });
$("next").addEventListener("click", () => search(state.kind, state.params, state.offset + state.page.items.length));
$("prev").addEventListener("click", () => search(state.kind, state.params, Math.max(0, state.offset - 20)));
$("upload").addEventListener("change", async () => {
  const f = $("upload").files[0];
  if (!f) return;
  status("embedding the upload…");
  try {
    const r = await api("/api/upload?" + new URLSearchParams({ name: f.name }), { method: "POST", body: f });
    $("example-q").value = r.query;
    await search("example", { q: r.query });
  } catch (e) { status(e.message, true); }
});
$("export-raven").addEventListener("click", (ev) => {
  const cls = labelClass() || $("class-q").value.trim();
  const t = $("class-threshold").value;
  ev.currentTarget.href = "/api/raven?" + new URLSearchParams(Object.assign({ class: cls }, Number(t) > 0 ? { threshold: t } : {}));
});

(async () => {
  try {
    const c = await api("/api/classes");
    $("output").textContent = c.output;
    const list = $("class-list");
    for (const name of [...c.head, ...c.audioset]) { const o = document.createElement("option"); o.value = name; list.appendChild(o); }
    document.body.dataset.ready = "1";
  } catch (e) { status(e.message, true); }
})();
