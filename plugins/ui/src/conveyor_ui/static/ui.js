// Conveyor UI: charts from embedded JSON specs, and live pages. The page polls
// /api/changes (a counter that moves whenever the store commits) and, when it moves, fetches
// the same URL again and swaps the content in place: no reload, the scroll position and the
// runs ticked for comparison are kept.
(function () {
  "use strict";

  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll(".chart[data-spec]").forEach(function (el) {
      var source = document.getElementById(el.dataset.spec);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var layout = Object.assign({ paper_bgcolor: "#fff", plot_bgcolor: "#fff",
        font: { family: "system-ui, sans-serif", size: 12 } }, spec.layout || {});
      window.Plotly.react(el, spec.data || [], layout, { displaylogo: false, responsive: true });
    });
  }

  function wireToggles(root) {
    root.querySelectorAll("input.only-differing").forEach(function (box) {
      var table = document.getElementById(box.dataset.table);
      var apply = function () { if (table) table.classList.toggle("only-differing", box.checked); };
      box.addEventListener("change", apply);
      apply();
    });
  }

  function init(root) { drawCharts(root); wireToggles(root); }

  function busy(content) {
    // Never swap the page under a person who is typing or about to confirm an action.
    if (content.querySelector("details.action[open]")) return true;
    var active = document.activeElement;
    return !!(active && content.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)
              && active.type !== "checkbox");
  }

  function refresh(content, live) {
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("content");
        if (!next) return;
        var ticked = {};
        content.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
          ticked[box.name + "=" + box.value + "#" + (box.dataset.table || "")] = true;
        });
        next.querySelectorAll("p.note").forEach(function (note) { note.remove(); });
        if (window.Plotly) content.querySelectorAll(".chart").forEach(function (el) { window.Plotly.purge(el); });
        content.innerHTML = next.innerHTML;
        content.querySelectorAll("input[type=checkbox]").forEach(function (box) {
          if (ticked[box.name + "=" + box.value + "#" + (box.dataset.table || "")]) box.checked = true;
        });
        init(content);
        live.textContent = "live · updated " + new Date().toLocaleTimeString();
        live.classList.add("updated");
      });
  }

  function poll(content, live, seconds) {
    var version = null;
    function tick() {
      fetch("/api/changes", { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          live.classList.remove("offline");
          if (version !== null && data.version !== version && !busy(content)) {
            version = data.version;
            return refresh(content, live);
          }
          if (version === null || !busy(content)) version = data.version;
        })
        .catch(function () { live.classList.add("offline"); live.textContent = "offline"; })
        .then(function () { window.setTimeout(tick, seconds * 1000); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var content = document.getElementById("content");
    var live = document.getElementById("live");
    init(content);
    var seconds = parseFloat(document.body.dataset.poll || "0");
    if (content && live && seconds > 0) poll(content, live, seconds);
  });
})();
