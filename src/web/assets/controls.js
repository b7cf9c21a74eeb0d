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
        if (r[0].redirected && r[0].url.indexOf(location.pathname) !== 0) { location.assign(r[0].url); return; }
        swap(r[1]);
      })
      .catch(function () { form.submit(); });
  });
})();
