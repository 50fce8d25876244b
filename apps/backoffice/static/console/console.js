// Operator console: live move and batch progress, and dead-letter selection.
// A file, not inline script: the admin's Content-Security-Policy allows
// scripts from this origin only.
(function () {
  "use strict";

  function formatSeconds(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    if (s < 60) return s + " s";
    return Math.floor(s / 60) + " min " + (s % 60) + " s";
  }

  function render(box, data) {
    var bar = box.querySelector("progress");
    var phase = box.querySelector("[data-field=phase]");
    var figures = box.querySelector("[data-field=figures]");
    var percent = data.percent === null || data.percent === undefined ? null : Number(data.percent);
    if (bar) {
      if (percent === null) bar.removeAttribute("value");
      else bar.value = Math.max(0, Math.min(100, percent));
    }
    if (phase) phase.textContent = data.phase + (data.path ? " (" + data.path + ")" : "");
    if (figures) {
      var parts = [];
      if (percent !== null) parts.push(percent.toFixed(1) + " %");
      if (data.rows_total) parts.push((data.rows_copied || 0) + " / " + data.rows_total + " rows");
      if (data.jobs_total !== undefined) {
        parts.push(data.jobs_done + " / " + data.jobs_total + " jobs" +
                   (data.jobs_failed ? ", " + data.jobs_failed + " failed" : ""));
      }
      if (data.eta_seconds !== null && data.eta_seconds !== undefined && !data.finished) {
        parts.push("about " + formatSeconds(data.eta_seconds) + " left");
      }
      if (data.freeze_seconds) parts.push("writes frozen " + Number(data.freeze_seconds).toFixed(2) + " s");
      if (data.error) parts.push("error: " + data.error);
      figures.textContent = parts.join(" \u00b7 ");
    }
    box.setAttribute("data-phase", data.phase || "");
    box.setAttribute("data-finished", data.finished ? "true" : "false");
  }

  function poll(box) {
    var url = box.getAttribute("data-progress-url");
    var interval = Number(box.getAttribute("data-interval") || 1000);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        render(box, data);
        if (!data.finished) window.setTimeout(function () { poll(box); }, interval);
      })
      .catch(function () {
        var figures = box.querySelector("[data-field=figures]");
        if (figures) figures.textContent = "progress unavailable, retrying";
        window.setTimeout(function () { poll(box); }, interval * 3);
      });
  }

  function init() {
    document.querySelectorAll("[data-progress-url]").forEach(function (box) {
      if (box.getAttribute("data-finished") !== "true") poll(box);
    });
    var all = document.querySelector("[data-select-all]");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll("input[name=ids][type=checkbox]").forEach(function (box) {
          box.checked = all.checked;
        });
      });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
