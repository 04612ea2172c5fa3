"""The page's inline CSS and JavaScript (no CDN: the report must open offline and by mail)."""

CSS = """
:root { --fg: #1d1d1f; --muted: #666; --line: #ddd; --ok: #2e7d32; --bad: #c62828; --bg2: #f6f7f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
header.top { background: #20324a; color: #fff; padding: 14px 24px; }
header.top h1 { margin: 0 0 4px; font-size: 22px; }
header.top .sub { color: #c8d3e0; font-size: 13px; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line);
      padding: 6px 24px; z-index: 5; font-size: 13px; }
nav a { margin-right: 14px; color: #20324a; text-decoration: none; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 24px 48px; }
section { margin-top: 26px; }
h2 { font-size: 18px; border-bottom: 2px solid #20324a; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.muted { color: var(--muted); }
.note { background: #fff8e1; border-left: 4px solid #f9a825; padding: 6px 10px; margin: 8px 0; }
.missing { background: var(--bg2); border-left: 4px solid #90a4ae; padding: 8px 12px; }
code { background: var(--bg2); padding: 1px 4px; border-radius: 3px; font-size: 12.5px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 170px; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .d { font-size: 12px; color: var(--muted); }
.plain { font-size: 15px; margin: 10px 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { font-weight: normal; color: var(--muted); }
table.kv td { overflow-wrap: anywhere; }  /* long paths wrap on a phone */
/* Any other wide table (per source, other evaluations) scrolls in itself on a phone. */
main table:not(.sortable):not(.kv) { display: block; max-width: 100%; overflow-x: auto; }
/* A section the nav jumps to starts below the sticky nav (three lines of it on a phone). */
section, h2, h3, [id] { scroll-margin-top: 80px; }
table.sortable th { cursor: pointer; user-select: none; background: var(--bg2); position: sticky; top: 0; }
table.sortable th::after { content: " \\2195"; color: #aaa; font-size: 11px; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: #20324a; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: #20324a; }
.scroll { max-height: 640px; overflow: auto; border: 1px solid var(--line); display: inline-block;
          max-width: 100%; }  /* scrolls inside itself: a phone's page scrolled sideways */
.bar { display: inline-block; height: 8px; background: #4c78a8; vertical-align: middle; margin-right: 6px; }
.low { color: var(--bad); font-weight: 600; }
.pos { color: var(--ok); } .neg { color: var(--bad); }
img.fig { max-width: 100%; height: auto; border: 1px solid #eee; }
.zoomable { overflow: auto; max-height: 92vh; border: 1px solid #eee; }
.zoomable > img, .zoomable > svg { cursor: zoom-in; max-width: 100%; height: auto; display: block; }
.zoomable:focus-visible { outline: 3px solid #4c78a8; outline-offset: 2px; }
.zoom-toggle { font: inherit; font-size: 12px; margin: 4px 0; padding: 2px 10px; border: 1px solid #4c78a8;
               border-radius: 4px; background: #fff; color: #20324a; cursor: pointer; }
.zoom-toggle[aria-pressed="true"] { background: #4c78a8; color: #fff; }
.zoom-toggle:focus-visible { outline: 3px solid #4c78a8; outline-offset: 2px; }
.zoomable.zoomed > img, .zoomable.zoomed > svg { cursor: zoom-out; max-width: none; }
svg.confusion rect.cell:hover { stroke: #000; stroke-width: 1.5; }
svg.confusion text.hl { font-weight: bold; fill: #c62828; }
.readout { min-height: 1.4em; margin: 4px 0; font-size: 13px; }  /* room kept: no jump on hover */
.scale { display: flex; align-items: center; gap: 6px; font-size: 12px; color: var(--muted); margin: 6px 0; }
.bar-scale { display: inline-block; width: 160px; height: 10px; border: 1px solid #ccc; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.tile { border: 2px solid var(--line); border-radius: 6px; padding: 6px; margin: 0; font-size: 12px; }
.tile.ok { border-color: #a5d6a7; } .tile.bad { border-color: #ef9a9a; }
.tile img, .tile .noimg { width: 128px; height: 128px; object-fit: contain; display: block;
                          margin: 0 auto 4px; background: var(--bg2); }
.tile .noimg { display: flex; align-items: center; justify-content: center; color: var(--muted);
               text-align: center; font-size: 11px; }
.tile .t { color: var(--muted); } .tile b { font-weight: 600; }
.tile figcaption { overflow-wrap: anywhere; }
.tile .file { color: var(--muted); font-size: 11px; }
details { margin: 6px 0; } summary { cursor: pointer; color: #20324a; }
input[type=search] { display: block; padding: 4px 8px; margin: 4px 0 8px; width: 260px; }
.cols { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.cols > div { min-width: 0; max-width: 100%; overflow-x: auto; }  /* a wide table scrolls in its column */
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""

# Sort any <table class="sortable"> by clicking (or Enter on) a header; cells may carry a
# data-v attribute with the raw number so "9.5%" sorts below "10.2%". Filter boxes hide rows.
JS = """
(function () {
  "use strict";
  function key(cell, numeric) {
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (!numeric) { return raw.toLowerCase(); }
    var x = parseFloat(raw);
    return isNaN(x) ? -Infinity : x;
  }
  function sortTable(table, col) {
    var th = table.tHead.rows[0].cells[col];
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, k: key(row.cells[col], numeric), i: i };
    });
    rows.sort(function (a, b) {
      var c = a.k < b.k ? -1 : (a.k > b.k ? 1 : 0);
      if (dir === "descending") { c = -c; }
      return c !== 0 ? c : a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "click to sort";
      th.addEventListener("click", function () { sortTable(table, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, col); }
      });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (box) {
    var table = document.getElementById(box.getAttribute("data-filter"));
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.style.display = !q || row.cells[0].textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  });
  // A button above each figure (or a click on it, or Enter on the focused figure) switches it
  // between fit to width and full size, scrolling inside its box. The box itself is a named
  // region a keyboard can scroll; made a button, every figure was read out as the same one.
  document.querySelectorAll(".zoomable").forEach(function (box) {
    var inner = box.querySelector("img, svg");
    var name = (inner && (inner.getAttribute("alt") || inner.getAttribute("aria-label"))) || "figure";
    box.tabIndex = 0;
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", name);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "zoom-toggle";
    button.setAttribute("aria-label", "Full size: " + name);
    button.textContent = "Full size";
    box.parentNode.insertBefore(button, box);
    function show() {
      button.setAttribute("aria-pressed", box.classList.contains("zoomed") ? "true" : "false");
    }
    function toggle() { box.classList.toggle("zoomed"); show(); }
    show();
    button.addEventListener("click", toggle);
    box.addEventListener("click", function (e) {
      // A tap on a confusion square reads out its numbers (below) instead: a phone has no hover.
      if (e.target.classList && e.target.classList.contains("cell")) { return; }
      toggle();
    });
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); }
    });
  });
  // Hovering (or tapping) a confusion cell marks its true (row) and predicted (column) class
  // names and writes its numbers under the matrix, where a touch screen shows them too.
  document.querySelectorAll("svg.confusion").forEach(function (svg) {
    var marked = [];
    var readout = document.getElementById(svg.getAttribute("data-readout"));
    function mark(e) {
      var cell = e.target;
      if (!cell.classList || !cell.classList.contains("cell")) { return; }
      marked.forEach(function (t) { t.classList.remove("hl"); });
      marked = [];
      var row = svg.querySelector('text.row[data-row="' + cell.getAttribute("data-row") + '"]');
      var col = svg.querySelector('text.col[data-col="' + cell.getAttribute("data-col") + '"]');
      [row, col].forEach(function (t) { if (t) { t.classList.add("hl"); marked.push(t); } });
      var tip = cell.querySelector("title");
      if (readout && tip) { readout.textContent = tip.textContent.split("\\n").join(" \\u00b7 "); }
    }
    svg.addEventListener("mouseover", mark);
    svg.addEventListener("click", mark);
  });
})();
"""
