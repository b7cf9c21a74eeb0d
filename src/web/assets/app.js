// wfe web view. Plain script, no build step: the pages work without it
// (plain links and forms); it adds keyboard navigation, live updates over
// one server-sent-events stream per tab, and a virtual log viewer.
"use strict";
(function () {
  const body = document.body;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // ---- Keyboard: j/k between rows, Enter opens, / searches, Esc leaves.
  let cursor = -1;
  function rows() { return $$("[data-nav]"); }
  function select(i) {
    const all = rows();
    if (!all.length) return;
    cursor = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((r, k) => r.classList.toggle("sel", k === cursor));
    all[cursor].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    if (e.key === "Escape") {
      if (typing) t.blur();
      $$("details[open].closable").forEach((d) => d.removeAttribute("open"));
      rows().forEach((r) => r.classList.remove("sel"));
      cursor = -1;
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j") { select(cursor + 1); e.preventDefault(); }
    else if (e.key === "k") { select(cursor - 1); e.preventDefault(); }
    else if (e.key === "Enter" && cursor >= 0) {
      const row = rows()[cursor];
      const link = row && (row.tagName.toLowerCase() === "a" ? row : $("a", row));
      // An SVG link (the DAG's nodes) has no click(): follow its href.
      if (link && link.click) { link.click(); e.preventDefault(); }
      else if (link) { location.assign(link.getAttribute("href")); e.preventDefault(); }
    } else if (e.key === "/") {
      const box = $("[data-log-filter]") || $("main input[type=search]") || $("[data-search]");
      if (box) { box.focus(); e.preventDefault(); }
    }
  });
  $$("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.submit()));

  // ---- The virtual log: only the rows in view are in the DOM.
  const LINE = 18; // px, as .log-row in app.css
  const logBox = $("#log[data-src]");
  let log = null;
  function Log(box) {
    this.box = box;
    this.lines = [];
    this.shown = [];
    this.filter = "";
    this.partial = "";
    // Live entries that arrive before the committed log has loaded wait
    // for it: `set` would otherwise replace them.
    this.ready = false;
    this.early = [];
    box.textContent = "";
    this.spacer = document.createElement("div");
    this.spacer.className = "log-spacer";
    this.view = document.createElement("div");
    this.view.className = "log-view";
    this.spacer.appendChild(this.view);
    box.appendChild(this.spacer);
    box.addEventListener("scroll", () => this.paint());
    window.addEventListener("resize", () => this.paint());
  }
  // The header's line count follows the lines held.
  Log.prototype.count = function () {
    const c = $("[data-log-count]");
    if (c) c.textContent = this.lines.length;
  };
  Log.prototype.set = function (lines) {
    this.lines = lines;
    this.refilter();
    this.count();
    this.ready = true;
    if (this.early.length) { const early = this.early; this.early = []; this.append(early); }
  };
  Log.prototype.live = function (entries) {
    if (this.ready) this.append(entries);
    else this.early.push(...entries);
  };
  Log.prototype.refilter = function () {
    const f = this.filter.toLowerCase();
    this.shown = f ? this.lines.filter((l) => l.line.toLowerCase().includes(f)) : this.lines.slice();
    this.paint();
  };
  Log.prototype.append = function (entries) {
    const stick = this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - LINE * 2;
    for (const e of entries) {
      if (e.kind === "partial") { this.partial += e.text; continue; }
      if (e.kind !== "line") continue;
      this.partial = "";
      const l = { n: this.lines.length, time: e.time, stream: e.stream, line: e.text };
      this.lines.push(l);
      if (!this.filter || l.line.toLowerCase().includes(this.filter.toLowerCase())) this.shown.push(l);
    }
    this.paint();
    this.count();
    if (stick) this.box.scrollTop = this.box.scrollHeight;
  };
  Log.prototype.paint = function () {
    const extra = this.partial ? 1 : 0;
    const total = this.shown.length + extra;
    this.spacer.style.height = total * LINE + "px";
    const first = Math.max(0, Math.floor(this.box.scrollTop / LINE) - 20);
    const last = Math.min(total, Math.ceil((this.box.scrollTop + this.box.clientHeight) / LINE) + 20);
    this.view.style.transform = "translateY(" + first * LINE + "px)";
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const row = document.createElement("div");
      row.className = "log-row";
      if (i < this.shown.length) {
        const l = this.shown[i];
        const a = document.createElement("a");
        a.href = "#L" + (l.n + 1);
        a.textContent = l.n + 1;
        a.className = "ln";
        row.id = "L" + (l.n + 1);
        if (location.hash === "#L" + (l.n + 1)) row.classList.add("hl");
        if (l.stream && l.stream !== "stdout") row.classList.add("st-" + l.stream);
        const text = document.createElement("span");
        text.textContent = l.line;
        row.append(a, text);
      } else {
        row.classList.add("partial");
        row.textContent = this.partial;
      }
      frag.appendChild(row);
    }
    this.view.replaceChildren(frag);
  };
  Log.prototype.jump = function () {
    const m = /^#L(\d+)$/.exec(location.hash);
    if (!m) return;
    const n = Number(m[1]) - 1;
    const i = this.shown.findIndex((l) => l.n === n);
    if (i >= 0) {
      this.box.scrollTop = Math.max(0, i * LINE - this.box.clientHeight / 3);
      this.paint();
      this.box.scrollIntoView({ block: "start" });
    }
  };
  if (logBox) {
    log = new Log(logBox);
    fetch(logBox.dataset.src, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : []))
      .then((lines) => { log.set(lines); log.jump(); })
      .catch(() => { log.set([]); });
    const box = $("[data-log-filter]");
    if (box) box.addEventListener("input", () => { log.filter = box.value; log.refilter(); });
    window.addEventListener("hashchange", () => { log.paint(); log.jump(); });
  }

  // ---- Live updates: one stream per tab, closed while the tab is hidden.
  let source = null;
  let fetching = false;
  let again = false;
  function refresh() {
    const live = $("#live");
    if (!live) return;
    if (fetching) { again = true; return; }
    fetching = true;
    const url = new URL(location.href);
    url.searchParams.set("fragment", "live");
    url.hash = "";
    fetch(url, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (html !== null) {
          live.innerHTML = html;
          if (cursor >= 0) select(cursor);
          // The phase finished: its log header stops saying `live`.
          const mark = $("[data-log-live]");
          if (mark && mark.textContent && !$("[data-phase-running]", live)) mark.textContent = "";
        }
      })
      .catch(() => {})
      .finally(() => {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }
  function open() {
    if (source || !(body.dataset.run || body.dataset.list)) return;
    const q = new URLSearchParams();
    q.set("repo", body.dataset.repo || "0");
    if (body.dataset.run) q.set("run", body.dataset.run);
    if (body.dataset.phase) q.set("phase", body.dataset.phase);
    source = new EventSource("/events?" + q.toString());
    source.addEventListener("run", refresh);
    if (body.dataset.list) source.addEventListener("runs", refresh);
    source.addEventListener("log", (e) => {
      if (!log) return;
      try { log.live(JSON.parse(e.data)); } catch (_) { /* a broken event is skipped */ }
    });
  }
  function close() {
    if (source) { source.close(); source = null; }
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") close();
    else { open(); refresh(); }
  });
  if (document.visibilityState !== "hidden") open();
  window.wfe = { refresh: refresh, streamOpen: () => source !== null };
})();
