//! Driving real headless Chromium over the Chrome DevTools Protocol — what Playwright and
//! Puppeteer speak — from Rust: open a page, evaluate JavaScript, wait for the page to reach
//! a state, click and type through the browser's own input pipeline (`Input.insertText`,
//! `Input.dispatchKeyEvent`), reload, and take PNG screenshots. Elements are addressed by
//! their `data-testid`.

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::headless_chromium::HeadlessChromium;
use crate::http_client::request;

pub struct BrowserSession {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    // Dropped last: the socket closes before the browser is killed.
    _chromium: HeadlessChromium,
}

/// A JavaScript expression selecting the element with `data-testid` = `testid`.
pub fn by_testid(testid: &str) -> String {
    format!("document.querySelector('[data-testid=\"{testid}\"]')")
}

impl BrowserSession {
    /// Starts Chromium (WebGPU on or off) on `url` and attaches to its page.
    pub fn open(url: &str, webgpu: bool) -> Self {
        let chromium = HeadlessChromium::launch(url, webgpu, &["--remote-debugging-port=0"]);
        let port_file = chromium.profile_dir().join("DevToolsActivePort");
        let started = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next().map(str::to_string))
                .filter(|line| !line.is_empty())
            {
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Chromium wrote no DevToolsActivePort in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let address = format!("127.0.0.1:{port}");
        let page_socket = loop {
            let targets = request(&address, "GET", "/json/list", &[], b"")
                .ok()
                .map(|r| r.json());
            let found = targets.as_ref().and_then(|t| {
                t.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")?
                    .get("webSocketDebuggerUrl")?
                    .as_str()
                    .map(str::to_string)
            });
            if let Some(found) = found {
                break found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Chromium listed no page target: {targets:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(page_socket.as_str())
            .unwrap_or_else(|e| panic!("DevTools connection to {page_socket}: {e}"));
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(600)))
                .unwrap();
        }
        Self {
            socket,
            next_id: 1,
            _chromium: chromium,
        }
    }

    /// Sends one DevTools command and returns its result (events in between are skipped).
    pub fn command(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::Text(message.into()))
            .map_err(|e| format!("{method}: {e}"))?;
        loop {
            let reply = self.socket.read().map_err(|e| format!("{method}: {e}"))?;
            let Message::Text(text) = reply else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// The value of a JavaScript expression (promises awaited), or the exception it threw.
    pub fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.command(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// The size in bytes of each WebAssembly memory the page's own heap holds (not its
    /// workers'), found by prototype through the DevTools heap (`Runtime.queryObjects`), so
    /// the page needs no hook of its own. A wasm memory never shrinks: this is its
    /// high-water mark.
    pub fn page_wasm_memory_bytes(&mut self) -> Vec<u64> {
        let prototype = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": "WebAssembly.Memory.prototype" }),
            )
            .unwrap();
        let prototype = prototype["result"]["objectId"].clone();
        let memories = self
            .command(
                "Runtime.queryObjects",
                json!({ "prototypeObjectId": prototype }),
            )
            .unwrap();
        let sizes = self
            .command(
                "Runtime.callFunctionOn",
                json!({
                    "objectId": memories["objects"]["objectId"],
                    "functionDeclaration": "function () { return this.map((m) => m.buffer.byteLength); }",
                    "returnByValue": true,
                }),
            )
            .unwrap();
        serde_json::from_value(sizes["result"]["value"].clone())
            .unwrap_or_else(|e| panic!("wasm memory sizes: {e}: {sizes}"))
    }

    /// Evaluates `expression` until it is truthy and returns its value; panics after
    /// `timeout` with `what`, the last value and the page's visible text.
    pub fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let value = self.evaluate(expression);
            if let Ok(value) = &value
                && !matches!(value, Value::Null | Value::Bool(false))
                && value != &json!("")
                && value != &json!(0)
            {
                return value.clone();
            }
            if started.elapsed() > timeout {
                let page = self.evaluate("document.body.innerText").unwrap_or_default();
                panic!(
                    "waited {timeout:?} for {what}; `{expression}` is {value:?}; the page shows:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the element `testid` exists, then returns its text.
    pub fn wait_for_testid(&mut self, testid: &str, timeout: Duration) -> String {
        self.wait_for(
            &format!("[data-testid={testid}]"),
            &format!("{}?.innerText ?? null", by_testid(testid)),
            timeout,
        );
        self.text(testid)
    }

    /// The element's `innerText` (empty when it does not exist).
    pub fn text(&mut self, testid: &str) -> String {
        self.evaluate(&format!("{}?.innerText ?? ''", by_testid(testid)))
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks the element (it must exist and be enabled).
    pub fn click(&mut self, testid: &str) {
        let clicked = self
            .evaluate(&format!(
                "(() => {{ const e = {}; if (!e || e.disabled) return false; e.click(); return true; }})()",
                by_testid(testid)
            ))
            .unwrap();
        assert_eq!(
            clicked,
            json!(true),
            "[data-testid={testid}] is missing or disabled"
        );
    }

    /// Focuses the element and types `text` into it as keyboard input would.
    pub fn type_into(&mut self, testid: &str, text: &str) {
        let focused = self
            .evaluate(&format!(
                "(() => {{ const e = {}; if (!e) return false; e.focus(); return document.activeElement === e; }})()",
                by_testid(testid)
            ))
            .unwrap();
        assert_eq!(focused, json!(true), "cannot focus [data-testid={testid}]");
        self.command("Input.insertText", json!({ "text": text }))
            .unwrap();
    }

    /// Presses and releases one key (`"Enter"`, `"1"`, `"n"`) on the focused element.
    pub fn press_key(&mut self, key: &str) {
        let (code, key_code, text) = match key {
            "Enter" => ("Enter".to_string(), 13, "\r".to_string()),
            "Escape" => ("Escape".to_string(), 27, String::new()),
            single if single.len() == 1 => {
                let c = single.chars().next().unwrap();
                let code = if c.is_ascii_digit() {
                    format!("Digit{c}")
                } else {
                    format!("Key{}", c.to_ascii_uppercase())
                };
                (code, c.to_ascii_uppercase() as u32, single.to_string())
            }
            other => panic!("press_key does not know {other:?}"),
        };
        let mut down = json!({
            "type": if text.is_empty() { "rawKeyDown" } else { "keyDown" },
            "key": key,
            "code": code,
            "windowsVirtualKeyCode": key_code,
        });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.command("Input.dispatchKeyEvent", down).unwrap();
        self.command(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": key_code }),
        )
        .unwrap();
    }

    /// Moves the focus off any text field (so page-level shortcuts apply).
    pub fn blur(&mut self) {
        self.evaluate("document.activeElement && document.activeElement.blur()")
            .unwrap();
    }

    /// Reloads the page and waits for it to load.
    pub fn reload(&mut self) {
        self.command("Page.reload", json!({ "ignoreCache": false }))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        self.wait_for(
            "the reloaded page",
            "document.readyState === 'complete'",
            Duration::from_secs(60),
        );
    }

    /// Saves a PNG screenshot of the page at its full height.
    pub fn screenshot(&mut self, path: &Path) {
        let result = self
            .command(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap_or_default())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}
