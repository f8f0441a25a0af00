// twinstack landing page: what a static page cannot do by itself.
"use strict";

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
