// twinstack landing page: what a static page cannot do by itself.
"use strict";

// A project may deploy one half only (docs/architecture.md, "A half is a set of files"). nginx
// answers 404 for the prefix of a half it does not route: that half's cells are hidden.
for (const half of ["async", "sync"]) {
  fetch(`/${half}/health`, { cache: "no-store" }).then((response) => {
    if (response.status === 404) {
      for (const element of document.querySelectorAll(`[data-half="${half}"]`)) element.hidden = true;
    }
  }).catch(() => {});
}

// A WebSocket round trip through nginx to the async service.
const button = document.getElementById("ws-try");
const out = document.getElementById("ws-out");
if (button && out) {
  button.addEventListener("click", () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/async/ws/echo`);
    const started = performance.now();
    ws.addEventListener("open", () => ws.send("hello"));
    ws.addEventListener("message", (event) => {
      out.textContent = `echoed “${event.data}” in ${(performance.now() - started).toFixed(1)} ms`;
      ws.close();
    });
    ws.addEventListener("error", () => { out.textContent = "WebSocket failed"; });
  });
}
