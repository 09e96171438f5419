"""``gleitzeit report``: one self-contained HTML page about a workflow run.

The page embeds the run (:meth:`GleitzeitClient.export_workflow`) as JSON and
draws it with inline JavaScript and CSS: nothing is loaded from elsewhere.
It shows the task graph (a layered drawing on a canvas), a timeline of every
task's recorded attempt (start, end, status, retries), and the selected
task's parameters and result or error. Up to :data:`ALL_ROWS` tasks the
timeline holds one row per task; beyond that it renders only the rows in
view (a virtual list), so a 10,000-task run stays quick.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Final

__all__ = ["ALL_ROWS", "MAX_VALUE_CHARS", "render_report"]

#: Timelines up to this many tasks render every row; longer ones only those in view.
ALL_ROWS: Final = 1000
#: A task's params, result or error longer than this (as JSON) is cut in the page.
MAX_VALUE_CHARS: Final = 20_000


def _bounded(value: Any) -> Any:
    """``value``, or a note with its first characters when its JSON is too long."""
    if value is None:
        return None
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) <= MAX_VALUE_CHARS:
        return value
    return {"truncated": f"{len(text)} characters", "start": text[:MAX_VALUE_CHARS]}


def _embedded_json(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_report(run: dict[str, Any]) -> str:
    """The HTML page for an exported run (see :meth:`GleitzeitClient.export_workflow`)."""
    data = dict(run)
    data["tasks"] = [
        {
            **task,
            "params": _bounded(task.get("params")),
            "result": _bounded(task.get("result")),
            "error": _bounded(task.get("error")),
        }
        for task in run["tasks"]
    ]
    values = {
        "title": html.escape(f"gleitzeit report: {run['name']}"),
        "all_rows": str(ALL_ROWS),
        "data": _embedded_json(data),
    }
    return re.sub(r"\{\{(title|all_rows|data)\}\}", lambda m: values[m.group(1)], _PAGE)


_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#fff; --panel:#f8f9fb;
  --completed:#12b76a; --failed:#f04438; --running:#2e90fa; --cancelled:#9e77ed;
  --skipped:#fdb022; --pending:#d0d5dd; --queued:#d0d5dd; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg); }
header { padding: 16px 24px; border-bottom: 1px solid var(--line); background: var(--panel); }
h1 { font-size: 20px; margin: 0 0 6px; }
h2 { font-size: 15px; margin: 0 0 8px; }
.meta { color: var(--muted); display: flex; flex-wrap: wrap; gap: 6px 18px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
  font-size: 12px; background: var(--pending); }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(280px, 2fr); gap: 16px;
  padding: 16px 24px; }
section { border: 1px solid var(--line); border-radius: 8px; padding: 12px; min-width: 0; }
#graph-section { grid-column: 1 / 3; }
#graph-wrap { overflow: auto; max-height: 420px; border: 1px solid var(--line); }
#graph { display: block; cursor: pointer; }
.controls { display: flex; gap: 8px; margin-bottom: 8px; flex-wrap: wrap; align-items: center; }
.controls input, .controls select { font: inherit; padding: 3px 6px; }
#axis { position: relative; height: 18px; margin-left: 200px; color: var(--muted);
  font-size: 11px; border-bottom: 1px solid var(--line); }
#axis span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
#timeline { position: relative; height: 60vh; overflow-y: auto; overflow-x: hidden; }
#rows { position: relative; }
.row { position: absolute; left: 0; right: 0; height: 22px; display: flex;
  align-items: center; cursor: pointer; border-bottom: 1px solid #f2f4f7; }
.row:hover, .row.selected { background: #eef4ff; }
.label { width: 200px; flex: none; padding: 0 8px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.track { position: relative; flex: 1; height: 14px; }
.bar { position: absolute; top: 0; height: 14px; min-width: 2px; border-radius: 3px;
  background: var(--pending); }
.retry { position: absolute; top: -1px; font-size: 10px; color: var(--muted); }
.s-completed { background: var(--completed); } .s-failed { background: var(--failed); }
.s-running { background: var(--running); } .s-cancelled { background: var(--cancelled); }
.s-skipped { background: var(--skipped); } .s-pending, .s-queued { background: var(--pending); }
.legend { display: flex; gap: 12px; color: var(--muted); font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 4px; vertical-align: -1px; }
#details dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
#details dt { color: var(--muted); }
#details dd { margin: 0; overflow-wrap: anywhere; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px; overflow: auto; max-height: 320px; font-size: 12px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.muted { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div class="meta" id="summary"></div>
</header>
<main>
  <section id="graph-section">
    <h2>Graph</h2>
    <div class="muted" id="graph-info"></div>
    <div id="graph-wrap"><canvas id="graph" width="10" height="10"></canvas></div>
  </section>
  <section id="timeline-section">
    <h2>Timeline</h2>
    <div class="controls">
      <input id="filter" type="search" placeholder="filter by task name or id">
      <select id="status-filter"><option value="">every status</option></select>
      <span class="muted" id="timeline-info"></span>
    </div>
    <div class="legend" id="legend"></div>
    <div id="axis"></div>
    <div id="timeline"><div id="rows"></div></div>
  </section>
  <section id="details">
    <h2>Task</h2>
    <div class="muted" id="details-empty">Select a task in the timeline or the graph.</div>
    <div id="details-body" hidden></div>
  </section>
</main>
<script type="application/json" id="run-data">{{data}}</script>
<script>
"use strict";
window.addEventListener("error", function (e) {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + "\\n";
});
(function () {
  var ALL_ROWS = {{all_rows}};
  var ROW_H = 22;
  var D = JSON.parse(document.getElementById("run-data").textContent);
  var T = D.tasks;
  var byId = new Map();
  T.forEach(function (t, i) { byId.set(t.id, i); });
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtTime(s) {
    if (s === null || s === undefined) return "-";
    return new Date(s * 1000).toLocaleString();
  }
  function fmtDur(s) {
    if (s === null || s === undefined || !isFinite(s)) return "-";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
    if (s < 120) return s.toFixed(2) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function color(status) {
    return getComputedStyle(document.documentElement).getPropertyValue("--" + status).trim()
      || "#d0d5dd";
  }

  // --- header -------------------------------------------------------------
  document.getElementById("title").textContent = D.name;
  var counts = {};
  T.forEach(function (t) { counts[t.status] = (counts[t.status] || 0) + 1; });
  var summary = document.getElementById("summary");
  var badge = el("span", "badge s-" + D.status, D.status);
  summary.appendChild(badge);
  summary.appendChild(el("span", "", T.length + " tasks"));
  Object.keys(counts).sort().forEach(function (k) {
    summary.appendChild(el("span", "", counts[k] + " " + k));
  });
  var wall = D.started_at && D.finished_at ? D.finished_at - D.started_at : null;
  summary.appendChild(el("span", "", "wall time " + fmtDur(wall)));
  summary.appendChild(el("span", "", "started " + fmtTime(D.started_at)));
  summary.appendChild(el("span", "", "id " + D.id));
  if (D.error && D.error.message) summary.appendChild(el("span", "", "error: " + D.error.message));

  // --- graph: tasks in layers by longest path from a root ---------------------
  var n = T.length, level = new Int32Array(n), indeg = new Int32Array(n);
  var children = T.map(function () { return []; });
  var edges = 0;
  T.forEach(function (t, i) {
    t.dependencies.forEach(function (d) {
      var j = byId.get(d);
      if (j === undefined) return;
      children[j].push(i); indeg[i]++; edges++;
    });
  });
  var queue = [], head = 0;
  for (var i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
  while (head < queue.length) {
    var u = queue[head++];
    children[u].forEach(function (v) {
      if (level[u] + 1 > level[v]) level[v] = level[u] + 1;
      if (--indeg[v] === 0) queue.push(v);
    });
  }
  var layers = [];
  for (i = 0; i < n; i++) (layers[level[i]] = layers[level[i]] || []).push(i);
  var widest = layers.reduce(function (m, l) { return Math.max(m, l.length); }, 0);
  var small = n <= 300;
  var colW = small ? 170 : Math.max(12, Math.min(60, 4000 / Math.max(1, layers.length)));
  var rowH = small ? 30 : Math.max(2, Math.min(14, 8000 / Math.max(1, widest)));
  var pos = new Float64Array(2 * n);
  layers.forEach(function (l, x) {
    l.forEach(function (t, y) { pos[2 * t] = 10 + x * colW; pos[2 * t + 1] = 10 + y * rowH; });
  });
  var canvas = document.getElementById("graph");
  canvas.width = Math.ceil(20 + layers.length * colW);
  canvas.height = Math.ceil(20 + widest * rowH);
  canvas.dataset.nodes = String(n);
  canvas.dataset.edges = String(edges);
  document.getElementById("graph-info").textContent =
    n + " tasks, " + edges + " dependencies, " + layers.length + " layers (left to right)" +
    (small ? "" : "; names are in the timeline");
  var selected = -1;
  function drawGraph() {
    var g = canvas.getContext("2d");
    if (!g) return;
    g.clearRect(0, 0, canvas.width, canvas.height);
    var nodeW = small ? 140 : Math.max(2, colW * 0.5), nodeH = small ? 20 : Math.max(2, rowH * 0.7);
    g.strokeStyle = "rgba(100,110,130,0.35)";
    g.lineWidth = 1;
    g.beginPath();
    T.forEach(function (t, i) {
      t.dependencies.forEach(function (d) {
        var j = byId.get(d);
        if (j === undefined) return;
        g.moveTo(pos[2 * j] + nodeW, pos[2 * j + 1] + nodeH / 2);
        g.lineTo(pos[2 * i], pos[2 * i + 1] + nodeH / 2);
      });
    });
    g.stroke();
    var palette = {};
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "middle";
    for (var i = 0; i < n; i++) {
      var s = T[i].status;
      g.fillStyle = palette[s] || (palette[s] = color(s));
      g.fillRect(pos[2 * i], pos[2 * i + 1], nodeW, nodeH);
      if (i === selected) {
        g.strokeStyle = "#1d2330"; g.lineWidth = 2;
        g.strokeRect(pos[2 * i] - 1, pos[2 * i + 1] - 1, nodeW + 2, nodeH + 2);
      }
      if (small) {
        g.fillStyle = "#fff";
        var name = T[i].name.length > 20 ? T[i].name.slice(0, 19) + "\\u2026" : T[i].name;
        g.fillText(name, pos[2 * i] + 4, pos[2 * i + 1] + nodeH / 2);
      }
    }
  }
  canvas.addEventListener("click", function (e) {
    var r = canvas.getBoundingClientRect();
    var x = e.clientX - r.left, y = e.clientY - r.top;
    var layer = layers[Math.round((x - 10) / colW)] || layers[Math.floor((x - 10) / colW)];
    if (!layer) return;
    var k = Math.max(0, Math.min(layer.length - 1, Math.floor((y - 10) / rowH)));
    select(layer[k], true);
  });

  // --- timeline -----------------------------------------------------------
  var t0 = Infinity, t1 = -Infinity;
  T.forEach(function (t) {
    t.attempts.forEach(function (a) {
      t0 = Math.min(t0, a.start);
      t1 = Math.max(t1, a.end === null ? a.start : a.end);
    });
  });
  if (!isFinite(t0)) { t0 = D.started_at || 0; t1 = D.finished_at || t0; }
  if (D.finished_at && D.finished_at > t1) t1 = D.finished_at;
  var span = Math.max(t1 - t0, 1e-6);
  var axis = document.getElementById("axis");
  for (var k = 0; k <= 5; k++) {
    var tick = el("span", "", "+" + fmtDur(span * k / 5));
    tick.style.left = (k * 20) + "%";
    axis.appendChild(tick);
  }
  var legend = document.getElementById("legend");
  ["completed", "failed", "running", "cancelled", "skipped", "pending"].forEach(function (s) {
    var item = el("span", "", s);
    var sw = el("i", "s-" + s);
    item.insertBefore(sw, item.firstChild);
    legend.appendChild(item);
  });
  var statusFilter = document.getElementById("status-filter");
  Object.keys(counts).sort().forEach(function (s) {
    var o = el("option", "", s + " (" + counts[s] + ")"); o.value = s; statusFilter.appendChild(o);
  });
  function firstStart(t) { return t.attempts.length ? t.attempts[0].start : Infinity; }
  var order = T.map(function (_, i) { return i; });
  order.sort(function (a, b) { return firstStart(T[a]) - firstStart(T[b]) || a - b; });
  var rows = order;
  var box = document.getElementById("timeline"), rowsEl = document.getElementById("rows");
  var info = document.getElementById("timeline-info");
  function makeRow(i, top) {
    var t = T[i];
    var row = el("div", "row" + (i === selected ? " selected" : ""));
    row.style.top = top + "px";
    row.dataset.task = t.id;
    row.dataset.index = String(i);
    var label = el("span", "label", t.name);
    label.title = t.name + " (" + t.id + ")";
    row.appendChild(label);
    var track = el("div", "track");
    t.attempts.forEach(function (a) {
      var end = a.end === null ? t1 : a.end;
      var bar = el("div", "bar s-" + a.status);
      bar.style.left = (100 * (a.start - t0) / span) + "%";
      bar.style.width = Math.max(0, 100 * (end - a.start) / span) + "%";
      bar.title = t.name + ": " + a.status + ", " + fmtDur(end - a.start) +
        (a.attempt > 1 ? ", attempt " + a.attempt + " (" + (a.attempt - 1) + " retried)" : "");
      track.appendChild(bar);
      if (a.attempt > 1) {
        var r = el("span", "retry", "\\u21bb" + (a.attempt - 1));
        r.style.left = "calc(" + (100 * (end - t0) / span) + "% + 3px)";
        track.appendChild(r);
      }
    });
    if (!t.attempts.length) {
      var note = t.status === "completed" ? "no times recorded" : t.status;
      track.appendChild(el("span", "muted", note));
    }
    row.appendChild(track);
    return row;
  }
  var drawn = [-1, -1];
  function renderRows(force) {
    var virtual = rows.length > ALL_ROWS;
    var from = 0, to = rows.length;
    if (virtual) {
      from = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 20);
      to = Math.min(rows.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW_H) + 20);
    }
    if (!force && from === drawn[0] && to === drawn[1]) return;
    drawn = [from, to];
    var frag = document.createDocumentFragment();
    for (var r = from; r < to; r++) frag.appendChild(makeRow(rows[r], r * ROW_H));
    rowsEl.replaceChildren(frag);
    rowsEl.dataset.rendered = String(to - from);
    info.textContent = rows.length + " of " + T.length + " tasks" +
      (virtual ? " (drawing those in view)" : "");
  }
  function applyFilter() {
    var q = document.getElementById("filter").value.toLowerCase();
    var s = statusFilter.value;
    rows = order.filter(function (i) {
      var t = T[i];
      return (!s || t.status === s) &&
        (!q || t.name.toLowerCase().indexOf(q) >= 0 || t.id.toLowerCase().indexOf(q) >= 0);
    });
    rowsEl.style.height = (rows.length * ROW_H) + "px";
    box.scrollTop = 0;
    renderRows(true);
  }
  box.addEventListener("scroll", function () { renderRows(false); });
  document.getElementById("filter").addEventListener("input", applyFilter);
  statusFilter.addEventListener("change", applyFilter);
  rowsEl.addEventListener("click", function (e) {
    var row = e.target.closest(".row");
    if (row) select(Number(row.dataset.index), false);
  });

  // --- details ------------------------------------------------------------
  function block(title, value) {
    var frag = document.createDocumentFragment();
    frag.appendChild(el("h2", "", title));
    frag.appendChild(el("pre", "", JSON.stringify(value, null, 2)));
    return frag;
  }
  function select(i, scroll) {
    selected = i;
    var t = T[i];
    var body = document.getElementById("details-body");
    document.getElementById("details-empty").hidden = true;
    body.hidden = false;
    var dl = el("dl");
    function item(k, v) { dl.appendChild(el("dt", "", k)); dl.appendChild(el("dd", "", v)); }
    item("name", t.name); item("id", t.id); item("method", t.method); item("status", t.status);
    item("depends on", t.dependencies.length ? t.dependencies.map(function (d) {
      var j = byId.get(d); return j === undefined ? d : T[j].name;
    }).join(", ") : "-");
    t.attempts.forEach(function (a) {
      var end = a.end === null ? null : a.end;
      item("attempt " + (a.attempt || "?"), a.status + ", " + fmtTime(a.start) + " \\u2192 " +
        (end === null ? "still running" : fmtTime(end)) + " (" +
        fmtDur(end === null ? null : end - a.start) + ")");
    });
    body.replaceChildren(dl);
    body.appendChild(block("Parameters", t.params));
    if (t.error) body.appendChild(block("Error", t.error));
    else body.appendChild(block("Result", t.result));
    if (scroll) {
      var r = rows.indexOf(i);
      if (r >= 0) box.scrollTop = Math.max(0, r * ROW_H - box.clientHeight / 2);
    }
    renderRows(true);
    drawGraph();
  }

  rowsEl.style.height = (rows.length * ROW_H) + "px";
  var firstFailed = -1;
  for (i = 0; i < n && firstFailed < 0; i++) if (T[i].status === "failed") firstFailed = i;
  if (firstFailed >= 0) select(firstFailed, false);  // what went wrong, at once
  else { renderRows(true); drawGraph(); }
  document.body.dataset.reportReady = "1";
})();
</script>
</body>
</html>
"""
