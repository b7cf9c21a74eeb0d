// wfe web view, controls: see src/web/controls.rs.
// Without this script every control is a plain form (POST, then 303 back).
// With it: a JSON editor says at once whether its text parses, and a
// control form is sent with fetch(); on success the page is fetched again
// and its main part swapped in (the event stream keeps it current after),
// on failure the page the server answered (with the error inline) is shown.
(function () {
  "use strict";
  function checkJson(area) {
    var out = area.form && area.form.querySelector("[data-json-check]");
    var text = area.value.trim();
    var msg = "";
    if (text !== "") {
      try { JSON.parse(text); } catch (e) { msg = "not valid JSON: " + e.message; }
    }
    area.setCustomValidity(msg);
    if (out) out.textContent = msg;
    return msg === "";
  }
  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var main = doc.getElementById("main");
    if (main) document.getElementById("main").replaceWith(main);
    document.dispatchEvent(new Event("wfe:swapped"));
  }
  document.addEventListener("input", function (e) {
    if (e.target.matches && e.target.matches("textarea[data-json]")) checkJson(e.target);
  });
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches("form[data-control]")) return;
    var areas = form.querySelectorAll("textarea[data-json]");
    for (var i = 0; i < areas.length; i++) {
      if (!checkJson(areas[i])) { e.preventDefault(); areas[i].reportValidity(); return; }
    }
    if (!window.fetch) return;
    e.preventDefault();
    var body = new URLSearchParams(new FormData(form));
    fetch(form.action, { method: "POST", body: body, credentials: "same-origin", redirect: "follow" })
      .then(function (res) { return res.text().then(function (t) { return [res, t]; }); })
      .then(function (r) {
        if (r[0].redirected && new URL(r[0].url).pathname !== location.pathname) { location.assign(r[0].url); return; }
        swap(r[1]);
      })
      .catch(function () { form.submit(); });
  });
  // The panel follows its run: one event stream (closed while the tab is
  // hidden); each `run` event re-fetches the panel, unless the person is
  // typing in it (then once they leave the field).
  var marker = document.querySelector("[data-controls-run]");
  if (marker && window.EventSource) {
    var src = null, pending = false, timer = null;
    // Typing in a field, or a field changed and not yet sent: a refresh
    // would throw that away, so it waits.
    var busy = function () {
      var a = document.activeElement;
      if (a && a.closest && a.closest("#main form") && a.matches("input:not([type=hidden]),textarea,select")) return true;
      var els = document.querySelectorAll("#main form input:not([type=hidden]), #main form textarea, #main form select");
      for (var i = 0; i < els.length; i++) {
        var e = els[i];
        if (e.type === "checkbox" || e.type === "radio") { if (e.checked !== e.defaultChecked) return true; }
        else if (e.tagName === "SELECT") {
          var d = 0;
          for (var j = 0; j < e.options.length; j++) if (e.options[j].defaultSelected) d = j;
          if (e.selectedIndex !== d) return true;
        } else if (e.value !== e.defaultValue) return true;
      }
      return false;
    };
    var refresh = function () {
      if (busy()) { pending = true; return; }
      pending = false;
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (t) { if (!t) return; if (busy()) { pending = true; } else { swap(t); } });
    };
    var open = function () {
      var run = marker.getAttribute("data-controls-run");
      src = new EventSource("/events?run=" + encodeURIComponent(run) + (marker.getAttribute("data-repo-q") || ""));
      var soon = function () { clearTimeout(timer); timer = setTimeout(refresh, 50); };
      src.addEventListener("run", soon);
      // What changed between the page's render and the stream's start.
      src.addEventListener("open", soon);
    };
    document.addEventListener("focusout", function () { if (pending) setTimeout(refresh, 0); });
    // A control sent: the page it answered is current.
    document.addEventListener("wfe:swapped", function () { pending = false; });
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { if (src) { src.close(); src = null; } }
      else if (!src) { open(); refresh(); }
    });
    if (!document.hidden) open();
  }
})();
