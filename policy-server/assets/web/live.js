// Live updates for the dashboard: when the server announces new data (server-sent events on
// /live), and every 30 s in any case (another server replica may have stored it), fetch this
// page again and swap in its <main>. Pages work without this script (they refresh every 60 s
// instead).
"use strict";
(function () {
  const main = document.getElementById("main");
  const status = document.getElementById("live-status");
  if (!main || !window.EventSource) return;
  let shown = main.dataset.generation;
  let busy = false;
  async function refresh(generation, always) {
    if (busy || (!always && generation === shown)) return;
    busy = true;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("main");
      if (!fresh) return;
      const focused = document.activeElement;
      if (focused && main.contains(focused) && focused.form) return; // the user is typing
      main.replaceChildren(...fresh.childNodes);
      shown = fresh.dataset.generation;
      main.dataset.generation = shown;
      const note = document.getElementById("live-status");
      if (note) note.textContent = "Updated live.";
    } finally {
      busy = false;
    }
  }
  const source = new EventSource("/live");
  source.addEventListener("change", (e) => refresh(e.data, false));
  window.setInterval(() => refresh(shown, true), 30000);
  source.onerror = () => { if (status) status.textContent = "Live updates paused; reload to resume."; };
})();
