// The engine's dedicated worker (a module worker the page starts for each loaded model): runs
// the same wasm as the page and hands over to `engine_worker_main` (web-ui/src/engine_worker.rs),
// which answers the page's messages. A failure to start is told to the page as a message.
import init, { engine_worker_main } from "/web_ui.js";

init()
  .then(() => engine_worker_main())
  .catch((error) => {
    const json = JSON.stringify({
      kind: "crashed",
      error: `the engine's worker did not start: ${error}`,
    });
    postMessage({ json });
  });
