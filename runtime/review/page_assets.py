# ruff: noqa: E501  (stylesheet and script text: long lines read better unbroken)
"""The review page's stylesheet and script, inlined by :mod:`runtime.review.page`.

The script filters the event log by kind, time and text (the initial state comes from
the query string: ``?kind=gate.&since=2026-11-26T10:00&q=v3``), opens an event when a
link points at it, and on the served page (``data-mode="live"``) unlocks the operator
actions once a valid token is given; the token stays in the tab's session storage and
is sent as ``Authorization: Bearer`` to the API's POST endpoints only.
"""

from __future__ import annotations

__all__ = ["CSS", "JS"]

CSS = """
:root{--fg:#1d2430;--muted:#5b6575;--line:#d9dee6;--bg:#f6f7f9;--card:#fff;
--good:#1f7a3f;--good-bg:#e7f5ec;--bad:#b42318;--bad-bg:#fdecea;--warn:#9a5b00;
--warn-bg:#fff4e0;--info:#1d5fa8;--info-bg:#e8f0fb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header{background:#18202c;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header .sub{margin:4px 0 0;color:#c9d1dc}
header .sub b{color:#fff}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);
padding:8px 28px;display:flex;gap:18px;flex-wrap:wrap;align-items:center}
nav a{color:var(--info);text-decoration:none;font-weight:600}
main{max-width:1180px;margin:0 auto;padding:8px 28px 60px}
section{margin-top:26px}
h2{font-size:19px;margin:0 0 4px}
p.lead{margin:0 0 12px;color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px}
ol.story{list-style:none;padding:0;margin:0;display:grid;gap:12px}
.ch{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--info);
border-radius:8px;padding:12px 16px}
.ch.good{border-left-color:var(--good)}.ch.bad{border-left-color:var(--bad)}
.ch.warn{border-left-color:var(--warn)}
.ch .hl{font-size:16.5px;font-weight:650}
.ch .hl .tag{font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.04em;
padding:2px 7px;border-radius:10px;margin-right:8px;vertical-align:2px}
.ch.good .tag{background:var(--good-bg);color:var(--good)}
.ch.bad .tag{background:var(--bad-bg);color:var(--bad)}
.ch.warn .tag{background:var(--warn-bg);color:var(--warn)}
.ch.info .tag{background:var(--info-bg);color:var(--info)}
.ch .meta{color:var(--muted);font-size:13px;margin:2px 0 6px}
.ch ul{margin:6px 0 0;padding-left:20px}
.ch .cols{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:16px;margin-top:8px}
@media (max-width:900px){.ch .cols{grid-template-columns:1fr}}
a.evl{color:var(--info);text-decoration:none;font-family:ui-monospace,monospace;font-size:12.5px}
table{border-collapse:collapse;width:100%;font-size:14px;background:var(--card)}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:650}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:var(--good);font-weight:700}.fail{color:var(--bad);font-weight:700}
tr.drifted td{background:var(--bad-bg)}
.badge{display:inline-block;font-size:12px;font-weight:650;padding:1px 8px;border-radius:10px;
background:#eef1f5;color:var(--fg);white-space:nowrap}
.badge.champion,.badge.good{background:var(--good-bg);color:var(--good)}
.badge.refused,.badge.bad{background:var(--bad-bg);color:var(--bad)}
.badge.candidate,.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.info{background:var(--info-bg);color:var(--info)}
.lineage{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:0 0 12px}
.lineage .node{border:1px solid var(--line);border-radius:6px;padding:4px 10px;background:#fff}
.lineage .node.champion{border:2px solid var(--good)}
.lineage .node.refused{border-color:var(--bad);color:var(--bad)}
.lineage .arrow{color:var(--muted)}
svg.chart{max-width:980px;display:block;background:#fff;border:1px solid var(--line);border-radius:6px;margin:6px 0}
svg .ln{fill:none;stroke:#1d5fa8;stroke-width:1.6}
svg .dot{fill:#1d5fa8}
svg .grid{stroke:#eceff3}
svg .frame{fill:none;stroke:#c3cad4}
svg .thr{stroke:#9a5b00;stroke-dasharray:6 4;stroke-width:1.4}
svg .thl{fill:#9a5b00;font-size:11px}
svg .alarm{stroke:#b42318;stroke-width:1.8}
svg .alarml{fill:#b42318;font-size:11px;font-weight:600}
svg .mark{stroke:#5b6575;stroke-dasharray:3 3;stroke-width:1.2}
svg .markl{fill:#5b6575;font-size:11px}
svg .band{fill:#1f7a3f;fill-opacity:.06;stroke:#1f7a3f;stroke-opacity:.25}
svg .band.alt{fill:#1d5fa8;fill-opacity:.06;stroke:#1d5fa8}
svg .bl{fill:#1f7a3f;font-size:11px;font-weight:600}
svg .tk,svg .al{fill:#5b6575;font-size:11px}
svg .ct{fill:#1d2430;font-size:13px;font-weight:650}
p.cap{margin:0 0 14px;color:var(--muted);font-size:13.5px}
td.h{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
td.h0{background:#fbe3e0}td.h1{background:#fdeede}td.h2{background:#fef6dc}
td.h3{background:#eef6e4}td.h4{background:#ddf0e2}
td .drop{color:var(--bad);font-size:12px;font-weight:700;margin-left:4px}
td .rise{color:var(--good);font-size:12px;font-weight:700;margin-left:4px}
.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;margin:8px 0 10px}
.filters fieldset{border:1px solid var(--line);border-radius:6px;padding:4px 10px;margin:0;
display:flex;flex-wrap:wrap;gap:2px 12px;background:#fff}
.filters legend{font-size:12px;color:var(--muted);padding:0 4px}
.filters label{font-size:13.5px;white-space:nowrap}
.filters input[type=search],.filters input[type=datetime-local]{font:inherit;font-size:13.5px;
padding:3px 6px;border:1px solid var(--line);border-radius:5px}
button{font:inherit;font-size:13.5px;padding:4px 12px;border-radius:5px;border:1px solid #98a2b3;
background:#fff;cursor:pointer}
button.primary{background:#1d5fa8;color:#fff;border-color:#1d5fa8}
button.danger{color:var(--bad);border-color:var(--bad)}
#count{color:var(--muted);font-size:13.5px}
.log{display:grid;gap:4px}
details.ev{background:#fff;border:1px solid var(--line);border-radius:6px}
details.ev>summary{cursor:pointer;padding:6px 10px;display:grid;
grid-template-columns:52px 150px 140px 44px minmax(0,1fr);gap:8px;align-items:baseline;
list-style:none}
details.ev>summary::-webkit-details-marker{display:none}
details.ev[open]>summary{border-bottom:1px solid var(--line);background:#f3f6fa}
details.ev .id{color:var(--muted);font-family:ui-monospace,monospace;font-size:12.5px}
details.ev time{color:var(--muted);font-size:13px;font-variant-numeric:tabular-nums}
details.ev .sum{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
details.ev[open] .sum{white-space:normal}
details.ev .body{padding:10px 14px 12px}
details.ev.flash{outline:3px solid #f0b429}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 10px;font-size:14px}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0}
pre{background:#f3f5f8;border:1px solid var(--line);border-radius:5px;padding:8px;overflow:auto;
font-size:12.5px;max-height:360px}
details.raw summary{cursor:pointer;color:var(--muted);font-size:13px}
.reason{color:var(--muted);font-size:13px}
.note{color:var(--muted);font-style:italic}
.act{display:none}
body.authed .act{display:inline-block}
#auth{display:flex;gap:6px;align-items:center;margin-top:10px;flex-wrap:wrap}
#auth input{font:inherit;font-size:13.5px;padding:3px 8px;border-radius:5px;border:1px solid #6b7788;
background:#222c3a;color:#fff;width:240px}
#auth .msg{color:#c9d1dc;font-size:13px}
#toast{position:fixed;right:18px;bottom:18px;max-width:480px;background:#18202c;color:#fff;
padding:10px 14px;border-radius:8px;display:none;z-index:10}
#toast.show{display:block}
[hidden]{display:none !important}
"""

JS = r"""
(function () {
  "use strict";
  const body = document.body;
  const items = Array.from(document.querySelectorAll("details.ev"));
  const boxes = Array.from(document.querySelectorAll("#kinds input[type=checkbox]"));
  const since = document.getElementById("since");
  const until = document.getElementById("until");
  const q = document.getElementById("q");
  const count = document.getElementById("count");

  function toTime(v) {
    if (!v) return null;
    const t = Date.parse(/[zZ]|[+-]\d\d:\d\d$/.test(v) ? v : v + "Z");
    return isNaN(t) ? null : t;
  }
  function apply(push) {
    const on = new Set(boxes.filter(b => b.checked).map(b => b.value));
    const lo = toTime(since.value), hi = toTime(until.value);
    const text = q.value.trim().toLowerCase();
    let shown = 0;
    for (const el of items) {
      const t = Date.parse(el.dataset.ts);
      const ok = on.has(el.dataset.kind) && (lo === null || t >= lo) && (hi === null || t < hi) &&
        (!text || el.textContent.toLowerCase().includes(text));
      el.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown + " of " + items.length + " events shown";
    if (push && window.history && history.replaceState) {
      const p = new URLSearchParams();
      if (boxes.some(b => !b.checked)) boxes.filter(b => b.checked).forEach(b => p.append("kind", b.value));
      if (since.value) p.set("since", since.value);
      if (until.value) p.set("until", until.value);
      if (text) p.set("q", text);
      const s = p.toString();
      try { history.replaceState(null, "", (s ? "?" + s : location.pathname) + location.hash); }
      catch (e) { /* file:// pages may refuse; the filter still applies */ }
    }
  }
  function fromQuery() {
    const p = new URLSearchParams(location.search);
    const kinds = p.getAll("kind").flatMap(k => k.split(",")).map(k => k.trim()).filter(Boolean);
    if (kinds.length) {
      for (const b of boxes) b.checked = kinds.some(k => b.value === k || (k.endsWith(".") && b.value.startsWith(k)));
    }
    if (p.get("since")) since.value = p.get("since").replace(/Z$/, "").slice(0, 19);
    if (p.get("until")) until.value = p.get("until").replace(/Z$/, "").slice(0, 19);
    if (p.get("q")) q.value = p.get("q");
  }
  function reveal(id) {
    const el = document.getElementById(id);
    if (!el || !el.matches("details.ev")) return;
    const box = boxes.find(b => b.value === el.dataset.kind);
    if (box && !box.checked) box.checked = true;
    since.value = ""; until.value = ""; q.value = "";
    apply(true);
    el.open = true;
    el.classList.add("flash");
    setTimeout(() => el.classList.remove("flash"), 1600);
    el.scrollIntoView({block: "center"});
  }
  boxes.forEach(b => b.addEventListener("change", () => apply(true)));
  [since, until].forEach(i => i.addEventListener("change", () => apply(true)));
  q.addEventListener("input", () => apply(true));
  document.getElementById("all-kinds").addEventListener("click", () => { boxes.forEach(b => b.checked = true); apply(true); });
  document.getElementById("reset").addEventListener("click", () => {
    boxes.forEach(b => b.checked = b.dataset.default === "1");
    since.value = ""; until.value = ""; q.value = ""; apply(true);
  });
  document.addEventListener("click", ev => {
    const a = ev.target.closest("a.evl");
    if (a) { ev.preventDefault(); history.replaceState && reveal(a.getAttribute("href").slice(1)); }
  });
  fromQuery();
  apply(false);
  if (location.hash.startsWith("#ev-")) reveal(location.hash.slice(1));

  if (body.dataset.mode !== "live") return;
  const api = body.dataset.api || "";
  const ui = body.dataset.ui || "";
  const form = document.getElementById("auth");
  const input = document.getElementById("token");
  const msg = form.querySelector(".msg");
  const toast = document.getElementById("toast");
  const KEY = "driftloop-token";
  function say(text) { toast.textContent = text; toast.classList.add("show"); setTimeout(() => toast.classList.remove("show"), 6000); }
  async function check(token) {
    const r = await fetch(ui + "/session", {method: "POST", headers: {"Authorization": "Bearer " + token}});
    return r.status === 204;
  }
  async function unlock(token) {
    if (await check(token)) {
      sessionStorage.setItem(KEY, token); body.classList.add("authed");
      msg.textContent = "actions unlocked"; input.value = "";
      form.querySelector("button").textContent = "Lock";
      return true;
    }
    sessionStorage.removeItem(KEY); body.classList.remove("authed");
    msg.textContent = "that token is not valid (actions stay locked)";
    return false;
  }
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    if (body.classList.contains("authed")) {
      sessionStorage.removeItem(KEY); body.classList.remove("authed");
      msg.textContent = "read-only"; form.querySelector("button").textContent = "Unlock actions";
      return;
    }
    if (input.value.trim()) await unlock(input.value.trim());
  });
  const saved = sessionStorage.getItem(KEY);
  if (saved) unlock(saved);
  document.addEventListener("click", async ev => {
    const b = ev.target.closest("button[data-verb]");
    if (!b) return;
    const verb = b.dataset.verb, version = b.dataset.version;
    let reason = null;
    if (verb === "reject" || verb === "rollback") {
      reason = prompt("Why " + verb + " " + version + "? (recorded in the event log)", "");
      if (reason === null) return;
    } else if (!confirm(verb + " " + version + "?")) return;
    const token = sessionStorage.getItem(KEY) || "";
    const r = await fetch(api + "/v1/models/" + encodeURIComponent(version) + "/" + verb, {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify(reason ? {reason: reason} : {}),
    });
    let out = {};
    try { out = await r.json(); } catch (e) { /* not JSON */ }
    if (r.ok) { say(verb + " " + version + ": done; champion is " + out.champion); setTimeout(() => location.reload(), 1200); }
    else say(verb + " " + version + " refused (" + r.status + "): " + (out.error || r.statusText));
  });
})();
"""
