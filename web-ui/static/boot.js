// Starts the wasm app (a separate file: the server's Content-Security-Policy allows no inline script).
import init from "/web_ui.js";

init().catch((error) => {
  const app = document.getElementById("app");
  app.textContent = `The app failed to start: ${error}`;
  app.setAttribute("data-testid", "app-error");
});
